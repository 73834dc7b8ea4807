//! One batch, one transaction: request rows, match rows and rollup upserts, all or nothing.
//!
//! Trade-off: multi-row `INSERT … VALUES (…),(…)` statements (a few hundred rows each) instead of
//! one statement per row, because each statement is a round trip to sqlx's SQLite worker thread.
//! `INSERT OR IGNORE` on the request id makes a retried batch harmless for the rows; rollups are
//! only ever written in the same transaction, so they cannot double-count a committed batch.

use std::sync::{Arc, OnceLock};

use sqlx::{QueryBuilder, Sqlite, Transaction};

use crate::config::CaptureConfig;
use crate::event::Exchange;

use super::hist::BUCKETS;
use super::row::{self, Agg, Rollups, UserAgg};
use super::{Error, Store};
use crate::redact::{cap, redact};

const REQUEST_COLUMNS: &str = "id, ts_ms, user, team, session, endpoint, method, path, model, \
    upstream_model, response_model, upstream, upstream_request_id, stream, status, outcome, \
    error_kind, blame, attempts, latency_us, ttfb_us, ttft_us, prompt_tokens, completion_tokens, \
    cached_tokens, reasoning_tokens, cost, bytes_in, bytes_out, prompt_chars, response_chars, \
    risk_level, risk_score, action, blocked, shadow, categories, scan_us, learned_score, prompt, \
    response";

const MATCH_COLUMNS: &str = "request_id, ts_ms, user, model, risk_level, action, blocked, \
    category, rule, weight, segment, span_start, span_end, snippet";

/// Rows per statement: 41 columns × 400 stays far below SQLite's 32766 bound parameters.
const ROWS_PER_INSERT: usize = 400;
/// Match snippets are detector output copied from the prompt: kept short.
const SNIPPET_MAX_BYTES: usize = 200;

impl Store {
    /// Writes `batch` in one transaction (rows, matches, rollups). Used by the writer task and
    /// by bulk loaders.
    ///
    /// # Errors
    /// Any statement fails; the transaction is rolled back and nothing of the batch is kept.
    pub async fn insert_batch(
        &self,
        batch: &[Arc<Exchange>],
        capture: &CaptureConfig,
    ) -> Result<(), Error> {
        let write_err = |source| Error::Write {
            records: batch.len(),
            source,
        };
        let mut tx = self.write.begin().await.map_err(write_err)?;
        insert_requests(&mut tx, batch, capture)
            .await
            .map_err(write_err)?;
        insert_matches(&mut tx, batch, capture.redact)
            .await
            .map_err(write_err)?;
        let mut rollups = Rollups::default();
        for ex in batch {
            rollups.add(ex);
        }
        upsert_rollups(&mut tx, &rollups).await.map_err(write_err)?;
        tx.commit().await.map_err(write_err)
    }
}

/// Per-record values that must be computed (and owned) before binding.
struct Derived {
    categories: Option<String>,
    prompt: Option<String>,
    response: Option<String>,
}

fn derive(ex: &Exchange, capture: &CaptureConfig) -> Derived {
    let text = ex.capture.as_ref();
    Derived {
        categories: ex.verdict.as_deref().map(row::categories),
        prompt: row::captured(
            text.and_then(|c| c.prompt.as_ref()),
            capture.prompts,
            capture,
        ),
        response: row::captured(
            text.and_then(|c| c.response.as_ref()),
            capture.responses,
            capture,
        ),
    }
}

