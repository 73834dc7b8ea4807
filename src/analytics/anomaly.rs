//! Anomaly detection with robust z-scores: a point's residual from its baseline, scaled by the
//! median absolute deviation (MAD) of all residuals in the series.
//!
//! Baseline of a point: the median of the same hour on up to 7 previous days when two or more
//! exist (so the daily cycle is not an anomaly), else the median of the previous 24 points.
//! Trade-offs: medians and MAD ignore the outliers they hunt for (a mean and standard deviation
//! would be dragged by the spike itself); a floor on the scale (`min_scale`) keeps a nearly
//! flat series from flagging noise. Needs 12 points with a baseline before it says anything.
//! Per-user anomalies compare users with each other over the window (log request counts, threat
//! rates), not a user with their own past.

use serde::Serialize;

use crate::store::{rfc3339, UserRollupRow};

use super::usage::Sums;
use super::{ratio, HOUR_MS};

/// |z| at or above this is an anomaly (Iglewicz and Hoaglin's cut-off for modified z-scores).
pub const Z_THRESHOLD: f64 = 3.5;
/// MAD → standard deviation for normal data.
const MAD_TO_SIGMA: f64 = 1.4826;
/// Points with a baseline needed before a series is judged.
const MIN_POINTS: usize = 12;
/// Users needed before users are compared with each other.
const MIN_USERS: usize = 5;
/// Most anomalies reported (largest |z| kept).
const MAX_ANOMALIES: usize = 50;

/// One unusual value.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Anomaly {
    /// `requests`, `latency_p95`, `error_rate`, `tokens`, `user_requests`, `user_threat_rate`.
    pub metric: String,
    /// The span the value covers: `1h` for an hourly point, `window` for per-user figures.
    pub window: String,
    /// Start of the hour (RFC 3339), or the user for per-user anomalies.
    pub at: String,
    pub value: f64,
    pub baseline: f64,
    /// `low` (|z| ≥ 3.5), `medium` (≥ 6), `high` (≥ 10).
    pub severity: &'static str,
    /// The robust z-score (signed: negative is a drop).
    pub score: f64,
}

/// Median of `v` (sorted in place); `None` when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    })
}

fn severity(z: f64) -> &'static str {
    match z.abs() {
        a if a >= 10.0 => "high",
        a if a >= 6.0 => "medium",
        _ => "low",
    }
}

fn baseline(values: &[Option<f64>], i: usize, season: usize) -> Option<f64> {
    let mut same_phase: Vec<f64> = (1..=7)
        .filter_map(|k| i.checked_sub(k * season))
        .filter_map(|j| values[j])
        .collect();
    if same_phase.len() >= 2 {
        return median(&mut same_phase);
    }
    let mut trailing: Vec<f64> = values[i.saturating_sub(season)..i]
        .iter()
        .flatten()
        .copied()
        .collect();
    if trailing.len() >= 6 {
        median(&mut trailing)
    } else {
        None
    }
}

/// Anomalies in a regular series (`None` = no value for that step), `step_ms` apart from
/// `start_ms`, with a `season`-step cycle; the residual scale is at least `min_scale`.
pub fn detect(
    metric: &str,
    start_ms: i64,
    step_ms: i64,
    values: &[Option<f64>],
    season: usize,
    min_scale: f64,
) -> Vec<Anomaly> {
    let scored: Vec<(usize, f64, f64)> = (0..values.len())
        .filter_map(|i| Some((i, values[i]?, baseline(values, i, season)?)))
        .collect();
    if scored.len() < MIN_POINTS {
        return Vec::new();
    }
    let mut resid: Vec<f64> = scored.iter().map(|(_, v, b)| v - b).collect();
    let center = median(&mut resid).unwrap_or(0.0);
    let mut dev: Vec<f64> = resid.iter().map(|r| (r - center).abs()).collect();
    let scale = (MAD_TO_SIGMA * median(&mut dev).unwrap_or(0.0)).max(min_scale);
    scored
        .into_iter()
        .filter_map(|(i, value, base)| {
            let z = (value - base - center) / scale;
            (z.abs() >= Z_THRESHOLD).then(|| Anomaly {
                metric: metric.to_owned(),
                window: "1h".into(),
                at: rfc3339(start_ms + i as i64 * step_ms),
                value,
                baseline: base,
                severity: severity(z),
                score: z,
            })
        })
        .collect()
}

fn floor_of(values: &[Option<f64>], frac: f64, abs: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().flatten().copied().collect();
    (median(&mut v).unwrap_or(0.0).abs() * frac).max(abs)
}

