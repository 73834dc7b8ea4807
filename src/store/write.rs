//! One batch, one transaction: request rows, match rows and rollup upserts, all or nothing.
//!
//! Trade-off: multi-row `INSERT … VALUES (…),(…)` statements (a few hundred rows each) instead of
//! one statement per row, because each statement is a round trip (to sqlx's SQLite worker thread,
//! or to the PostgreSQL server). `ON CONFLICT (id) DO NOTHING` on the request id makes a retried
//! batch harmless for the rows; rollups are only ever written in the same transaction, so they
//! cannot double-count a committed batch.
//!
//! Fleet mode: several replicas upsert the same rollup rows concurrently. Each batch upserts its
//! rollup keys in sorted order, so two transactions lock shared rows in the same order and
//! cannot deadlock; a batch that still fails is retried by the writer.

use std::sync::{Arc, OnceLock};

use sqlx::{Any, AnyConnection, Connection, Transaction};

use crate::config::CaptureConfig;
use crate::event::Exchange;

use super::hist::BUCKETS;
use super::row::{self, Agg, Rollups, UserAgg};
use super::sql::{Dialect, Sql};
use super::{Error, Store};
use crate::redact::{cap, redact};

const REQUEST_COLUMNS: &str = "id, ts_ms, \"user\", team, session, endpoint, method, path, model, \
    upstream_model, response_model, upstream, upstream_request_id, stream, status, outcome, \
    error_kind, blame, attempts, latency_us, ttfb_us, ttft_us, prompt_tokens, completion_tokens, \
    cached_tokens, reasoning_tokens, cost, bytes_in, bytes_out, prompt_chars, response_chars, \
    risk_level, risk_score, action, blocked, shadow, categories, scan_us, learned_score, prompt, \
    response, key_user, judge, judge_us";

const MATCH_COLUMNS: &str = "request_id, ts_ms, \"user\", model, risk_level, action, blocked, \
    category, rule, weight, segment, span_start, span_end, snippet";

/// Rows per statement: 44 columns × 400 stays far below SQLite's 32766 and PostgreSQL's 65535
/// bound parameters.
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
        let mut conn = self.write.acquire().await.map_err(write_err)?;
        match write_batch(&mut conn, self.dialect, batch, capture).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // A connection whose write failed is closed, never reused. On SQLITE_FULL or
                // SQLITE_IOERR SQLite may roll the whole transaction back by itself; sqlx's own
                // ROLLBACK then fails and sqlx keeps counting the transaction as open, so its
                // next BEGIN is a SAVEPOINT, a later failure's ROLLBACK TO leaves a real
                // transaction open, and every "commit" after that releases a nested savepoint:
                // nothing is stored, nothing fails, and the file stays locked. Closing rolls
                // back whatever is open; the pool opens a fresh connection for the next batch.
                let _ = conn.close().await;
                Err(write_err(e))
            }
        }
    }
}

/// The batch's transaction on `conn`; rolled back (by sqlx, on drop) when a statement fails.
async fn write_batch(
    conn: &mut AnyConnection,
    d: Dialect,
    batch: &[Arc<Exchange>],
    capture: &CaptureConfig,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    insert_requests(&mut tx, d, batch, capture).await?;
    insert_matches(&mut tx, d, batch, capture.redact).await?;
    let mut rollups = Rollups::default();
    for ex in batch {
        rollups.add(ex);
    }
    upsert_rollups(&mut tx, d, &rollups).await?;
    tx.commit().await
}

