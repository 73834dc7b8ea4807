//! Load prediction: requests per hour for the next 24 hours by additive Holt-Winters (level,
//! trend and a 24-hour season), with the smoothing constants picked by a small grid search on
//! one-step-ahead squared error, and an honest backtest: fit without the last day, forecast it,
//! report MAE and MAPE against what happened.
//!
//! Trade-offs: one season (daily); weekly patterns show up only as level drift. The grid has
//! 5 × 4 × 4 points — cheap (a few ms for 4 weeks of hours) and good enough for capacity
//! planning; no confidence interval beyond the backtest error.

use std::time::SystemTime;

use serde::Serialize;

use crate::store::{rfc3339, GroupBy, Resolution, Store};

use super::{unix_ms, Error, DAY_MS, HOUR_MS};

/// Hours per season.
pub const SEASON: usize = 24;
/// Hours forecast (and held out for the backtest).
pub const HORIZON: usize = 24;

const ALPHAS: [f64; 5] = [0.1, 0.2, 0.4, 0.6, 0.8];
const BETAS: [f64; 4] = [0.0, 0.02, 0.05, 0.15];
const GAMMAS: [f64; 4] = [0.05, 0.1, 0.3, 0.5];

/// Fitted smoothing constants.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Params {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
}

/// The forecast and how well the same method did on the last held-out day.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Forecast {
    pub method: &'static str,
    pub season_hours: usize,
    pub history_hours: usize,
    pub params: Params,
    pub points: Vec<ForecastPoint>,
    pub backtest: Backtest,
}

#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ForecastPoint {
    /// Hour start, RFC 3339 UTC.
    pub timestamp: String,
    pub ts_ms: i64,
    pub requests: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Backtest {
    pub horizon_hours: usize,
    /// Mean absolute error, requests per hour.
    pub mae: f64,
    /// Mean absolute percentage error over hours with traffic (0..=1+); `None` if none had any.
    pub mape: Option<f64>,
}

/// Runs the recursions; returns the one-step SSE and the final state's `h`-step forecast.
fn run(x: &[f64], p: Params, horizon: usize) -> (f64, Vec<f64>) {
    let m = SEASON;
    let first: f64 = x[..m].iter().sum::<f64>() / m as f64;
    let second: f64 = x[m..2 * m].iter().sum::<f64>() / m as f64;
    let mut level = first;
    let mut trend = (second - first) / m as f64;
    let mut season: Vec<f64> = x[..m].iter().map(|v| v - first).collect();
    let mut sse = 0.0;
    for (t, &obs) in x.iter().enumerate().skip(m) {
        let s = season[t % m];
        let predicted = level + trend + s;
        sse += (obs - predicted).powi(2);
        let prev = level;
        level = p.alpha * (obs - s) + (1.0 - p.alpha) * (level + trend);
        trend = p.beta * (level - prev) + (1.0 - p.beta) * trend;
        season[t % m] = p.gamma * (obs - level) + (1.0 - p.gamma) * s;
    }
    let n = x.len();
    let out = (1..=horizon)
        .map(|h| (level + h as f64 * trend + season[(n + h - 1) % m]).max(0.0))
        .collect();
    (sse, out)
}

/// Fits the constants on `x` (at least two seasons) and forecasts `horizon` steps.
///
/// # Errors
/// `NotEnoughHistory` with fewer than two seasons.
pub fn holt_winters(x: &[f64], horizon: usize) -> Result<(Params, Vec<f64>), Error> {
    if x.len() < 2 * SEASON {
        return Err(Error::NotEnoughHistory {
            needed: 2 * SEASON,
            have: x.len(),
        });
    }
    let mut best: Option<(f64, Params)> = None;
    for &alpha in &ALPHAS {
        for &beta in &BETAS {
            for &gamma in &GAMMAS {
                let p = Params { alpha, beta, gamma };
                let (sse, _) = run(x, p, 0);
                if best.is_none_or(|(b, _)| sse < b) {
                    best = Some((sse, p));
                }
            }
        }
    }
    let (_, p) = best.expect("the grid is not empty");
    Ok((p, run(x, p, horizon).1))
}

