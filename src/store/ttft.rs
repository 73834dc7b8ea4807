//! Time to first token per model over a range, for reports: streamed requests only (a plain
//! answer's first token is its whole body, so its "TTFT" is its latency).
//!
//! Rollups keep no TTFT, so this reads the `requests` table; the bucketing into the fixed
//! latency buckets (`hist::BOUNDS_US`) happens in SQL, so only one row per (model, bucket)
//! crosses to Rust, and percentiles come out the way rollup latency percentiles do. The cost
//! is a scan of the range's request rows, once per report; the range is bounded by
//! `store.retention_days` like everything else.

use std::sync::OnceLock;

use sqlx::Row;

use super::hist::{Histogram, BOUNDS_US, BUCKETS};
use super::sql::count;
use super::{query_err, Error, Store};

/// The TTFT histogram of one model's streamed requests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelTtft {
    /// The model the request is accounted under in rollups: the upstream id after alias
    /// resolution, else the name sent (a streamed request with a first token was served, so
    /// its name is a rollup key too).
    pub model: String,
    pub hist: Histogram,
}

/// `SELECT model, bucket, count, max` over streamed requests with a first token.
fn sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let whens: String = BOUNDS_US
            .iter()
            .enumerate()
            .map(|(i, b)| format!(" WHEN ttft_us <= {b} THEN {i}"))
            .collect();
        format!(
            "SELECT COALESCE(upstream_model, model, 'unknown') AS m, \
             CAST(CASE{whens} ELSE {last} END AS BIGINT) AS b, \
             CAST(COUNT(*) AS BIGINT) AS n, CAST(MAX(ttft_us) AS BIGINT) AS mx \
             FROM requests WHERE ts_ms >= $1 AND ts_ms < $2 AND stream = 1 \
             AND ttft_us IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
            last = BUCKETS - 1
        )
    })
}

impl Store {
    /// TTFT histograms per model of the streamed requests in `[from_ms, to_ms)`, by model
    /// name.
    ///
    /// # Errors
    /// The query fails.
    pub async fn ttft_by_model(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ModelTtft>, Error> {
        let rows = sqlx::query(sql())
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(&self.read)
            .await
            .map_err(query_err("ttft by model"))?;
        let mut out: Vec<ModelTtft> = Vec::new();
        for r in &rows {
            let model: String = r.try_get("m").map_err(query_err("ttft by model"))?;
            let bucket = count(r, "b").map_err(query_err("ttft by model"))? as usize;
            let n = count(r, "n").map_err(query_err("ttft by model"))?;
            let max_us = count(r, "mx").map_err(query_err("ttft by model"))?;
            if out.last().is_none_or(|m| m.model != model) {
                out.push(ModelTtft {
                    model,
                    hist: Histogram::default(),
                });
            }
            let h = &mut out.last_mut().expect("pushed above").hist;
            h.counts[bucket.min(BUCKETS - 1)] += n;
            h.max_us = h.max_us.max(max_us);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::config::CaptureConfig;
    use crate::event::Exchange;
    use crate::store::Store;

    fn streamed(id: &str, model: &str, ttft_ms: Option<u64>, stream: bool) -> Arc<Exchange> {
        let mut ex = Exchange::new(id.into(), "POST", "/v1/chat/completions");
        ex.model = Some("alias".into());
        ex.upstream_model = Some(model.into());
        ex.stream = stream;
        ex.ttft = ttft_ms.map(Duration::from_millis);
        Arc::new(ex)
    }

    #[tokio::test]
    async fn streamed_requests_with_a_first_token_are_bucketed_per_model() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("t.db")).await.expect("store");
        let mut batch: Vec<Arc<Exchange>> = (0..19)
            .map(|i| streamed(&format!("a{i}"), "slow", Some(400), true))
            .collect();
        batch.push(streamed("a19", "slow", Some(3_200), true));
        batch.push(streamed("b0", "fast", Some(90), true));
        batch.push(streamed("c0", "fast", Some(9_000), false)); // plain: not counted
        batch.push(streamed("c1", "fast", None, true)); // no first token: not counted
        store
            .insert_batch(&batch, &CaptureConfig::default())
            .await
            .expect("write");
        let got = store.ttft_by_model(0, i64::MAX).await.expect("read");
        store.close().await;
        let names: Vec<&str> = got.iter().map(|m| m.model.as_str()).collect();
        assert_eq!(names, ["fast", "slow"]);
        assert_eq!(got[0].hist.count(), 1);
        assert_eq!(got[0].hist.max_us, 90_000);
        let slow = &got[1].hist;
        assert_eq!(slow.count(), 20);
        assert_eq!(slow.max_us, 3_200_000);
        // The 19th of 20 is in the 400 ms bucket, the 20th in (3 s, 4 s].
        assert!((0.3..=0.4).contains(&slow.quantile(0.95)), "{slow:?}");
        assert!((3.0..=3.2).contains(&slow.quantile(1.0)), "{slow:?}");
    }
}