/// Request rate, p95 latency, error rate and tokens per complete hour.
pub(crate) fn hourly(hours: &[Sums], from_ms: i64) -> Vec<Anomaly> {
    let seen = |s: &Sums| s.requests > 0;
    // The token floor is the request floor (3 requests) in tokens, so both series agree on
    // what a small burst is.
    let requests: u64 = hours.iter().map(|s| s.requests).sum();
    let tokens: u64 = hours
        .iter()
        .map(|s| s.prompt_tokens + s.completion_tokens)
        .sum();
    let token_floor = (3.0 * ratio(tokens, requests)).max(100.0);
    let series: [(&str, Vec<Option<f64>>, f64, f64); 4] = [
        (
            "requests",
            hours.iter().map(|s| Some(s.requests as f64)).collect(),
            0.1,
            3.0,
        ),
        (
            "latency_p95",
            hours
                .iter()
                .map(|s| seen(s).then(|| s.hist.quantile(0.95)))
                .collect(),
            0.1,
            0.05,
        ),
        (
            "error_rate",
            hours
                .iter()
                .map(|s| seen(s).then(|| ratio(s.errors, s.requests)))
                .collect(),
            0.0,
            0.02,
        ),
        (
            "tokens",
            hours
                .iter()
                .map(|s| Some((s.prompt_tokens + s.completion_tokens) as f64))
                .collect(),
            0.1,
            token_floor,
        ),
    ];
    let mut out = Vec::new();
    for (metric, values, frac, abs) in series {
        let min_scale = floor_of(&values, frac, abs);
        out.extend(detect(metric, from_ms, HOUR_MS, &values, 24, min_scale));
    }
    strongest(out)
}

/// Users far from the others in request volume (log scale) or in threat rate.
pub(crate) fn users(users: &[UserRollupRow]) -> Vec<Anomaly> {
    if users.len() < MIN_USERS {
        return Vec::new();
    }
    let mut out = Vec::new();
    let logs: Vec<f64> = users.iter().map(|u| (u.requests as f64).ln_1p()).collect();
    let rates: Vec<f64> = users.iter().map(|u| ratio(u.threats, u.requests)).collect();
    for (metric, xs, min_scale) in [
        ("user_requests", &logs, 0.5),
        ("user_threat_rate", &rates, 0.05),
    ] {
        let mut sorted = xs.clone();
        let center = median(&mut sorted).unwrap_or(0.0);
        let mut dev: Vec<f64> = xs.iter().map(|x| (x - center).abs()).collect();
        let scale = (MAD_TO_SIGMA * median(&mut dev).unwrap_or(0.0)).max(min_scale);
        for (u, x) in users.iter().zip(xs) {
            let z = (x - center) / scale;
            let enough = metric == "user_requests" || u.threats >= 3;
            if z >= Z_THRESHOLD && enough {
                let (value, baseline) = if metric == "user_requests" {
                    (u.requests as f64, center.exp_m1())
                } else {
                    (*x, center)
                };
                out.push(Anomaly {
                    metric: metric.into(),
                    window: "window".into(),
                    at: u.user.clone(),
                    value,
                    baseline,
                    severity: severity(z),
                    score: z,
                });
            }
        }
    }
    strongest(out)
}

fn strongest(mut v: Vec<Anomaly>) -> Vec<Anomaly> {
    if v.len() > MAX_ANOMALIES {
        v.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()));
        v.truncate(MAX_ANOMALIES);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_is_found_with_its_baseline() {
        // Three days of a daily cycle (100 + 50·sin) with small noise, one spike of +400.
        let values: Vec<Option<f64>> = (0..72)
            .map(|i| {
                let cycle = 100.0 + 50.0 * ((i % 24) as f64 / 24.0 * std::f64::consts::TAU).sin();
                let noise = [0.0, 2.0, -1.0, 1.0, -2.0][i % 5];
                Some(cycle + noise + if i == 60 { 400.0 } else { 0.0 })
            })
            .collect();
        let found = detect("requests", 0, HOUR_MS, &values, 24, 3.0);
        assert_eq!(found.len(), 1, "{found:?}");
        let a = &found[0];
        assert_eq!(a.at, rfc3339(60 * HOUR_MS));
        let expected = 100.0 + 50.0 * (12.0f64 / 24.0 * std::f64::consts::TAU).sin();
        assert!(
            (a.baseline - expected).abs() < 3.0,
            "baseline {}",
            a.baseline
        );
        assert_eq!(a.severity, "high");
    }

    #[test]
    fn a_flat_series_has_no_anomalies() {
        let values = vec![Some(50.0); 48];
        assert!(detect("requests", 0, HOUR_MS, &values, 24, 1.0).is_empty());
    }

    #[test]
    fn the_heavy_user_stands_out() {
        let mut rows: Vec<UserRollupRow> = (0..10)
            .map(|i| UserRollupRow {
                user: format!("u{i}"),
                requests: 100 + i * 3,
                ..UserRollupRow::default()
            })
            .collect();
        rows.push(UserRollupRow {
            user: "hog".into(),
            requests: 50_000,
            threats: 40,
            ..UserRollupRow::default()
        });
        let found = users(&rows);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].metric.as_str(), found[0].at.as_str()),
            ("user_requests", "hog")
        );
    }
}
