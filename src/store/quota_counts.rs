//! Rate-limit counters shared between replicas (`quota_counts`): each replica overwrites its
//! own rows and reads the others' written since it last read. Plain rows here; what they mean
//! (and their sums) is `quota::fleet`'s.
//!
//! Why absolute counts per replica rather than one shared row incremented by deltas: a write
//! whose commit is lost (timeout, failover) and then retried would count a delta twice, and a
//! replica would have to remember which of its deltas the store holds; an overwrite is
//! idempotent, and excluding one's own rows on read is exact. A write moves a row's end too:
//! requests in flight are one row per replica whose end is a lease each write renews.

use sqlx::Row;

use super::sql::Sql;
use super::{query_err, Error, Store};

/// One replica's count in one window of one scope's counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaCount {
    pub scope: String,
    pub counter: String,
    /// The window's number (unix ms divided by its length).
    pub window: i64,
    pub used: i64,
    /// Unix ms the window ends.
    pub ends_ms: i64,
}

/// Rows per statement: seven values each, well under PostgreSQL's 65,535 bound values.
const CHUNK: usize = 1000;

impl Store {
    /// Overwrites `instance`'s counts with `rows`, in one transaction, noting them as written
    /// at `now_ms`.
    ///
    /// # Errors
    /// A statement fails (nothing is written).
    pub async fn put_quota_counts(
        &self,
        instance: &str,
        rows: &[QuotaCount],
        now_ms: i64,
    ) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(query_err("begin quota counts"))?;
        for chunk in rows.chunks(CHUNK) {
            let mut q = Sql::new(
                self.dialect,
                "INSERT INTO quota_counts \
                 (scope, counter, window_id, instance, used, ends_ms, updated_ms)",
            );
            q.values(chunk, |v, r| {
                v.bind(r.scope.as_str())
                    .bind(r.counter.as_str())
                    .bind(r.window)
                    .bind(instance)
                    .bind(r.used)
                    .bind(r.ends_ms)
                    .bind(now_ms);
            });
            q.push(
                " ON CONFLICT (scope, counter, window_id, instance) DO UPDATE SET \
                 used = excluded.used, ends_ms = excluded.ends_ms, updated_ms = excluded.updated_ms",
            );
            q.build()
                .execute(&mut *tx)
                .await
                .map_err(query_err("write quota counts"))?;
        }
        tx.commit()
            .await
            .map_err(query_err("commit quota counts"))?;
        Ok(())
    }

    /// Every other replica's rows (all instances but `instance`) written after `since_ms`, of
    /// windows still open at `now_ms`, each with the instance that wrote it.
    ///
    /// # Errors
    /// The query fails.
    pub async fn others_quota_counts(
        &self,
        instance: &str,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<(String, QuotaCount)>, Error> {
        let rows = sqlx::query(
            "SELECT instance, scope, counter, window_id, used, ends_ms FROM quota_counts \
             WHERE updated_ms > $1 AND ends_ms > $2 AND instance <> $3",
        )
        .bind(since_ms)
        .bind(now_ms)
        .bind(instance)
        .fetch_all(&self.read)
        .await
        .map_err(query_err("read quota counts"))?;
        rows.iter()
            .map(|r| {
                let count = QuotaCount {
                    scope: r.try_get("scope")?,
                    counter: r.try_get("counter")?,
                    window: r.try_get("window_id")?,
                    used: r.try_get("used")?,
                    ends_ms: r.try_get("ends_ms")?,
                };
                Ok((r.try_get("instance")?, count))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(query_err("read quota counts"))
    }

    /// Deletes the counts of windows ended by `now_ms` (any replica's). Returns how many.
    ///
    /// # Errors
    /// The statement fails.
    pub async fn purge_quota_counts(&self, now_ms: i64) -> Result<u64, Error> {
        let r = sqlx::query("DELETE FROM quota_counts WHERE ends_ms <= $1")
            .bind(now_ms)
            .execute(&self.write)
            .await
            .map_err(query_err("purge quota counts"))?;
        Ok(r.rows_affected())
    }
}