/// Splits `rows` into statements of a few fixed sizes (`max`, then 64, 16, 4, 1 rows), so the
/// same handful of statement texts recur batch after batch and SQLite's prepared-statement
/// cache keeps them; a chunk of any length would be a new text, parsed again, for every batch.
fn statement_chunks<T>(rows: &[T], max: usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut rest = rows;
    for size in [max, 64, 16, 4, 1] {
        while rest.len() >= size {
            let (head, tail) = rest.split_at(size);
            out.push(head);
            rest = tail;
        }
    }
    out
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
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
    batch: &[Arc<Exchange>],
    capture: &CaptureConfig,
) -> Result<(), sqlx::Error> {
    let derived: Vec<Derived> = batch.iter().map(|ex| derive(ex, capture)).collect();
    let rows: Vec<(&Exchange, &Derived)> = batch.iter().map(|e| &**e).zip(&derived).collect();
    for chunk in statement_chunks(&rows, ROWS_PER_INSERT) {
        let mut qb = Sql::new(d, format!("INSERT INTO requests ({REQUEST_COLUMNS})"));
        qb.values(chunk, |b, &(ex, d)| {
            let v = ex.verdict.as_deref();
            b.bind(ex.id.as_str())
                .bind(ex.started_unix_ms())
                .bind(ex.user.as_deref())
                .bind(ex.team.as_deref())
                .bind(ex.session.as_deref())
                .bind(ex.endpoint.as_str())
                .bind(ex.method.as_str())
                .bind(ex.path.as_str())
                .bind(ex.model.as_deref())
                .bind(ex.upstream_model.as_deref())
                .bind(ex.response_model.as_deref())
                .bind(ex.upstream.as_deref())
                .bind(ex.upstream_request_id.as_deref())
                .bind(i64::from(ex.stream))
                .bind(i64::from(ex.status))
                .bind(ex.outcome.as_str())
                .bind(ex.error_kind)
                .bind(ex.blame.map(|b| b.as_str()))
                .bind(i64::from(ex.attempts))
                .bind(row::us(ex.latency))
                .bind(ex.ttfb.map(row::us))
                .bind(ex.ttft.map(row::us))
                .bind(row::opt_i64(ex.usage.prompt_tokens))
                .bind(row::opt_i64(ex.usage.completion_tokens))
                .bind(row::opt_i64(ex.usage.cached_tokens))
                .bind(row::opt_i64(ex.usage.reasoning_tokens))
                .bind(ex.cost)
                .bind(row::opt_i64(Some(ex.bytes_in)))
                .bind(row::opt_i64(Some(ex.bytes_out)))
                .bind(row::opt_i64(ex.prompt_chars))
                .bind(row::opt_i64(ex.response_chars))
                .bind(v.map(|v| v.level.as_str()))
                .bind(v.map(|v| f64::from(v.score)))
                .bind(v.map(|v| row::action_str(v.action)))
                .bind(i64::from(row::is_blocked(ex)))
                .bind(v.map(|v| i64::from(v.shadow)))
                .bind(d.categories.as_deref())
                .bind(v.map(|v| i64::from(v.scan_us)))
                .bind(v.and_then(|v| v.learned_score).map(f64::from))
                .bind(d.prompt.as_deref())
                .bind(d.response.as_deref())
                .bind(ex.key_user.as_deref())
                .bind(ex.judge.map(|j| j.outcome.as_str()))
                .bind(ex.judge.map(|j| row::us(j.latency)));
        });
        qb.push(" ON CONFLICT (id) DO NOTHING");
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
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
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
    for chunk in statement_chunks(&rows, ROWS_PER_INSERT * 2) {
        let mut qb = Sql::new(d, format!("INSERT INTO security_matches ({MATCH_COLUMNS})"));
        qb.values(chunk, |b, r| {
            b.bind(r.ex.id.as_str())
                .bind(r.ex.started_unix_ms())
                .bind(r.ex.user.as_deref())
                .bind(row::model_key(r.ex))
                .bind(r.level)
                .bind(r.action)
                .bind(i64::from(row::is_blocked(r.ex)))
                .bind(r.m.category.as_str())
                .bind(&*r.m.rule)
                .bind(f64::from(r.m.weight))
                .bind(i64::from(r.m.segment))
                .bind(row::opt_i64(Some(r.m.span.0 as u64)))
                .bind(row::opt_i64(Some(r.m.span.1 as u64)))
                .bind(r.snippet.as_str());
        });
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

const AGG_COLUMNS: [&str; 15] = [
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
    "unpriced",
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
            "latency_max_us" => format!(
                "{c} = CASE WHEN excluded.{c} > {table}.{c} THEN excluded.{c} ELSE {table}.{c} END"
            ),
            _ => format!("{c} = {table}.{c} + excluded.{c}"),
        })
        .collect();
    (
        format!(
            "INSERT INTO {table} (bucket_ms, model, outcome, {})",
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

/// Rollup rows per statement: 44 columns × 300 stays below the bound-parameter limit.
const ROLLUPS_PER_UPSERT: usize = 300;

async fn upsert_rollups(
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
    r: &Rollups,
) -> Result<(), sqlx::Error> {
    for (map, (head, tail)) in [&r.minute, &r.hour].into_iter().zip(rollup_statements()) {
        let mut rows: Vec<(&(i64, String, &'static str), &Agg)> = map.iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for chunk in statement_chunks(&rows, ROLLUPS_PER_UPSERT) {
            let mut qb = Sql::new(d, head.as_str());
            qb.values(chunk, |b, (k, a)| {
                b.bind(k.0).bind(k.1.as_str()).bind(k.2);
                let ints = [a.requests, a.errors, a.blocked, a.threats[0], a.threats[1]];
                ints.iter().for_each(|v| {
                    b.bind(*v);
                });
                b.bind(a.threats[2])
                    .bind(a.threats[3])
                    .bind(a.latency_sum_us)
                    .bind(a.latency_max_us)
                    .bind(a.prompt_tokens)
                    .bind(a.completion_tokens)
                    .bind(a.cost)
                    .bind(a.prompt_chars)
                    .bind(a.response_chars)
                    .bind(a.unpriced);
                a.hist.iter().for_each(|h| {
                    b.bind(*h);
                });
            });
            qb.push(tail.as_str());
            qb.build().execute(&mut **tx).await?;
        }
    }
    upsert_users(tx, d, "rollup_user_hour", &r.user_hour).await?;
    upsert_users(tx, d, "rollup_user_day", &r.user_day).await
}

async fn upsert_users(
    tx: &mut Transaction<'_, Any>,
    d: Dialect,
    table: &str,
    users: &std::collections::HashMap<(i64, String), UserAgg>,
) -> Result<(), sqlx::Error> {
    let mut rows: Vec<(&(i64, String), &UserAgg)> = users.iter().collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for chunk in statement_chunks(&rows, ROWS_PER_INSERT * 2) {
        let mut qb = Sql::new(
            d,
            format!(
                "INSERT INTO {table} (bucket_ms, \"user\", requests, errors, blocked, threats, \
                 tokens, cost, latency_sum_us)"
            ),
        );
        qb.values(chunk, |b, (k, u)| {
            b.bind(k.0)
                .bind(k.1.as_str())
                .bind(u.requests)
                .bind(u.errors)
                .bind(u.blocked)
                .bind(u.threats)
                .bind(u.tokens)
                .bind(u.cost)
                .bind(u.latency_sum_us);
        });
        let sets: Vec<String> = [
            "requests",
            "errors",
            "blocked",
            "threats",
            "tokens",
            "cost",
            "latency_sum_us",
        ]
        .iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .collect();
        qb.push(&format!(
            " ON CONFLICT (bucket_ms, \"user\") DO UPDATE SET {}",
            sets.join(", ")
        ));
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sqlx::{Connection, Executor};

    use super::statement_chunks;
    use crate::config::CaptureConfig;
    use crate::event::{Capture, Exchange};
    use crate::store::Store;

    fn batch(tag: &str, records: usize, prompt_bytes: usize) -> Vec<Arc<Exchange>> {
        (0..records)
            .map(|i| {
                let mut ex = Exchange::new(format!("{tag}-{i}"), "POST", "/v1/chat/completions");
                ex.capture = Some(Capture {
                    prompt: Some("x".repeat(prompt_bytes)),
                    response: None,
                });
                Arc::new(ex)
            })
            .collect()
    }

    /// REGRESSION: a full disk made SQLite roll a batch back by itself; sqlx lost count of the
    /// transaction, and after a second failure every later batch "committed" into a nested
    /// savepoint of a transaction that never ended: written climbed, rows did not, and the
    /// file stayed locked for every other process.
    #[tokio::test]
    async fn a_failed_write_leaves_no_transaction_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("full.db");
        let store = Store::open(&path).await.expect("open");
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&store.write)
            .await
            .expect("page count");
        store.close().await;
        // Room for 40 more pages (160 KiB): a real "database or disk is full" past it.
        let store = Store::open_sqlite(&path, Some((pages as u64 + 40) * 4096))
            .await
            .expect("open capped");
        let capture = CaptureConfig {
            prompts: true,
            max_bytes: 1 << 20,
            ..CaptureConfig::default()
        };
        // One big row: SQLite rolls the whole transaction back (no statement journal).
        let whole = store.insert_batch(&batch("a", 1, 400_000), &capture).await;
        assert!(whole.is_err(), "a 400 KB row cannot fit in 160 KiB");
        // Four rows in one statement: SQLite rolls back the statement only.
        let statement = store.insert_batch(&batch("b", 4, 60_000), &capture).await;
        assert!(statement.is_err(), "240 KB cannot fit in 160 KiB");
        // Space comes back (on this connection, the pool's only write connection).
        store
            .write
            .execute("PRAGMA max_page_count = 1000000")
            .await
            .expect("raise the cap");
        store
            .insert_batch(&batch("c", 4, 100), &capture)
            .await
            .expect("a small batch fits again");
        let rows = store.count_requests(0, i64::MAX).await.expect("count");
        assert_eq!(rows, 4, "a batch reported written must be committed");
        let mut other = sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
            .await
            .expect("second connection");
        other
            .execute("PRAGMA busy_timeout = 200")
            .await
            .expect("pragma");
        other
            .execute("CREATE TABLE outside (a)")
            .await
            .expect("no transaction left holding the write lock (\"database is locked\")");
    }

    #[test]
    fn statements_come_in_a_few_fixed_sizes_and_cover_every_row() {
        let rows: Vec<u32> = (0..1_000).collect();
        let sizes: Vec<usize> = statement_chunks(&rows, 400)
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, [400, 400, 64, 64, 64, 4, 4]);
        let joined: Vec<u32> = statement_chunks(&rows, 400).concat();
        assert_eq!(joined, rows);
        assert!(statement_chunks::<u32>(&[], 400).is_empty());
    }
}
