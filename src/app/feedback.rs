//! The consumer of ratings sent on the proxy port: checks each against the recent requests the
//! proxy knows and the store (`proxy::feedback::decide`), stores it, and answers the proxy.
//! Ratings are taken one at a time, so the "once per request" check and its insert cannot
//! interleave on this replica.

use tokio::sync::mpsc;

use crate::proxy::feedback::{decide, Rating, Refusal, Requester};
use crate::store::Store;

/// Answers every rating from `rx` until the proxy is gone.
pub(super) async fn run(store: Store, mut rx: mpsc::Receiver<Rating>) {
    while let Some(r) = rx.recv().await {
        let answer = rate(&store, &r).await;
        // The proxy may have stopped waiting (timeout, client gone); the rating stands.
        let _ = r.reply.send(answer);
    }
}

async fn rate(store: &Store, r: &Rating) -> Result<(), Refusal> {
    let id = r.feedback.request_id.trim();
    let unavailable = |e: crate::store::Error| {
        tracing::warn!(error = %e, request_id = %id, "feedback not stored");
        Refusal::Unavailable
    };
    let target = store.feedback_target(id).await.map_err(unavailable)?;
    let stored = target
        .requester
        .map(|(user, team)| Requester { user, team });
    decide(
        r.rater.as_ref(),
        r.recent.as_ref().or(stored.as_ref()),
        target.rated,
    )?;
    store.feedback(&r.feedback).await.map_err(unavailable)
}
