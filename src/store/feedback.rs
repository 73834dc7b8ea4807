//! User feedback on a request: `{request_id, score, comment}`, stored as given (comment capped
//! and redacted) and summarised per model by joining the request it rates.

use std::time::SystemTime;

use serde::Serialize;
use sqlx::Row;

use super::sql::{count, num};
use super::{query_err, Error, Store};
use crate::redact::{cap, redact};

/// Longest comment kept, in bytes.
const COMMENT_MAX_BYTES: usize = 2_000;
/// Longest request id accepted (UUIDs are 36).
pub use crate::event::Feedback;

/// Feedback figures for one model.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct FeedbackSummary {
    pub model: String,
    pub count: u64,
    /// Mean score, 0..=1.
    pub avg_score: f64,
}

/// What the store knows of a request about to be rated (`Store::feedback_target`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeedbackTarget {
    /// The key's user and the team recorded for the request; `None` when no such request is
    /// stored.
    pub requester: Option<(Option<String>, Option<String>)>,
    /// Whether any feedback on the request is stored already.
    pub rated: bool,
}

impl Store {
    /// Who made request `request_id` and whether it has been rated, for the proxy port's
    /// one-rating-per-request rule. Read on the write pool, so a rating just stored is seen.
    ///
    /// # Errors
    /// `Error::Query` when a query fails.
    pub async fn feedback_target(&self, request_id: &str) -> Result<FeedbackTarget, Error> {
        let row = sqlx::query("SELECT key_user, team FROM requests WHERE id = $1")
            .bind(request_id)
            .fetch_optional(&self.write)
            .await
            .map_err(query_err("feedback target"))?;
        let requester = row
            .map(|r| Ok::<_, sqlx::Error>((r.try_get("key_user")?, r.try_get("team")?)))
            .transpose()
            .map_err(query_err("feedback target"))?;
        let rated = sqlx::query("SELECT 1 FROM feedback WHERE request_id = $1 LIMIT 1")
            .bind(request_id)
            .fetch_optional(&self.write)
            .await
            .map_err(query_err("feedback target"))?
            .is_some();
        Ok(FeedbackTarget { requester, rated })
    }

    /// Stores one feedback entry (validated first). The rated request need not be stored yet.
    ///
    /// # Errors
    /// `Error::InvalidFeedback` for bad fields, `Error::Query` when the insert fails.
    pub async fn feedback(&self, fb: &Feedback) -> Result<(), Error> {
        fb.validate().map_err(Error::InvalidFeedback)?;
        let comment = fb
            .comment
            .as_deref()
            .map(|c| redact(cap(c, COMMENT_MAX_BYTES)).into_owned());
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        sqlx::query(
            "INSERT INTO feedback (request_id, ts_ms, score, comment) VALUES ($1, $2, $3, $4)",
        )
        .bind(fb.request_id.trim())
        .bind(now)
        .bind(fb.score)
        .bind(comment)
        .execute(&self.write)
        .await
        .map_err(query_err("insert feedback"))?;
        Ok(())
    }

    /// Feedback count and mean score per model since `since_ms` (feedback on requests not in
    /// the store counts under `unknown`).
    ///
    /// # Errors
    /// The query fails.
    pub async fn feedback_summary(&self, since_ms: i64) -> Result<Vec<FeedbackSummary>, Error> {
        let rows = sqlx::query(
            "SELECT COALESCE(r.upstream_model, r.model, 'unknown') AS m, COUNT(*) AS n, \
             AVG(f.score) AS s FROM feedback f LEFT JOIN requests r ON r.id = f.request_id \
             WHERE f.ts_ms >= $1 GROUP BY m ORDER BY n DESC",
        )
        .bind(since_ms)
        .fetch_all(&self.read)
        .await
        .map_err(query_err("feedback summary"))?;
        rows.iter()
            .map(|r| {
                Ok(FeedbackSummary {
                    model: r.try_get("m")?,
                    count: count(r, "n")?,
                    avg_score: num(r, "s")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query_err("feedback summary"))
    }
}
