//! The security summary: threats by level (from rollups) and by category, top offending users
//! (from the match table), over a time range.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::{rfc3339, GroupBy, Offender, Resolution, RollupRow, Store};

use super::{Error, HOUR_MS};

/// Users listed in `top_users`.
pub const TOP_OFFENDERS: u32 = 10;

#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SecuritySummary {
    pub since: String,
    pub until: String,
    pub total_requests: u64,
    /// Requests with a threat (level above `none`).
    pub threats: u64,
    pub blocked: u64,
    pub by_level: BTreeMap<&'static str, u64>,
    /// Requests with at least one match of the category.
    pub by_category: BTreeMap<String, u64>,
    pub top_users: Vec<Offender>,
}

/// Rollup totals of `[since_ms, until_ms)` at minute precision: whole hours from the hour
/// table, the partial hours at either edge from the minute table.
async fn exact_totals(
    store: &Store,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<RollupRow>, Error> {
    const MINUTE: i64 = 60_000;
    let from = since_ms - since_ms.rem_euclid(MINUTE);
    let first_hour = from + (HOUR_MS - from.rem_euclid(HOUR_MS)) % HOUR_MS;
    let last_hour = until_ms - until_ms.rem_euclid(HOUR_MS);
    let parts = if first_hour < last_hour {
        vec![
            (Resolution::Minute, from, first_hour),
            (Resolution::Hour, first_hour, last_hour),
            (Resolution::Minute, last_hour, until_ms),
        ]
    } else {
        vec![(Resolution::Minute, from, until_ms)]
    };
    let mut out = Vec::new();
    for (res, a, b) in parts.into_iter().filter(|(_, a, b)| a < b) {
        out.extend(store.rollups_by(a, b, res, GroupBy::Total).await?);
    }
    Ok(out)
}

/// Summary of `[since_ms, until_ms)`; levels are counted per whole minute of the range.
///
/// # Errors
/// A store read fails.
pub async fn security_summary(
    store: &Store,
    since_ms: i64,
    until_ms: i64,
) -> Result<SecuritySummary, Error> {
    let mut levels = [0u64; 4];
    let (mut total, mut blocked) = (0, 0);
    for r in exact_totals(store, since_ms, until_ms).await? {
        total += r.requests;
        blocked += r.blocked;
        levels.iter_mut().zip(r.threats).for_each(|(a, b)| *a += b);
    }
    let names = ["low", "medium", "high", "critical"];
    Ok(SecuritySummary {
        since: rfc3339(since_ms),
        until: rfc3339(until_ms),
        total_requests: total,
        threats: levels.iter().sum(),
        blocked,
        by_level: names.into_iter().zip(levels).collect(),
        by_category: store
            .threats_by_category(since_ms, until_ms)
            .await?
            .into_iter()
            .collect(),
        top_users: store
            .top_offenders(since_ms, until_ms, TOP_OFFENDERS)
            .await?,
    })
}
