//! Shutdown: a stream in flight when shutdown starts completes, and its record is flushed.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::support::*;
use gatehouse::event::Outcome;

#[tokio::test]
async fn a_stream_in_flight_at_shutdown_completes() {
    let events = chat_stream_events(true);
    let gate = Arc::new(Semaphore::new(0));
    let chunks = events
        .iter()
        .map(|e| bytes::Bytes::from(e.clone()))
        .collect();
    let up = FakeUpstream::always(Reply::Stream {
        chunks,
        gate: Some(gate.clone()),
        reset_after: None,
    })
    .await;
    let mut gw = TestGateway::with_upstream(&up).await;
    let body =
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let rsp = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .body(body)
        .send()
        .await
        .expect("rsp");
    let mut stream = rsp.bytes_stream();
    let first = stream.next().await.expect("first chunk").expect("ok");
    assert_eq!(first, events[0].as_bytes());
    let app = gw.app.take().expect("app");
    let shutting = tokio::spawn(app.shutdown());
    // New connections are refused once shutdown has started.
    let url = gw.url.clone();
    let refused = async {
        loop {
            if client().get(format!("{url}/health")).send().await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), refused)
        .await
        .expect("listener closes");
    gate.add_permits(100);
    let mut got = String::from_utf8(first.to_vec()).expect("utf8");
    while let Some(chunk) = stream.next().await {
        got.push_str(std::str::from_utf8(&chunk.expect("chunk")).expect("utf8"));
    }
    assert_eq!(
        got,
        events.concat(),
        "the stream finished despite the shutdown"
    );
    shutting.await.expect("shutdown completes");
    let rec = gw.record().await;
    assert_eq!(rec.outcome, Outcome::Ok);
}