async fn insert_requests(
    tx: &mut Transaction<'_, Sqlite>,
    batch: &[Arc<Exchange>],
    capture: &CaptureConfig,
) -> Result<(), sqlx::Error> {
    let derived: Vec<Derived> = batch.iter().map(|ex| derive(ex, capture)).collect();
    let rows: Vec<(&Exchange, &Derived)> = batch.iter().map(|e| &**e).zip(&derived).collect();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "INSERT OR IGNORE INTO requests ({REQUEST_COLUMNS}) "
        ));
        qb.push_values(chunk, |mut b, &(ex, d)| {
            let v = ex.verdict.as_deref();
            b.push_bind(ex.id.as_str())
                .push_bind(ex.started_unix_ms())
                .push_bind(ex.user.as_deref())
                .push_bind(ex.team.as_deref())
                .push_bind(ex.session.as_deref())
                .push_bind(ex.endpoint.as_str())
                .push_bind(ex.method.as_str())
                .push_bind(ex.path.as_str())
                .push_bind(ex.model.as_deref())
                .push_bind(ex.upstream_model.as_deref())
                .push_bind(ex.response_model.as_deref())
                .push_bind(ex.upstream.as_deref())
                .push_bind(ex.upstream_request_id.as_deref())
                .push_bind(ex.stream)
                .push_bind(i64::from(ex.status))
                .push_bind(ex.outcome.as_str())
                .push_bind(ex.error_kind)
                .push_bind(ex.blame.map(|b| b.as_str()))
                .push_bind(i64::from(ex.attempts))
                .push_bind(row::us(ex.latency))
                .push_bind(ex.ttfb.map(row::us))
                .push_bind(ex.ttft.map(row::us))
                .push_bind(row::opt_i64(ex.usage.prompt_tokens))
                .push_bind(row::opt_i64(ex.usage.completion_tokens))
                .push_bind(row::opt_i64(ex.usage.cached_tokens))
                .push_bind(row::opt_i64(ex.usage.reasoning_tokens))
                .push_bind(ex.cost)
                .push_bind(row::opt_i64(Some(ex.bytes_in)))
                .push_bind(row::opt_i64(Some(ex.bytes_out)))
                .push_bind(row::opt_i64(ex.prompt_chars))
                .push_bind(row::opt_i64(ex.response_chars))
                .push_bind(v.map(|v| v.level.as_str()))
                .push_bind(v.map(|v| f64::from(v.score)))
                .push_bind(v.map(|v| row::action_str(v.action)))
                .push_bind(row::is_blocked(ex))
                .push_bind(v.map(|v| v.shadow))
                .push_bind(d.categories.as_deref())
                .push_bind(v.map(|v| i64::from(v.scan_us)))
                .push_bind(v.and_then(|v| v.learned_score).map(f64::from))
                .push_bind(d.prompt.as_deref())
                .push_bind(d.response.as_deref());
        });
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// One match row, flattened.
struct MatchValues<'a> {
    ex: &'a Exchange,
    m: &'a crate::detect::Match,
    level: &'static str,
    action: &'static str,
    snippet: String,
}

async fn insert_matches(
    tx: &mut Transaction<'_, Sqlite>,
    batch: &[Arc<Exchange>],
    redact_snippets: bool,
) -> Result<(), sqlx::Error> {
    let mut rows = Vec::new();
    for ex in batch {
        let Some(v) = ex.verdict.as_deref() else {
            continue;
        };
        for m in &v.matches {
            // Redact before the final cut so a secret cut in half is still recognised.
            let snippet = if redact_snippets {
                cap(
                    &redact(cap(&m.snippet, SNIPPET_MAX_BYTES * 4)),
                    SNIPPET_MAX_BYTES,
                )
                .to_owned()
            } else {
                cap(&m.snippet, SNIPPET_MAX_BYTES).to_owned()
            };
            rows.push(MatchValues {
                ex,
                m,
                level: v.level.as_str(),
                action: row::action_str(v.action),
                snippet,
            });
        }
    }
    for chunk in rows.chunks(ROWS_PER_INSERT * 2) {
        let mut qb =
            QueryBuilder::<Sqlite>::new(format!("INSERT INTO security_matches ({MATCH_COLUMNS}) "));
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(r.ex.id.as_str())
                .push_bind(r.ex.started_unix_ms())
                .push_bind(r.ex.user.as_deref())
                .push_bind(row::model_key(r.ex))
                .push_bind(r.level)
                .push_bind(r.action)
                .push_bind(row::is_blocked(r.ex))
                .push_bind(r.m.category.as_str())
                .push_bind(&*r.m.rule)
                .push_bind(f64::from(r.m.weight))
                .push_bind(i64::from(r.m.segment))
                .push_bind(row::opt_i64(Some(r.m.span.0 as u64)))
                .push_bind(row::opt_i64(Some(r.m.span.1 as u64)))
                .push_bind(r.snippet.as_str());
        });
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

const AGG_COLUMNS: [&str; 14] = [
    "requests",
    "errors",
    "blocked",
    "threats_low",
    "threats_medium",
    "threats_high",
    "threats_critical",
    "latency_sum_us",
    "latency_max_us",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "prompt_chars",
    "response_chars",
];

