//! Upstream faults: the client gets the right status, the record says what happened, and the
//! gateway keeps serving.

use crate::support::*;
use gatehouse::event::{Blame, Outcome};

async fn post(gw: &TestGateway, body: &str) -> reqwest::Response {
    client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .body(body.to_owned())
        .send()
        .await
        .expect("response")
}

#[tokio::test]
async fn connection_refused_is_a_502_after_retries() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v1", closed.local_addr().expect("addr"));
    drop(closed);
    let mut gw = TestGateway::start(config_for(&url)).await;
    let rsp = post(&gw, CHAT_BODY).await;
    assert_eq!(rsp.status(), 502);
    assert_eq!(rsp.headers()["x-gatehouse-error"], "upstream_connect");
    let v: serde_json::Value = rsp.json().await.expect("OpenAI-shaped error");
    assert_eq!(v["error"]["code"], "upstream_connect");
    let rec = gw.record().await;
    assert_eq!(
        (rec.outcome, rec.blame, rec.attempts),
        (Outcome::Failed, Some(Blame::Upstream), 3)
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn upstream_500_passes_through_untouched_after_retries() {
    let body = r#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#;
    let up = FakeUpstream::always(Reply::Json(500, body.into())).await;
    let mut gw = TestGateway::with_upstream(&up).await;
    let rsp = post(&gw, CHAT_BODY).await;
    assert_eq!(rsp.status(), 500);
    assert!(
        rsp.headers().get("x-gatehouse-error").is_none(),
        "not gatehouse's error"
    );
    assert_eq!(rsp.text().await.expect("body"), body);
    assert_eq!(up.count(), 3, "one attempt and two retries");
    let rec = gw.record().await;
    assert_eq!(
        (rec.outcome, rec.status, rec.attempts),
        (Outcome::UpstreamError, 500, 3)
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_429_then_success_is_retried() {
    let up = FakeUpstream::start(|n, _| match n {
        0 => Reply::Full(
            429,
            vec![("retry-after", "0".into())],
            r#"{"error":{"code":"rate_limit_exceeded"}}"#.into(),
        ),
        _ => Reply::Json(200, CHAT_ANSWER.into()),
    })
    .await;
    let mut gw = TestGateway::with_upstream(&up).await;
    let rsp = post(&gw, CHAT_BODY).await;
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.text().await.expect("body"), CHAT_ANSWER);
    assert_eq!(up.count(), 2);
    let sent = up.requests();
    assert_eq!(sent[0].body, sent[1].body, "the retry sends the same bytes");
    let rec = gw.record().await;
    assert_eq!((rec.outcome, rec.attempts), (Outcome::Ok, 2));
    gw.shutdown().await;
}

#[tokio::test]
async fn fallback_upstream_answers_when_the_first_keeps_failing() {
    let bad = FakeUpstream::always(Reply::Json(503, r#"{"error":"overloaded"}"#.into())).await;
    let good = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let mut c = config_for(&bad.url());
    c.upstreams.get_mut("fake").expect("fake").retries = 1;
    c.upstreams.get_mut("fake").expect("fake").fallbacks = vec!["backup".into()];
    let mut backup = gatehouse::config::UpstreamConfig::default();
    backup.base_url = good.url();
    c.upstreams.insert("backup".into(), backup);
    let mut gw = TestGateway::start(c).await;
    let rsp = post(&gw, CHAT_BODY).await;
    assert_eq!(rsp.status(), 200);
    assert_eq!((bad.count(), good.count()), (2, 1));
    let rec = gw.record().await;
    assert_eq!(rec.upstream.as_deref(), Some("backup"));
    assert_eq!(rec.attempts, 3);
    gw.shutdown().await;
}

#[tokio::test]
async fn no_first_byte_before_the_timeout_is_a_504() {
    let up = FakeUpstream::always(Reply::Hang).await;
    let mut c = config_for(&up.url());
    c.upstreams
        .get_mut("fake")
        .expect("fake")
        .timeouts
        .first_byte_secs = 0.3;
    let mut gw = TestGateway::start(c).await;
    let rsp = post(&gw, CHAT_BODY).await;
    assert_eq!(rsp.status(), 504);
    assert_eq!(rsp.headers()["x-gatehouse-error"], "upstream_timeout");
    assert_eq!(up.count(), 1, "timeouts are not retried");
    let rec = gw.record().await;
    assert_eq!(rec.error_kind, Some("upstream_timeout"));
    gw.shutdown().await;
}

#[tokio::test]
async fn reset_mid_stream_ends_with_an_error_event_and_a_failure_record() {
    let events = chat_stream_events(false);
    let chunks = events
        .iter()
        .map(|e| bytes::Bytes::from(e.clone()))
        .collect();
    let up = FakeUpstream::always(Reply::Stream {
        chunks,
        gate: None,
        reset_after: Some(2),
    })
    .await;
    let mut gw = TestGateway::with_upstream(&up).await;
    let body =
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let rsp = post(&gw, body).await;
    assert_eq!(rsp.status(), 200);
    let text = rsp
        .text()
        .await
        .expect("the stream ends cleanly with an error event");
    assert!(
        text.starts_with(&events[..2].concat()),
        "events before the reset are delivered"
    );
    assert!(
        text.ends_with("\"code\":\"upstream_reset\"}}\n\n"),
        "{text}"
    );
    let rec = gw.record().await;
    assert_eq!(
        (rec.outcome, rec.error_kind),
        (Outcome::StreamError, Some("upstream_reset"))
    );
    // The gateway keeps serving.
    assert_eq!(
        client()
            .get(format!("{}/health", gw.url))
            .send()
            .await
            .expect("health")
            .status(),
        200
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn idle_stream_times_out_with_an_error_event() {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let events = chat_stream_events(false);
    let chunks = events
        .iter()
        .map(|e| bytes::Bytes::from(e.clone()))
        .collect();
    let up = FakeUpstream::always(Reply::Stream {
        chunks,
        gate: Some(gate),
        reset_after: None,
    })
    .await;
    let mut c = config_for(&up.url());
    c.upstreams
        .get_mut("fake")
        .expect("fake")
        .timeouts
        .idle_secs = 0.3;
    let mut gw = TestGateway::start(c).await;
    let body =
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let text = post(&gw, body).await.text().await.expect("body");
    assert!(text.starts_with(&events[0]));
    assert!(text.contains("upstream_idle_timeout"), "{text}");
    let rec = gw.record().await;
    assert_eq!(rec.error_kind, Some("upstream_idle_timeout"));
    gw.shutdown().await;
}
