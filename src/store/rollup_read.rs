//! Reads over the rollup tables, summed in SQL so only the grouped rows cross to Rust (sqlx
//! hands SQLite rows over one by one, so row count, not table size, is what costs).
//!
//! Per-user sums over long ranges read the per-day table for whole days and the per-hour table
//! only for the partial days at the edges.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::hist::{Histogram, BUCKETS};
use super::row::{DAY_MS, HOUR_MS};
use super::sql::{count, num};
use super::{query_err, Error, Store};

/// One rollup row, or a sum of them (fields not grouped on are `0`/empty).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RollupRow {
    pub bucket_ms: i64,
    pub model: String,
    pub outcome: String,
    pub requests: u64,
    pub errors: u64,
    pub blocked: u64,
    /// Requests with a threat by level: low, medium, high, critical.
    pub threats: [u64; 4],
    pub latency_sum_us: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
    pub prompt_chars: u64,
    pub response_chars: u64,
    /// Requests whose cost is unknown (unpriced model, no upstream cost): not in `cost`.
    pub unpriced: u64,
    pub hist: Histogram,
}

/// One user's sums over a range (identified users only).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct UserRollupRow {
    pub user: String,
    pub requests: u64,
    pub errors: u64,
    pub blocked: u64,
    pub threats: u64,
    pub tokens: u64,
    pub cost: f64,
    pub latency_sum_us: u64,
}

/// How rollup rows are summed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// As stored: bucket, model, outcome.
    Raw,
    Bucket,
    Model,
    /// One row for the whole range.
    Total,
}

/// Minute or hour rollups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Minute,
    Hour,
}

const SUMMED: [&str; 14] = [
    "requests",
    "errors",
    "blocked",
    "threats_low",
    "threats_medium",
    "threats_high",
    "threats_critical",
    "latency_sum_us",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "prompt_chars",
    "response_chars",
    "unpriced",
];

/// `SUM(c) AS c`, typed the same on both backends: `0.0` keeps `cost` a float when the range is
/// empty, and integer sums are cast back from PostgreSQL's `numeric`.
fn sum(c: &str) -> String {
    match c {
        "cost" => format!("COALESCE(SUM({c}), 0.0) AS {c}"),
        _ => format!("CAST(COALESCE(SUM({c}), 0) AS BIGINT) AS {c}"),
    }
}

fn grouped_sql(table: &str, by: GroupBy) -> String {
    let (keys, group) = match by {
        GroupBy::Raw => (
            "bucket_ms, model, outcome",
            " GROUP BY bucket_ms, model, outcome",
        ),
        GroupBy::Bucket => (
            "bucket_ms, '' AS model, '' AS outcome",
            " GROUP BY bucket_ms",
        ),
        GroupBy::Model => ("0 AS bucket_ms, model, '' AS outcome", " GROUP BY model"),
        GroupBy::Total => ("0 AS bucket_ms, '' AS model, '' AS outcome", ""),
    };
    let mut cols: Vec<String> = SUMMED.iter().map(|c| sum(c)).collect();
    cols.push("COALESCE(MAX(latency_max_us), 0) AS latency_max_us".into());
    cols.extend((0..BUCKETS).map(|i| sum(&format!("h{i}"))));
    format!(
        "SELECT {keys}, {} FROM {table} WHERE bucket_ms >= $1 AND bucket_ms < $2{group} \
         ORDER BY 1, 2, 3",
        cols.join(", ")
    )
}

/// Column index of `h0` in `grouped_sql`'s output.
const FIRST_BUCKET_COLUMN: usize = 3 + SUMMED.len() + 1;

impl Store {
    /// Rollup rows with `bucket_ms` in `[from_ms, to_ms)`, summed as `by` says.
    ///
    /// # Errors
    /// The query fails.
    pub async fn rollups_by(
        &self,
        from_ms: i64,
        to_ms: i64,
        res: Resolution,
        by: GroupBy,
    ) -> Result<Vec<RollupRow>, Error> {
        let table = match res {
            Resolution::Minute => "rollup_minute",
            Resolution::Hour => "rollup_hour",
        };
        let rows = sqlx::query(&grouped_sql(table, by))
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(&self.read)
            .await
            .map_err(query_err("rollups"))?;
        rows.iter()
            .map(rollup_from_row)
            .collect::<Result<_, _>>()
            .map_err(query_err("rollups"))
    }