/// `INSERT INTO <table> (...) ` and the `ON CONFLICT` tail that adds the deltas.
fn rollup_sql(table: &str) -> (String, String) {
    let hist: Vec<String> = (0..BUCKETS).map(|i| format!("h{i}")).collect();
    let cols: Vec<&str> = AGG_COLUMNS
        .iter()
        .copied()
        .chain(hist.iter().map(String::as_str))
        .collect();
    let sets: Vec<String> = cols
        .iter()
        .map(|c| match *c {
            "latency_max_us" => format!("{c} = MAX({c}, excluded.{c})"),
            _ => format!("{c} = {c} + excluded.{c}"),
        })
        .collect();
    (
        format!(
            "INSERT INTO {table} (bucket_ms, model, outcome, {}) ",
            cols.join(", ")
        ),
        format!(
            " ON CONFLICT (bucket_ms, model, outcome) DO UPDATE SET {}",
            sets.join(", ")
        ),
    )
}

fn rollup_statements() -> &'static [(String, String); 2] {
    static SQL: OnceLock<[(String, String); 2]> = OnceLock::new();
    SQL.get_or_init(|| [rollup_sql("rollup_minute"), rollup_sql("rollup_hour")])
}

/// Rollup rows per statement: 43 columns × 300 stays below the bound-parameter limit.
const ROLLUPS_PER_UPSERT: usize = 300;

async fn upsert_rollups(tx: &mut Transaction<'_, Sqlite>, r: &Rollups) -> Result<(), sqlx::Error> {
    for (map, (head, tail)) in [&r.minute, &r.hour].into_iter().zip(rollup_statements()) {
        let rows: Vec<(&(i64, String, &'static str), &Agg)> = map.iter().collect();
        for chunk in rows.chunks(ROLLUPS_PER_UPSERT) {
            let mut qb = QueryBuilder::<Sqlite>::new(head.as_str());
            qb.push_values(chunk, |mut b, (k, a)| {
                b.push_bind(k.0).push_bind(k.1.as_str()).push_bind(k.2);
                let ints = [a.requests, a.errors, a.blocked, a.threats[0], a.threats[1]];
                ints.iter().for_each(|v| {
                    b.push_bind(*v);
                });
                b.push_bind(a.threats[2])
                    .push_bind(a.threats[3])
                    .push_bind(a.latency_sum_us)
                    .push_bind(a.latency_max_us)
                    .push_bind(a.prompt_tokens)
                    .push_bind(a.completion_tokens)
                    .push_bind(a.cost)
                    .push_bind(a.prompt_chars)
                    .push_bind(a.response_chars);
                a.hist.iter().for_each(|h| {
                    b.push_bind(*h);
                });
            });
            qb.push(tail.as_str());
            qb.build().execute(&mut **tx).await?;
        }
    }
    upsert_users(tx, "rollup_user_hour", &r.user_hour).await?;
    upsert_users(tx, "rollup_user_day", &r.user_day).await
}

async fn upsert_users(
    tx: &mut Transaction<'_, Sqlite>,
    table: &str,
    users: &std::collections::HashMap<(i64, String), UserAgg>,
) -> Result<(), sqlx::Error> {
    let rows: Vec<(&(i64, String), &UserAgg)> = users.iter().collect();
    for chunk in rows.chunks(ROWS_PER_INSERT * 2) {
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO {table} (bucket_ms, user, requests, errors, blocked, threats, tokens, \
             cost, latency_sum_us) "
        ));
        qb.push_values(chunk, |mut b, (k, u)| {
            b.push_bind(k.0)
                .push_bind(k.1.as_str())
                .push_bind(u.requests)
                .push_bind(u.errors)
                .push_bind(u.blocked)
                .push_bind(u.threats)
                .push_bind(u.tokens)
                .push_bind(u.cost)
                .push_bind(u.latency_sum_us);
        });
        qb.push(
            " ON CONFLICT (bucket_ms, user) DO UPDATE SET requests = requests + excluded.requests, \
             errors = errors + excluded.errors, blocked = blocked + excluded.blocked, \
             threats = threats + excluded.threats, tokens = tokens + excluded.tokens, \
             cost = cost + excluded.cost, latency_sum_us = latency_sum_us + excluded.latency_sum_us",
        );
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}
