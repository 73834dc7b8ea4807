//! Threat prediction: threat counts per local day, per category and per user, a least-squares
//! trend, a one-day forecast, and a flag when the last day rises significantly above the days
//! before. A threat is a request at medium risk or above (`Store::daily_threats`): a match at
//! none or low, such as a learned-stage hunch on a harmless prompt, is not counted, or benign
//! users would "rise" and be advised against.
//!
//! "Significantly": the last day has at least `MIN_COUNT` threats and lies `Z_RISE` Poisson
//! standard deviations above the mean of the earlier days (counts of rare events are close to
//! Poisson, so the variance is the mean). Trade-off: the last day may be partial (a report on a
//! period still running, or a 23-hour day), which can only hide a rise, never invent one.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::DailyThreats;

/// Fewest threats on the last day for a rise to count.
const MIN_COUNT: u64 = 5;
/// Standard deviations above the earlier mean that count as a rise.
const Z_RISE: f64 = 3.0;
/// Users with a trend in a report (most threats first).
const MAX_USERS: usize = 10;

/// The trend of one category or user.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Trend {
    pub key: String,
    /// Threatening requests (medium risk or above) per local day, oldest first.
    pub daily: Vec<u64>,
    /// Least-squares slope, requests per day.
    pub slope_per_day: f64,
    /// The trend line one day past the last, at least 0.
    pub forecast_next_day: f64,
    /// Mean of the days before the last.
    pub baseline: f64,
    pub rising: bool,
}

/// Threat trends of a period.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ThreatTrends {
    pub days: usize,
    pub by_category: Vec<Trend>,
    pub by_user: Vec<Trend>,
}

/// Builds trends from daily counts over the `days` days starting at `first_day_ms` (rows are
/// filed by `(day_ms - first_day_ms) / 24 h`).
pub fn trends(
    categories: &[DailyThreats],
    users: &[DailyThreats],
    first_day_ms: i64,
    days: usize,
) -> ThreatTrends {
    let mut by_user = series(users, first_day_ms, days);
    by_user.sort_by_key(|t| std::cmp::Reverse(t.daily.iter().sum::<u64>()));
    by_user.truncate(MAX_USERS);
    ThreatTrends {
        days,
        by_category: series(categories, first_day_ms, days),
        by_user,
    }
}

fn series(rows: &[DailyThreats], first_day_ms: i64, days: usize) -> Vec<Trend> {
    const DAY_MS: i64 = 86_400_000;
    let mut map: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for r in rows {
        let i = (r.day_ms - first_day_ms).div_euclid(DAY_MS);
        if let Ok(i) = usize::try_from(i) {
            if i < days {
                map.entry(&r.key).or_insert_with(|| vec![0; days])[i] += r.requests;
            }
        }
    }
    map.into_iter().map(|(k, v)| trend(k, v)).collect()
}

/// The trend of one daily series.
pub fn trend(key: &str, daily: Vec<u64>) -> Trend {
    let n = daily.len();
    let (slope, intercept) = least_squares(&daily);
    let forecast = (intercept + slope * n as f64).max(0.0);
    let (earlier, last) = match daily.split_last() {
        Some((last, earlier)) => (earlier, *last),
        None => (&daily[..0], 0),
    };
    let baseline = if earlier.is_empty() {
        0.0
    } else {
        earlier.iter().sum::<u64>() as f64 / earlier.len() as f64
    };
    let z = (last as f64 - baseline) / baseline.max(1.0).sqrt();
    Trend {
        key: key.to_owned(),
        rising: !earlier.is_empty() && last >= MIN_COUNT && z >= Z_RISE,
        daily,
        slope_per_day: slope,
        forecast_next_day: forecast,
        baseline,
    }
}

/// Slope and intercept of the least-squares line through `(i, y[i])`.
fn least_squares(y: &[u64]) -> (f64, f64) {
    let n = y.len() as f64;
    if y.len() < 2 {
        return (0.0, y.first().map_or(0.0, |v| *v as f64));
    }
    let mx = (n - 1.0) / 2.0;
    let my = y.iter().sum::<u64>() as f64 / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, v) in y.iter().enumerate() {
        let dx = i as f64 - mx;
        sxy += dx * (*v as f64 - my);
        sxx += dx * dx;
    }
    let slope = sxy / sxx;
    (slope, my - slope * mx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_straight_line_is_followed() {
        let t = trend("x", vec![1, 2, 3, 4, 5]);
        assert!((t.slope_per_day - 1.0).abs() < 1e-9);
        assert!((t.forecast_next_day - 6.0).abs() < 1e-9);
        assert!(!t.rising, "5 vs a baseline of 2.5 is not 3 sigma");
    }

    #[test]
    fn a_jump_is_flagged_and_noise_is_not() {
        assert!(trend("jump", vec![2, 1, 2, 2, 1, 2, 15]).rising);
        assert!(!trend("noise", vec![10, 12, 9, 11, 10, 12, 14]).rising);
        assert!(
            !trend("tiny", vec![0, 0, 0, 0, 0, 0, 4]).rising,
            "below MIN_COUNT"
        );
    }

    #[test]
    fn rows_are_bucketed_by_day() {
        let d = 86_400_000;
        let row = |day: i64, key: &str, n| DailyThreats {
            day_ms: day * d,
            key: key.into(),
            requests: n,
        };
        let rows = [
            row(10, "jailbreak", 2),
            row(12, "jailbreak", 3),
            row(9, "old", 1),
        ];
        let t = trends(&rows, &[], 10 * d, 3);
        assert_eq!(
            t.by_category.len(),
            1,
            "a row before the window is left out"
        );
        assert_eq!(t.by_category[0].daily, vec![2, 0, 3]);
    }
}