    /// Stored rollup rows in `[from_ms, to_ms)`; `hourly` picks the hour table.
    ///
    /// # Errors
    /// The query fails.
    pub async fn rollups(
        &self,
        from_ms: i64,
        to_ms: i64,
        hourly: bool,
    ) -> Result<Vec<RollupRow>, Error> {
        let res = if hourly {
            Resolution::Hour
        } else {
            Resolution::Minute
        };
        self.rollups_by(from_ms, to_ms, res, GroupBy::Raw).await
    }

    /// Per-user sums for hours in `[from_ms, to_ms)` (hour-aligned), most requests first.
    /// Whole days come from the day table, the partial days at the edges from the hour table,
    /// summed by one query.
    ///
    /// # Errors
    /// The query fails.
    pub async fn user_rollups(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UserRollupRow>, Error> {
        let from_ms = from_ms - from_ms.rem_euclid(HOUR_MS);
        let first_day = from_ms + (DAY_MS - from_ms.rem_euclid(DAY_MS)) % DAY_MS;
        let last_day = to_ms - to_ms.rem_euclid(DAY_MS);
        // (hour table range, day table range, hour table range); empty ranges select nothing.
        let ranges = if first_day < last_day {
            [
                (from_ms, first_day),
                (first_day, last_day),
                (last_day, to_ms),
            ]
        } else {
            [(from_ms, to_ms), (0, 0), (0, 0)]
        };
        let cols = "\"user\", requests, errors, blocked, threats, tokens, cost, latency_sum_us";
        let sums: Vec<String> = [
            "requests",
            "errors",
            "blocked",
            "threats",
            "tokens",
            "cost",
            "latency_sum_us",
        ]
        .iter()
        .map(|c| sum(c))
        .collect();
        let sql = format!(
            "SELECT \"user\", {} FROM ( \
             SELECT {cols} FROM rollup_user_hour WHERE bucket_ms >= $1 AND bucket_ms < $2 \
             UNION ALL SELECT {cols} FROM rollup_user_day WHERE bucket_ms >= $3 AND bucket_ms < $4 \
             UNION ALL SELECT {cols} FROM rollup_user_hour WHERE bucket_ms >= $5 AND bucket_ms < $6) \
             AS u GROUP BY \"user\" ORDER BY requests DESC, \"user\"",
            sums.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (a, b) in ranges {
            q = q.bind(a).bind(b);
        }
        let rows = q
            .fetch_all(&self.read)
            .await
            .map_err(query_err("user rollups"))?;
        rows.iter()
            .map(|r| {
                Ok(UserRollupRow {
                    user: r.try_get("user")?,
                    requests: count(r, "requests")?,
                    errors: count(r, "errors")?,
                    blocked: count(r, "blocked")?,
                    threats: count(r, "threats")?,
                    tokens: count(r, "tokens")?,
                    cost: num(r, "cost")?,
                    latency_sum_us: count(r, "latency_sum_us")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_err("user rollups"))
    }
}

fn rollup_from_row(r: &AnyRow) -> Result<RollupRow, sqlx::Error> {
    let u = |c: &str| count(r, c);
    let mut hist = Histogram {
        max_us: u("latency_max_us")?,
        ..Histogram::default()
    };
    for (i, slot) in hist.counts.iter_mut().enumerate() {
        *slot = r.try_get::<i64, _>(FIRST_BUCKET_COLUMN + i)?.max(0) as u64;
    }
    Ok(RollupRow {
        bucket_ms: r.try_get("bucket_ms")?,
        model: r.try_get("model")?,
        outcome: r.try_get("outcome")?,
        requests: u("requests")?,
        errors: u("errors")?,
        blocked: u("blocked")?,
        threats: [
            u("threats_low")?,
            u("threats_medium")?,
            u("threats_high")?,
            u("threats_critical")?,
        ],
        latency_sum_us: u("latency_sum_us")?,
        prompt_tokens: u("prompt_tokens")?,
        completion_tokens: u("completion_tokens")?,
        cost: num(r, "cost")?,
        prompt_chars: u("prompt_chars")?,
        response_chars: u("response_chars")?,
        unpriced: u("unpriced")?,
        hist,
    })
}
