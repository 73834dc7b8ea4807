//! The consumer of ratings sent on the proxy port: checks each against the requests this
//! replica finished lately (`Recent`, noted by the record fan-out) and the store
//! (`proxy::feedback::decide`), stores it, and answers the proxy. Ratings are taken one at a
//! time, so the "once per request" check and its insert cannot interleave on this replica.
//!
//! Trade-off: `Recent` holds `RECENT` requests (oldest out first), about 2–3 MB. An id found
//! neither there nor in the store is looked for again for `CATCH_UP`, since a request that has
//! just finished may still be on its way through the fan-out; an unknown id so answers 404
//! only after that wait.

use std::time::Duration;

use quick_cache::sync::Cache;
use tokio::sync::mpsc;

use crate::event::Exchange;
use crate::proxy::feedback::{decide, Rating, Refusal, Requester};
use crate::store::Store;

/// Requests remembered: the gap to the store is seconds at most, this covers minutes of a busy
/// replica.
const RECENT: usize = 16_384;

/// How long an id nobody knows yet is looked for in `Recent` (the fan-out hands records on
/// every few milliseconds; this covers a backlog).
const CATCH_UP: Duration = Duration::from_millis(500);
const CATCH_UP_STEP: Duration = Duration::from_millis(10);

/// Requests this replica finished lately, by id.
pub(super) struct Recent {
    requests: Cache<String, Requester>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            requests: Cache::new(RECENT),
        }
    }
}

impl Recent {
    /// Notes a finished request.
    pub(super) fn note(&self, ex: &Exchange) {
        let requester = Requester {
            user: ex.key_user.clone(),
            team: ex.team.clone(),
        };
        self.requests.insert(ex.id.clone(), requester);
    }

    /// Who made request `id`, if this replica finished it lately.
    pub(super) fn get(&self, id: &str) -> Option<Requester> {
        self.requests.get(id)
    }
}

/// Answers every rating from `rx` until the proxy is gone.
pub(super) async fn run(
    store: Store,
    recent: std::sync::Arc<Recent>,
    mut rx: mpsc::Receiver<Rating>,
) {
    while let Some(r) = rx.recv().await {
        let answer = rate(&store, &recent, &r).await;
        // The proxy may have stopped waiting (timeout, client gone); the rating stands.
        let _ = r.reply.send(answer);
    }
}

async fn rate(store: &Store, recent: &Recent, r: &Rating) -> Result<(), Refusal> {
    let id = r.feedback.request_id.trim();
    let unavailable = |e: crate::store::Error| {
        tracing::warn!(error = %e, request_id = %id, "feedback not stored");
        Refusal::Unavailable
    };
    let target = store.feedback_target(id).await.map_err(unavailable)?;
    let stored = target
        .requester
        .map(|(user, team)| Requester { user, team });
    let mut requester = recent.get(id).or(stored);
    let caught_up = tokio::time::Instant::now() + CATCH_UP;
    while requester.is_none() && tokio::time::Instant::now() < caught_up {
        tokio::time::sleep(CATCH_UP_STEP).await;
        requester = recent.get(id);
    }
    decide(r.rater.as_ref(), requester.as_ref(), target.rated)?;
    store.feedback(&r.feedback).await.map_err(unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_requests_are_remembered_by_id() {
        let recent = Recent::default();
        let mut ex = Exchange::new("id-1".into(), "POST", "/v1/chat/completions");
        ex.user = Some("end-user-9".into());
        ex.key_user = Some("alice".into());
        recent.note(&ex);
        assert_eq!(
            recent.get("id-1"),
            Some(Requester {
                user: Some("alice".into()),
                team: None
            })
        );
        assert_eq!(recent.get("id-2"), None);
    }
}
