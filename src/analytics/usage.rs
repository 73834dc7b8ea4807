//! `usage(days)`: the seed's usage analytics (general metrics, by model, by user, time series,
//! temporal patterns, anomalies) from hourly rollups.
//!
//! The window is the last `days × 24` whole UTC hours, the current (partial) hour included.
//! Users without an id are counted in totals but not in `unique_users` or `by_user`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use crate::store::hist::Histogram;
use crate::store::{rfc3339, GroupBy, Resolution, RollupRow, Store, UserRollupRow};

use super::anomaly::{self, Anomaly};
use super::{ratio, unix_ms, weekday, Error, DAY_MS, HOUR_MS};

/// Users listed in `by_user`.
pub const TOP_USERS: usize = 20;
/// Windows up to this many days get hourly time-series buckets, longer ones daily.
const HOURLY_UP_TO_DAYS: u32 = 7;
const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// The seed's usage analytics. Latencies in seconds, cost in USD, rates 0..=1.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct UsageAnalytics {
    pub general_metrics: GeneralMetrics,
    pub by_model: Vec<ModelUsage>,
    pub by_user: Vec<UserUsage>,
    pub timeseries: Timeseries,
    pub temporal_patterns: TemporalPatterns,
    pub anomalies: Vec<Anomaly>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct GeneralMetrics {
    pub total_requests: u64,
    pub avg_latency: f64,
    pub p50_latency: f64,
    pub p95_latency: f64,
    pub p99_latency: f64,
    pub error_rate: f64,
    pub unique_users: u64,
    pub total_tokens: u64,
    pub total_cost: f64,
    /// Requests whose cost is unknown (a model missing from the price table and no cost
    /// reported by the upstream): `total_cost` leaves them out, it does not count them as $0.
    pub unpriced_requests: u64,
    pub blocked_requests: u64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ModelUsage {
    pub model: String,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub avg_latency: f64,
    pub p50_latency: f64,
    pub p95_latency: f64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cost: f64,
    /// Requests of this model whose cost is unknown, left out of `cost`.
    pub unpriced_requests: u64,
    pub blocked: u64,
    /// Mean prompt and response length in characters (quality metrics).
    pub avg_prompt_chars: f64,
    pub avg_response_chars: f64,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct UserUsage {
    pub user: String,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub avg_latency: f64,
    pub tokens: u64,
    pub cost: f64,
    pub threats: u64,
    pub blocked: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Timeseries {
    /// `hour` or `day`.
    pub bucket: &'static str,
    pub points: Vec<TimePoint>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TimePoint {
    /// Bucket start, RFC 3339 UTC.
    pub timestamp: String,
    pub ts_ms: i64,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub avg_latency: f64,
    pub p95_latency: f64,
    pub tokens: u64,
    pub cost: f64,
    pub blocked: u64,
    pub threats: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TemporalPatterns {
    /// 24 entries, hour 0..23 UTC.
    pub by_hour_of_day: Vec<Pattern>,
    /// 7 entries, Monday first.
    pub by_weekday: Vec<Pattern>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Pattern {
    /// Hour `"0"`…`"23"` or weekday name.
    pub key: String,
    pub requests: u64,
    pub errors: u64,
    pub avg_latency: f64,
}

/// Running sums over rollup rows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sums {
    pub requests: u64,
    pub errors: u64,
    pub blocked: u64,
    pub threats: u64,
    pub latency_sum_us: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
    pub unpriced: u64,
    pub prompt_chars: u64,
    pub response_chars: u64,
    pub hist: Histogram,
}

impl Sums {
    pub fn add(&mut self, r: &RollupRow) {
        self.requests += r.requests;
        self.errors += r.errors;
        self.blocked += r.blocked;
        self.threats += r.threats.iter().sum::<u64>();
        self.latency_sum_us += r.latency_sum_us;
        self.prompt_tokens += r.prompt_tokens;
        self.completion_tokens += r.completion_tokens;
        self.cost += r.cost;
        self.unpriced += r.unpriced;
        self.prompt_chars += r.prompt_chars;
        self.response_chars += r.response_chars;
        self.hist.merge(&r.hist);
    }

    pub fn avg_latency(&self) -> f64 {
        ratio(self.latency_sum_us, self.requests) / 1e6
    }

    fn point(&self, ts_ms: i64) -> TimePoint {
        TimePoint {
            timestamp: rfc3339(ts_ms),
            ts_ms,
            requests: self.requests,
            errors: self.errors,
            error_rate: ratio(self.errors, self.requests),
            avg_latency: self.avg_latency(),
            p95_latency: self.hist.quantile(0.95),
            tokens: self.prompt_tokens + self.completion_tokens,
            cost: self.cost,
            blocked: self.blocked,
            threats: self.threats,
        }
    }

    fn pattern(&self, key: String) -> Pattern {
        Pattern {
            key,
            requests: self.requests,
            errors: self.errors,
            avg_latency: self.avg_latency(),
        }
    }
}

/// Usage over the last `days` (1..=365 is the admin API's range) ending now.
///
/// # Errors
/// A store read fails.
pub async fn usage(store: &Store, days: u32) -> Result<UsageAnalytics, Error> {
    usage_at(store, unix_ms(SystemTime::now()), days).await
}

/// Usage over the `days × 24` whole hours ending with the hour that contains `now_ms`.
///
/// # Errors
/// A store read fails.
pub async fn usage_at(store: &Store, now_ms: i64, days: u32) -> Result<UsageAnalytics, Error> {
    let to_ms = now_ms - now_ms.rem_euclid(HOUR_MS) + HOUR_MS;
    let from_ms = to_ms - i64::from(days.max(1)) * DAY_MS;
    usage_between(store, from_ms, to_ms, now_ms).await
}

/// Usage over `[from_ms, to_ms)` as of `now_ms` (hours from `now_ms` on are not complete),
/// both ends floored to whole hours: rollups are hourly. A report period is such a window
/// (a local day can be 23 or 25 hours long).
///
/// # Errors
/// A store read fails.
pub async fn usage_between(
    store: &Store,
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> Result<UsageAnalytics, Error> {
    let from_ms = from_ms - from_ms.rem_euclid(HOUR_MS);
    let to_ms = (to_ms - to_ms.rem_euclid(HOUR_MS)).max(from_ms);
    let days = u32::try_from((to_ms - from_ms + DAY_MS - 1) / DAY_MS).unwrap_or(u32::MAX);
    let hours = store
        .rollups_by(from_ms, to_ms, Resolution::Hour, GroupBy::Bucket)
        .await?;
    let models = store
        .rollups_by(from_ms, to_ms, Resolution::Hour, GroupBy::Model)
        .await?;
    let users = store.user_rollups(from_ms, to_ms).await?;
    let window = Window {
        from_ms,
        to_ms,
        now_ms,
        days,
    };
    Ok(summarise(&hours, &models, &users, window))
}

/// The hours a usage report covers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
    pub now_ms: i64,
    pub days: u32,
}

/// Pure aggregation of per-hour sums, per-model sums and per-user sums.
pub(crate) fn summarise(
    per_hour: &[RollupRow],
    per_model: &[RollupRow],
    users: &[UserRollupRow],
    w: Window,
) -> UsageAnalytics {
    let (from_ms, to_ms) = (w.from_ms, w.to_ms);
    let mut total = Sums::default();
    let mut models: BTreeMap<&str, Sums> = BTreeMap::new();
    let mut hours = vec![Sums::default(); ((to_ms - from_ms) / HOUR_MS).max(0) as usize];
    let mut hour_of_day = vec![Sums::default(); 24];
    let mut weekdays = vec![Sums::default(); 7];
    for r in per_model {
        models.entry(r.model.as_str()).or_default().add(r);
    }
    for r in per_hour {
        total.add(r);
        if let Some(h) = hours.get_mut(((r.bucket_ms - from_ms) / HOUR_MS) as usize) {
            h.add(r);
        }
        hour_of_day[(r.bucket_ms.rem_euclid(DAY_MS) / HOUR_MS) as usize].add(r);
        weekdays[weekday(r.bucket_ms)].add(r);
    }
    // The current hour is partial and later ones empty: anomaly detection only looks at
    // complete hours.
    let complete = usize::try_from((w.now_ms.min(to_ms) - from_ms).div_euclid(HOUR_MS))
        .unwrap_or(0)
        .min(hours.len());
    let mut anomalies = anomaly::hourly(&hours[..complete], from_ms);
    anomalies.extend(anomaly::users(users));
    UsageAnalytics {
        general_metrics: general(&total, users.len() as u64),
        by_model: by_model(models),
        by_user: users.iter().take(TOP_USERS).map(user_usage).collect(),
        timeseries: timeseries(&hours, from_ms, w.days),
        temporal_patterns: TemporalPatterns {
            by_hour_of_day: (0..24)
                .map(|h| hour_of_day[h].pattern(h.to_string()))
                .collect(),
            by_weekday: (0..7)
                .map(|d| weekdays[d].pattern(WEEKDAYS[d].into()))
                .collect(),
        },
        anomalies,
    }
}

fn general(t: &Sums, unique_users: u64) -> GeneralMetrics {
    GeneralMetrics {
        total_requests: t.requests,
        avg_latency: t.avg_latency(),
        p50_latency: t.hist.quantile(0.50),
        p95_latency: t.hist.quantile(0.95),
        p99_latency: t.hist.quantile(0.99),
        error_rate: ratio(t.errors, t.requests),
        unique_users,
        total_tokens: t.prompt_tokens + t.completion_tokens,
        total_cost: t.cost,
        unpriced_requests: t.unpriced,
        blocked_requests: t.blocked,
    }
}

fn by_model(models: BTreeMap<&str, Sums>) -> Vec<ModelUsage> {
    let mut out: Vec<ModelUsage> = models
        .into_iter()
        .map(|(model, s)| ModelUsage {
            model: model.to_owned(),
            requests: s.requests,
            errors: s.errors,
            error_rate: ratio(s.errors, s.requests),
            avg_latency: s.avg_latency(),
            p50_latency: s.hist.quantile(0.50),
            p95_latency: s.hist.quantile(0.95),
            prompt_tokens: s.prompt_tokens,
            completion_tokens: s.completion_tokens,
            total_tokens: s.prompt_tokens + s.completion_tokens,
            cost: s.cost,
            unpriced_requests: s.unpriced,
            blocked: s.blocked,
            avg_prompt_chars: ratio(s.prompt_chars, s.requests),
            avg_response_chars: ratio(s.response_chars, s.requests),
        })
        .collect();
    out.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.model.cmp(&b.model)));
    out
}

fn user_usage(u: &UserRollupRow) -> UserUsage {
    UserUsage {
        user: u.user.clone(),
        requests: u.requests,
        errors: u.errors,
        error_rate: ratio(u.errors, u.requests),
        avg_latency: ratio(u.latency_sum_us, u.requests) / 1e6,
        tokens: u.tokens,
        cost: u.cost,
        threats: u.threats,
        blocked: u.blocked,
    }
}

fn timeseries(hours: &[Sums], from_ms: i64, days: u32) -> Timeseries {
    if days <= HOURLY_UP_TO_DAYS {
        let points = hours
            .iter()
            .enumerate()
            .map(|(i, s)| s.point(from_ms + i as i64 * HOUR_MS))
            .collect();
        return Timeseries {
            bucket: "hour",
            points,
        };
    }
    // Daily buckets aligned to UTC midnight (the first may be partial).
    let mut daily: BTreeMap<i64, Sums> = BTreeMap::new();
    for (i, s) in hours.iter().enumerate() {
        let ts = from_ms + i as i64 * HOUR_MS;
        let d = daily.entry(ts - ts.rem_euclid(DAY_MS)).or_default();
        d.requests += s.requests;
        d.errors += s.errors;
        d.blocked += s.blocked;
        d.threats += s.threats;
        d.latency_sum_us += s.latency_sum_us;
        d.prompt_tokens += s.prompt_tokens;
        d.completion_tokens += s.completion_tokens;
        d.cost += s.cost;
        d.unpriced += s.unpriced;
        d.hist.merge(&s.hist);
    }
    Timeseries {
        bucket: "day",
        points: daily.iter().map(|(ts, s)| s.point(*ts)).collect(),
    }
}