/// Fits on all but the last `HORIZON` points, forecasts them and scores the forecast.
///
/// # Errors
/// `NotEnoughHistory` with fewer than two seasons plus the held-out day.
pub fn backtest(x: &[f64]) -> Result<Backtest, Error> {
    let needed = 2 * SEASON + HORIZON;
    if x.len() < needed {
        return Err(Error::NotEnoughHistory {
            needed,
            have: x.len(),
        });
    }
    let (train, held) = x.split_at(x.len() - HORIZON);
    let (_, predicted) = holt_winters(train, HORIZON)?;
    let mae = held
        .iter()
        .zip(&predicted)
        .map(|(a, p)| (a - p).abs())
        .sum::<f64>()
        / HORIZON as f64;
    let pct: Vec<f64> = held
        .iter()
        .zip(&predicted)
        .filter(|(a, _)| **a > 0.0)
        .map(|(a, p)| (a - p).abs() / a)
        .collect();
    let mape = (!pct.is_empty()).then(|| pct.iter().sum::<f64>() / pct.len() as f64);
    Ok(Backtest {
        horizon_hours: HORIZON,
        mae,
        mape,
    })
}

/// Forecast of requests per hour for the next 24 hours from the last `days` complete hours.
///
/// # Errors
/// A store read fails, or there are fewer than 3 days of history.
pub async fn forecast_requests(store: &Store, days: u32) -> Result<Forecast, Error> {
    let now = unix_ms(SystemTime::now());
    forecast_at(store, now, days).await
}

/// `forecast_requests` as of `now_ms`.
///
/// # Errors
/// As `forecast_requests`.
pub async fn forecast_at(store: &Store, now_ms: i64, days: u32) -> Result<Forecast, Error> {
    let to_ms = now_ms - now_ms.rem_euclid(HOUR_MS);
    let from_ms = to_ms - i64::from(days.max(3)) * DAY_MS;
    let mut series = vec![0.0; ((to_ms - from_ms) / HOUR_MS) as usize];
    let rows = store
        .rollups_by(from_ms, to_ms, Resolution::Hour, GroupBy::Bucket)
        .await?;
    for r in rows {
        if let Some(v) = series.get_mut(((r.bucket_ms - from_ms) / HOUR_MS) as usize) {
            *v += r.requests as f64;
        }
    }
    let backtest = backtest(&series)?;
    let (params, predicted) = holt_winters(&series, HORIZON)?;
    let points = predicted
        .into_iter()
        .enumerate()
        .map(|(h, requests)| {
            let ts_ms = to_ms + h as i64 * HOUR_MS;
            ForecastPoint {
                timestamp: rfc3339(ts_ms),
                ts_ms,
                requests,
            }
        })
        .collect();
    Ok(Forecast {
        method: "holt_winters_additive",
        season_hours: SEASON,
        history_hours: series.len(),
        params,
        points,
        backtest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seasonal(hours: usize, trend: f64) -> Vec<f64> {
        (0..hours)
            .map(|i| {
                let phase = (i % SEASON) as f64 / SEASON as f64 * std::f64::consts::TAU;
                200.0 + 80.0 * phase.sin() + trend * i as f64
            })
            .collect()
    }

    #[test]
    fn a_pure_seasonal_series_is_forecast_closely() {
        let x = seasonal(24 * 7, 0.0);
        let (_, f) = holt_winters(&x, HORIZON).expect("enough history");
        let truth = &seasonal(24 * 8, 0.0)[24 * 7..];
        let mae: f64 = f.iter().zip(truth).map(|(a, b)| (a - b).abs()).sum::<f64>() / 24.0;
        assert!(mae < 2.0, "mae {mae}");
        let bt = backtest(&x).expect("enough history");
        assert!(bt.mape.expect("traffic") < 0.01, "{bt:?}");
    }

    #[test]
    fn a_trend_is_followed() {
        let x = seasonal(24 * 10, 0.5);
        let bt = backtest(&x).expect("enough history");
        assert!(bt.mape.expect("traffic") < 0.03, "{bt:?}");
    }

    #[test]
    fn short_history_is_an_error() {
        assert!(matches!(
            backtest(&[1.0; 50]),
            Err(Error::NotEnoughHistory {
                needed: 72,
                have: 50
            })
        ));
    }
}
