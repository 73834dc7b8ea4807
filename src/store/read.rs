//! The read API over request rows and rollups: keyset-paged request log, one request by id,
//! and rollup rows for a time range. Plain structs out; aggregation is `analytics`' job.
//!
//! Paging is by keyset `(ts_ms, rid)` rather than OFFSET, so page 10,000 costs what page 1 does.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::sql::{flag, Sql};
use super::{query_err, Error, Store};

/// One stored request, as the API and the exports show it. Durations are seconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RequestRow {
    pub id: String,
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub ts_ms: i64,
    pub user: Option<String>,
    pub team: Option<String>,
    pub session: Option<String>,
    pub endpoint: String,
    pub method: String,
    pub path: String,
    pub model: Option<String>,
    pub upstream_model: Option<String>,
    pub response_model: Option<String>,
    pub upstream: Option<String>,
    pub upstream_request_id: Option<String>,
    pub stream: bool,
    pub status: i64,
    pub outcome: String,
    pub error_kind: Option<String>,
    pub blame: Option<String>,
    pub attempts: i64,
    pub latency: f64,
    pub ttfb: Option<f64>,
    pub ttft: Option<f64>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub cached_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    pub cost: Option<f64>,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub prompt_chars: Option<i64>,
    pub response_chars: Option<i64>,
    pub risk_level: Option<String>,
    pub risk_score: Option<f64>,
    pub action: Option<String>,
    pub blocked: bool,
    pub categories: Option<String>,
    pub prompt: Option<String>,
    pub response: Option<String>,
    /// The optional judge's opinion (`safe`, `unsafe`, `error`, `timeout`) when the verdict fell
    /// in its band; `risk_level` is the level after it.
    pub judge: Option<String>,
    /// Seconds the judge took (or was given before its timeout).
    pub judge_latency: Option<f64>,
    #[serde(skip)]
    pub rid: i64,
}

/// Position after the last row of a page: `"<ts_ms>.<rid>"` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub ts_ms: i64,
    pub rid: i64,
}

impl Cursor {
    /// Parses the wire form; `None` when malformed.
    pub fn parse(s: &str) -> Option<Cursor> {
        let (ts, rid) = s.split_once('.')?;
        Some(Cursor {
            ts_ms: ts.parse().ok()?,
            rid: rid.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.ts_ms, self.rid)
    }
}

/// A page of results and where the next one starts (`None` on the last page).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Which rows an export streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    Requests,
    Security,
}

/// Request-log filters; all optional, combined with AND. Times are unix ms, `until` exclusive.
#[derive(Clone, Debug, Default)]
pub struct RequestFilter {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub user: Option<String>,
    pub model: Option<String>,
    pub outcome: Option<String>,
    /// Oldest first (exports) instead of newest first (the log).
    pub oldest_first: bool,
}

const REQUEST_SELECT: &str = "SELECT rid, id, ts_ms, \"user\", team, session, endpoint, method, \
    path, model, upstream_model, response_model, upstream, upstream_request_id, stream, status, \
    outcome, error_kind, blame, attempts, latency_us, ttfb_us, ttft_us, prompt_tokens, \
    completion_tokens, cached_tokens, reasoning_tokens, cost, bytes_in, bytes_out, prompt_chars, \
    response_chars, risk_level, risk_score, action, blocked, categories, prompt, response, judge, \
    judge_us FROM requests WHERE 1=1";

/// RFC 3339 (UTC, millisecond precision) of a unix-ms time.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn secs(us: Option<i64>) -> Option<f64> {
    us.map(|v| v as f64 / 1e6)
}

