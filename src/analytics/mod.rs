//! Analytics: read-only aggregations over the store and the live windows, returned as plain
//! serde structs for the admin API, alert rules and reports.
//!
//! Owns the maths (percentiles from bucketed rollups, robust anomaly scores, the Holt-Winters
//! forecast, the model performance score); the SQL lives in `store`. Everything over days reads
//! rollups, never raw rows, so `usage(days = 7)` costs the same at ten thousand or ten million
//! stored requests. Trade-off: windows are aligned to whole hours (UTC) and percentiles are
//! bucket estimates (see `store::hist`).

pub mod anomaly;
pub mod export;
pub mod feed;
pub mod forecast;
pub mod live;
pub mod quality;
pub mod security;
pub mod usage;

pub use anomaly::Anomaly;
pub use export::{export, ExportFormat};
pub use feed::{run_feed, FeedItem};
pub use forecast::{forecast_requests, Forecast};
pub use live::{run_live, Live, UserWindow, WindowStats};
pub use quality::{model_scores, performance_score, SCORE_WINDOW};
pub use security::{security_summary, SecuritySummary};
pub use usage::{usage, usage_at, usage_between, UsageAnalytics};

use std::time::SystemTime;

/// Analytics errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("read store")]
    Store(#[from] crate::store::Error),
    #[error("encode export")]
    Encode(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("not enough history: need {needed} hours, have {have}")]
    NotEnoughHistory { needed: usize, have: usize },
}

pub(crate) const HOUR_MS: i64 = 3_600_000;
pub(crate) const DAY_MS: i64 = 86_400_000;

/// Unix ms of `t` (0 before the epoch).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `0` for Monday … `6` for Sunday, of a unix-ms time (UTC). 1970-01-01 was a Thursday.
pub(crate) fn weekday(ms: i64) -> usize {
    ((ms.div_euclid(DAY_MS) + 3).rem_euclid(7)) as usize
}

pub(crate) fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}
