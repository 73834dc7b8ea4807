//! Streams stay streams: each event reaches the client before the upstream sends the next;
//! usage and time to first token are recorded; the usage chunk gatehouse asked for is invisible.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::support::*;
use gatehouse::event::Outcome;

const STREAM_BODY: &str =
    r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"sky?"}]}"#;

/// Reads from the byte stream until `want` more whole events (blank-line terminated) arrived.
async fn read_events(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
    want: usize,
) {
    loop {
        if buf.matches("\n\n").count() >= want {
            return;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an event within 10 s: the proxy must not buffer")
            .expect("stream open")
            .expect("chunk");
        buf.push_str(std::str::from_utf8(&chunk).expect("utf8"));
    }
}

#[tokio::test]
async fn events_are_relayed_one_by_one_and_usage_chunk_is_stripped() {
    let events = chat_stream_events(true);
    let gate = Arc::new(Semaphore::new(0));
    let chunks = events
        .iter()
        .map(|e| bytes::Bytes::from(e.clone()))
        .collect();
    let reply = Reply::Stream {
        chunks,
        gate: Some(gate.clone()),
        reset_after: None,
    };
    let up = FakeUpstream::always(reply).await;
    let mut gw = TestGateway::with_upstream(&up).await;
    let rsp = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .body(STREAM_BODY)
        .send()
        .await
        .expect("rsp");
    assert_eq!(rsp.status(), 200);
    assert!(rsp.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/event-stream"));
    let mut stream = rsp.bytes_stream();
    let mut got = String::new();
    // The upstream sends event k+1 only after the client has event k.
    for k in 1..=4 {
        read_events(&mut stream, &mut got, k).await;
        gate.add_permits(1);
    }
    gate.add_permits(10);
    while let Some(chunk) = stream.next().await {
        got.push_str(std::str::from_utf8(&chunk.expect("chunk")).expect("utf8"));
    }
    let mut expected = events.clone();
    expected.remove(4); // the usage chunk the client did not ask for
    assert_eq!(
        got,
        expected.concat(),
        "client sees exactly the events it asked for"
    );
    let sent: serde_json::Value = serde_json::from_slice(&up.requests()[0].body).expect("json");
    assert_eq!(
        sent["stream_options"]["include_usage"], true,
        "gatehouse asked for usage"
    );
    let rec = gw.record().await;
    assert!(rec.stream);
    assert_eq!(rec.outcome, Outcome::Ok);
    assert_eq!(rec.usage.prompt_tokens, Some(1210));
    assert_eq!(rec.usage.cached_tokens, Some(1024));
    assert_eq!(rec.response_chars, Some(4));
    let ttft = rec.ttft.expect("ttft recorded");
    assert!(ttft <= rec.latency && rec.ttfb.expect("ttfb") <= ttft);
    assert_eq!(rec.bytes_out, got.len() as u64);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_client_that_asked_for_usage_gets_it_byte_for_byte() {
    let events = chat_stream_events(true);
    let up = FakeUpstream::always(stream(
        &events.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
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
    assert_eq!(rsp.text().await.expect("body"), events.concat());
    assert_eq!(
        up.requests()[0].body,
        body.as_bytes(),
        "nothing to change in the request"
    );
    assert_eq!(gw.record().await.usage.completion_tokens, Some(2));
    gw.shutdown().await;
}

#[tokio::test]
async fn responses_stream_reads_usage_from_the_terminal_event() {
    let events = [
        "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"model\":\"m-1\"}}\n\n",
        ": keep-alive\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"Bl\"}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"model\":\"m-1\",\"usage\":{\"input_tokens\":7,\"output_tokens\":2,\"output_tokens_details\":{\"reasoning_tokens\":1}}}}\n\n",
    ];
    let up = FakeUpstream::always(stream(&events)).await;
    let mut gw = TestGateway::with_upstream(&up).await;
    let body = r#"{"model":"m","stream":true,"input":"hi"}"#;
    let rsp = client()
        .post(format!("{}/v1/responses", gw.url))
        .body(body)
        .send()
        .await
        .expect("rsp");
    assert_eq!(rsp.text().await.expect("body"), events.concat());
    assert_eq!(
        up.requests()[0].body,
        body.as_bytes(),
        "responses calls are not patched"
    );
    let rec = gw.record().await;
    assert_eq!(rec.usage.reasoning_tokens, Some(1));
    assert_eq!(rec.response_model.as_deref(), Some("m-1"));
    assert!(rec.ttft.is_some());
    gw.shutdown().await;
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_and_is_recorded() {
    // A long answer: the upstream is still sending when the client goes away.
    let mut events = chat_stream_events(false);
    events.splice(2..2, std::iter::repeat_n(events[1].clone(), 20_000));
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
    let rsp = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .body(STREAM_BODY)
        .send()
        .await
        .expect("rsp");
    let mut stream = rsp.bytes_stream();
    let mut got = String::new();
    read_events(&mut stream, &mut got, 1).await;
    drop(stream);
    let cancelled = up.cancelled.clone();
    let wait = tokio::spawn(async move { cancelled.notified().await });
    gate.add_permits(Semaphore::MAX_PERMITS);
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("upstream sees the cancel")
        .expect("join");
    let rec = gw.record().await;
    assert_eq!(rec.outcome, Outcome::Cancelled);
    gw.shutdown().await;
}

#[tokio::test]
async fn an_error_event_mid_stream_is_a_failure() {
    let events = [
        "data: {\"id\":\"gen-77\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"B\"}}]}\n\n",
        "data: {\"id\":\"gen-77\",\"error\":{\"code\":\"server_error\",\"message\":\"Provider disconnected\"},\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\"}]}\n\n",
    ];
    let up = FakeUpstream::always(stream(&events)).await;
    let mut gw = TestGateway::with_upstream(&up).await;
    let body =
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let rsp = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .body(body)
        .send()
        .await
        .expect("rsp");
    assert_eq!(
        rsp.text().await.expect("body"),
        events.concat(),
        "the upstream's error frame passes through"
    );
    let rec = gw.record().await;
    assert_eq!(rec.outcome, Outcome::StreamError);
    assert_eq!(rec.error_kind, Some("upstream_stream_error"));
    gw.shutdown().await;
}