fn request_from_row(r: &AnyRow) -> Result<RequestRow, sqlx::Error> {
    let ts_ms: i64 = r.try_get("ts_ms")?;
    Ok(RequestRow {
        rid: r.try_get("rid")?,
        id: r.try_get("id")?,
        timestamp: rfc3339(ts_ms),
        ts_ms,
        user: r.try_get("user")?,
        team: r.try_get("team")?,
        session: r.try_get("session")?,
        endpoint: r.try_get("endpoint")?,
        method: r.try_get("method")?,
        path: r.try_get("path")?,
        model: r.try_get("model")?,
        upstream_model: r.try_get("upstream_model")?,
        response_model: r.try_get("response_model")?,
        upstream: r.try_get("upstream")?,
        upstream_request_id: r.try_get("upstream_request_id")?,
        stream: flag(r, "stream")?,
        status: r.try_get("status")?,
        outcome: r.try_get("outcome")?,
        error_kind: r.try_get("error_kind")?,
        blame: r.try_get("blame")?,
        attempts: r.try_get("attempts")?,
        latency: secs(r.try_get("latency_us")?).unwrap_or(0.0),
        ttfb: secs(r.try_get("ttfb_us")?),
        ttft: secs(r.try_get("ttft_us")?),
        prompt_tokens: r.try_get("prompt_tokens")?,
        completion_tokens: r.try_get("completion_tokens")?,
        cached_tokens: r.try_get("cached_tokens")?,
        reasoning_tokens: r.try_get("reasoning_tokens")?,
        cost: r.try_get("cost")?,
        bytes_in: r.try_get("bytes_in")?,
        bytes_out: r.try_get("bytes_out")?,
        prompt_chars: r.try_get("prompt_chars")?,
        response_chars: r.try_get("response_chars")?,
        risk_level: r.try_get("risk_level")?,
        risk_score: r.try_get("risk_score")?,
        action: r.try_get("action")?,
        blocked: flag(r, "blocked")?,
        categories: r.try_get("categories")?,
        prompt: r.try_get("prompt")?,
        response: r.try_get("response")?,
        judge: r.try_get("judge")?,
        judge_latency: secs(r.try_get("judge_us")?),
    })
}

/// Appends the keyset condition for rows after `c` in the chosen order.
pub(super) fn push_after(qb: &mut Sql<'_>, c: Cursor, key: &str, asc: bool) {
    let (op, strict) = if asc { (">=", ">") } else { ("<=", "<") };
    qb.push(&format!(" AND ts_ms {op} "))
        .bind(c.ts_ms)
        .push(&format!(" AND (ts_ms {strict} "))
        .bind(c.ts_ms)
        .push(&format!(" OR {key} {strict} "))
        .bind(c.rid)
        .push(")");
}

pub(super) fn push_range(qb: &mut Sql<'_>, since: Option<i64>, until: Option<i64>) {
    if let Some(s) = since {
        qb.push(" AND ts_ms >= ").bind(s);
    }
    if let Some(u) = until {
        qb.push(" AND ts_ms < ").bind(u);
    }
}

impl Store {
    /// One page of the request log, at most `limit` rows after `after`.
    ///
    /// # Errors
    /// The query fails.
    pub async fn requests(
        &self,
        f: &RequestFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Page<RequestRow>, Error> {
        let mut qb = Sql::new(self.dialect, REQUEST_SELECT);
        push_range(&mut qb, f.since_ms, f.until_ms);
        for (col, val) in [("\"user\"", &f.user), ("outcome", &f.outcome)] {
            if let Some(v) = val {
                qb.push(&format!(" AND {col} = ")).bind(v.clone());
            }
        }
        if let Some(m) = &f.model {
            qb.push(" AND COALESCE(upstream_model, model) = ")
                .bind(m.clone());
        }
        if let Some(c) = after {
            push_after(&mut qb, c, "rid", f.oldest_first);
        }
        let dir = if f.oldest_first { "ASC" } else { "DESC" };
        qb.push(&format!(" ORDER BY ts_ms {dir}, rid {dir} LIMIT "))
            .bind(i64::from(limit));
        let rows = qb
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(query_err("request log"))?;
        let items = rows
            .iter()
            .map(request_from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(query_err("request log"))?;
        Ok(page(items, limit, |r| Cursor {
            ts_ms: r.ts_ms,
            rid: r.rid,
        }))
    }

    /// One request by its id.
    ///
    /// # Errors
    /// The query fails.
    pub async fn request(&self, id: &str) -> Result<Option<RequestRow>, Error> {
        let sql = format!("{REQUEST_SELECT} AND id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(query_err("request by id"))?;
        row.as_ref()
            .map(request_from_row)
            .transpose()
            .map_err(query_err("request by id"))
    }

    /// Rows stored in `[since_ms, until_ms)`.
    ///
    /// # Errors
    /// The query fails.
    pub async fn count_requests(&self, since_ms: i64, until_ms: i64) -> Result<u64, Error> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE ts_ms >= $1 AND ts_ms < $2")
                .bind(since_ms)
                .bind(until_ms)
                .fetch_one(&self.read)
                .await
                .map_err(query_err("count requests"))?;
        Ok(n.max(0) as u64)
    }
}

/// Wraps `items` as a page; a full page gets a cursor at its last row.
pub(super) fn page<T>(items: Vec<T>, limit: u32, key: impl Fn(&T) -> Cursor) -> Page<T> {
    let next_cursor = if items.len() as u64 >= u64::from(limit) && limit > 0 {
        items.last().map(|r| key(r).to_string())
    } else {
        None
    };
    Page { items, next_cursor }
}
