//! Retention: deletes rows older than the configured number of days, in small chunks so the
//! writer never waits long behind a delete.

use std::future::Future;
use std::time::{Duration, SystemTime};

use super::{query_err, Error, Store};

/// Rows deleted per statement.
const DELETE_CHUNK: i64 = 5_000;

/// Rows removed by one purge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub requests: u64,
    pub matches: u64,
    pub feedback: u64,
    pub rollups: u64,
}

impl Store {
    /// Deletes everything that started before `cutoff_ms` (unix ms).
    ///
    /// # Errors
    /// A delete statement fails (rows already deleted stay deleted).
    pub async fn purge_before(&self, cutoff_ms: i64) -> Result<Purged, Error> {
        Ok(Purged {
            requests: self.delete_chunked("requests", "rid", cutoff_ms).await?,
            matches: self
                .delete_chunked("security_matches", "mid", cutoff_ms)
                .await?,
            feedback: self.delete_chunked("feedback", "fid", cutoff_ms).await?,
            rollups: self.delete_rollups(cutoff_ms).await?,
        })
    }

    async fn delete_chunked(&self, table: &str, key: &str, cutoff_ms: i64) -> Result<u64, Error> {
        let sql = format!(
            "DELETE FROM {table} WHERE {key} IN \
             (SELECT {key} FROM {table} WHERE ts_ms < $1 LIMIT {DELETE_CHUNK})"
        );
        let mut total = 0;
        loop {
            let done = sqlx::query(&sql)
                .bind(cutoff_ms)
                .execute(&self.write)
                .await
                .map_err(query_err("retention delete"))?
                .rows_affected();
            total += done;
            if done < DELETE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    async fn delete_rollups(&self, cutoff_ms: i64) -> Result<u64, Error> {
        let mut total = 0;
        for table in [
            "rollup_minute",
            "rollup_hour",
            "rollup_user_hour",
            "rollup_user_day",
        ] {
            total += sqlx::query(&format!("DELETE FROM {table} WHERE bucket_ms < $1"))
                .bind(cutoff_ms)
                .execute(&self.write)
                .await
                .map_err(query_err("retention delete"))?
                .rows_affected();
        }
        Ok(total)
    }
}

/// Purges data older than `days` now and then every `every`, until `shutdown` completes.
/// `days == 0` keeps everything (the task returns at once).
pub async fn run_retention(
    store: Store,
    days: u32,
    every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    if days == 0 {
        return;
    }
    tokio::pin!(shutdown);
    loop {
        let keep = Duration::from_secs(u64::from(days) * 86_400);
        let cutoff = SystemTime::now()
            .checked_sub(keep)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        match store.purge_before(cutoff).await {
            Ok(p) => tracing::info!(
                requests = p.requests,
                matches = p.matches,
                "retention purge"
            ),
            Err(e) => tracing::warn!(error = %e, "retention purge failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = &mut shutdown => return,
        }
    }
}
