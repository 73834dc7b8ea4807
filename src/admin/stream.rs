//! `GET /api/events/stream`: the live feed as server-sent events, one `request` event per
//! finished request (a `FeedItem` as JSON). A subscriber that falls behind gets one `lagged`
//! event with the number of summaries it missed, then carries on; nobody waits for it.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::AdminState;
use crate::analytics::FeedItem;

/// The live feed (server-sent events).
#[utoipa::path(get, path = "/api/events/stream", tag = "live",
    responses(
        (status = 200, description = "`text/event-stream`: `event: request` with a FeedItem as data per finished request; `event: lagged` with the number skipped when this subscriber fell behind", content_type = "text/event-stream", body = FeedItem),
        (status = 401, description = "Missing or wrong token or session cookie")))]
pub(super) async fn events(
    State(s): State<AdminState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = s.feed.subscribe();
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            let event = match rx.recv().await {
                Ok(item) => match Event::default().event("request").json_data(&*item) {
                    Ok(e) => e,
                    Err(_) => continue,
                },
                Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok(event), rx));
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
