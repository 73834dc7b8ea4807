//! The live feed: one small summary per finished request, broadcast to the admin API's
//! server-sent-event subscribers (the dashboard's live request and security feeds).
//!
//! A summary carries figures and labels only — never prompt or response text, even when text
//! capture is on. Trade-off: `tokio::sync::broadcast` keeps the last `capacity` summaries; a
//! subscriber that falls further behind skips what it missed (it sees a `lagged` event) and the
//! feeding task never waits for anyone.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use crate::event::Exchange;
use crate::store::{is_blocked, model_key, rfc3339};

/// One finished request, as the live feed shows it. Latency in seconds, cost in USD.
#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct FeedItem {
    pub id: String,
    /// When the request arrived, RFC 3339 UTC.
    pub timestamp: String,
    pub ts_ms: i64,
    pub user: Option<String>,
    /// The model it is accounted under (upstream id after alias resolution).
    pub model: String,
    pub endpoint: &'static str,
    pub status: u16,
    /// `ok`, `upstream_error`, `stream_error`, `failed`, `rejected`, `blocked`, `cancelled`.
    pub outcome: &'static str,
    pub latency: f64,
    pub tokens: Option<u64>,
    pub cost: Option<f64>,
    /// The detector's level (`none` … `critical`) when the request was scanned.
    pub risk_level: Option<&'static str>,
    pub risk_score: Option<f32>,
    /// Threat categories found, empty when none.
    pub categories: Vec<&'static str>,
    pub blocked: bool,
    /// The judge's opinion (`safe`, `unsafe`, `error`, `timeout`) when it was asked.
    pub judge: Option<&'static str>,
}

impl FeedItem {
    /// The summary of one record.
    pub fn from_exchange(ex: &Exchange) -> FeedItem {
        let v = ex.verdict.as_deref();
        FeedItem {
            id: ex.id.clone(),
            timestamp: rfc3339(ex.started_unix_ms()),
            ts_ms: ex.started_unix_ms(),
            user: ex.user.clone(),
            model: model_key(ex).to_owned(),
            endpoint: ex.endpoint.as_str(),
            status: ex.status,
            outcome: ex.outcome.as_str(),
            latency: ex.latency.as_secs_f64(),
            tokens: ex.usage.total(),
            cost: ex.cost,
            risk_level: v.map(|v| v.level.as_str()),
            risk_score: v.map(|v| v.score),
            categories: v.map_or_else(Vec::new, |v| {
                v.categories.iter().map(|c| c.as_str()).collect()
            }),
            blocked: is_blocked(ex),
            judge: ex.judge.map(|j| j.outcome.as_str()),
        }
    }
}

/// Publishes a summary of every record until the channel closes. Having no subscriber is
/// normal (the send error is ignored).
pub async fn run_feed(mut rx: mpsc::Receiver<Arc<Exchange>>, tx: broadcast::Sender<Arc<FeedItem>>) {
    while let Some(ex) = rx.recv().await {
        let _ = tx.send(Arc::new(FeedItem::from_exchange(&ex)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Outcome;

    #[test]
    fn summary_has_figures_and_no_text() {
        let mut ex = Exchange::new("r1".into(), "POST", "/v1/chat/completions");
        ex.user = Some("alice".into());
        ex.model = Some("gpt-4o-mini".into());
        ex.status = 200;
        ex.outcome = Outcome::Ok;
        ex.capture = Some(crate::event::Capture {
            prompt: Some("a secret prompt".into()),
            response: Some("a secret answer".into()),
        });
        let item = FeedItem::from_exchange(&ex);
        assert_eq!(item.model, "gpt-4o-mini");
        assert_eq!(item.outcome, "ok");
        assert!(!item.blocked);
        let json = serde_json::to_string(&item).expect("serialise");
        assert!(!json.contains("secret"), "{json}");
        assert_eq!(item.judge, None, "no judge asked");
        ex.judge = Some(crate::event::Judged {
            outcome: crate::event::JudgeOutcome::Unsafe,
            latency: std::time::Duration::from_millis(90),
            level_before: crate::detect::RiskLevel::Medium,
        });
        assert_eq!(FeedItem::from_exchange(&ex).judge, Some("unsafe"));
    }
}
