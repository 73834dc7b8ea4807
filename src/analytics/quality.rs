//! Quality: the model performance score behind the `model_performance_score` gauge.
//!
//! `score = 0.5·availability + 0.3·speed + 0.2·feedback`, each part in 0..=1:
//! - availability = 1 − error rate (live window);
//! - speed = 2 s / (2 s + mean latency): 1 at 0 s, 0.5 at 2 s, 0.2 at 8 s;
//! - feedback = mean feedback score (0..=1) over the last 7 days.
//!
//! Without feedback for a model the other two parts are re-weighted (÷ 0.8), so a model is not
//! punished for having no ratings. A model with no traffic in the window gets no score.
//! Trade-off: a fixed, documented formula rather than a learned one — operators can reproduce it.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::store::Store;

use super::{unix_ms, Error, Live, DAY_MS};

/// Mean latency at which `speed` is 0.5.
pub const LATENCY_TARGET_S: f64 = 2.0;
const W_AVAILABILITY: f64 = 0.5;
const W_SPEED: f64 = 0.3;
const W_FEEDBACK: f64 = 0.2;

/// The score (0..=1) from an error rate (0..=1), a mean latency in seconds and an optional
/// mean feedback score (0..=1).
pub fn performance_score(error_rate: f64, avg_latency_s: f64, feedback: Option<f64>) -> f64 {
    let availability = (1.0 - error_rate).clamp(0.0, 1.0);
    let speed = LATENCY_TARGET_S / (LATENCY_TARGET_S + avg_latency_s.max(0.0));
    let base = W_AVAILABILITY * availability + W_SPEED * speed;
    match feedback {
        Some(f) => base + W_FEEDBACK * f.clamp(0.0, 1.0),
        None => base / (W_AVAILABILITY + W_SPEED),
    }
}

/// The live window `model_performance_score` is computed over.
pub const SCORE_WINDOW: Duration = Duration::from_secs(900);

/// Scores per model from the live `window` and 7 days of feedback (computed at each scrape of
/// `/metrics`, which sets the gauge with `Metrics::set_model_score`).
///
/// # Errors
/// The feedback query fails.
pub async fn model_scores(
    live: &Live,
    store: &Store,
    window: Duration,
) -> Result<Vec<(String, f64)>, Error> {
    let now = SystemTime::now();
    let feedback: HashMap<String, f64> = store
        .feedback_summary(unix_ms(now) - 7 * DAY_MS)
        .await?
        .into_iter()
        .map(|f| (f.model, f.avg_score))
        .collect();
    Ok(live
        .models_at(now, window)
        .into_iter()
        .filter(|(_, w)| w.requests > 0)
        .map(|(model, w)| {
            let fb = feedback.get(&model).copied();
            let score = performance_score(w.error_rate, w.avg_latency, fb);
            (model, score)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_matches_the_documentation() {
        assert!((performance_score(0.0, 0.0, Some(1.0)) - 1.0).abs() < 1e-12);
        assert!((performance_score(0.0, 0.0, None) - 1.0).abs() < 1e-12);
        // 10% errors, 2 s, feedback 0.5: 0.5·0.9 + 0.3·0.5 + 0.2·0.5 = 0.7
        assert!((performance_score(0.1, 2.0, Some(0.5)) - 0.7).abs() < 1e-12);
        // Same without feedback: (0.45 + 0.15) / 0.8 = 0.75
        assert!((performance_score(0.1, 2.0, None) - 0.75).abs() < 1e-12);
    }
}
