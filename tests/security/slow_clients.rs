//! Slow and idle clients cannot hold the proxy listener: header, body-idle and keep-alive
//! timeouts close them, and connections beyond `proxy.max_connections` are refused at accept.
//! Each timeout is set to one second here and the test allows ten: the assertion is that the
//! server ends the connection, not how fast.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const ENOUGH: Duration = Duration::from_secs(10);

async fn connect(gw: &TestGateway) -> TcpStream {
    TcpStream::connect(gw.url.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Reads until the server closes; what it sent.
async fn until_closed(tcp: &mut TcpStream) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(ENOUGH, tcp.read_to_end(&mut got))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&got).into_owned()
}

/// A kept-alive connection to `addr` that has been served one `/health`: it holds a slot
/// (accepted and served) until dropped or timed out.
async fn served(addr: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 12];
    tokio::time::timeout(ENOUGH, tcp.read_exact(&mut buf))
        .await
        .expect("answered")
        .expect("read");
    assert_eq!(&buf, b"HTTP/1.1 200");
    tcp
}

async fn metrics(gw: &TestGateway) -> String {
    get_text(&format!("{}/metrics", gw.admin_url)).await
}

fn timeouts(up: &FakeUpstream) -> gatehouse::config::Config {
    let mut c = config_for(&up.url());
    c.proxy.header_read_secs = 1;
    c.proxy.body_idle_secs = 1;
    c
}

#[tokio::test]
async fn a_client_dripping_headers_or_idling_between_requests_is_closed() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let gw = TestGateway::start(timeouts(&up)).await;
    let mut drip = connect(&gw).await;
    drip.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    until_closed(&mut drip).await;

    let mut idle = connect(&gw).await;
    let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    idle.write_all(head.as_bytes()).await.expect("write");
    idle.write_all(body).await.expect("write");
    let answered = until_closed(&mut idle).await;
    assert!(
        answered.starts_with("HTTP/1.1 200"),
        "served, then closed when idle: {answered}"
    );
    let m = metrics(&gw).await;
    assert!(
        m.contains(
            r#"gatehouse_connections_closed_total{listener="proxy",reason="header_timeout"} 2"#
        ),
        "{m}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_body_that_stops_coming_is_refused_with_408() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let mut gw = TestGateway::start(timeouts(&up)).await;
    let mut tcp = connect(&gw).await;
    tcp.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"model\":",
    )
    .await
    .expect("write");
    let answer = until_closed(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("x-gatehouse-error: body_timeout"),
        "{answer}"
    );
    assert_eq!(gw.record().await.error_kind, Some("body_timeout"));
    assert_eq!(up.count(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused_until_one_closes() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let mut c = config_for(&up.url());
    c.proxy.max_connections = 3;
    let gw = TestGateway::start(c).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(served(gw.url.trim_start_matches("http://")).await);
    }
    let mut over = connect(&gw).await;
    let _ = over
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    assert_eq!(until_closed(&mut over).await, "", "closed unanswered");
    let m = metrics(&gw).await;
    assert!(
        m.contains(r#"gatehouse_connections_closed_total{listener="proxy",reason="over_limit"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"gatehouse_connections_open{listener="proxy"} 3"#),
        "{m}"
    );
    drop(held.pop());
    // The server sees the close and frees the slot on its own time: try until it has.
    let mut answered = false;
    for _ in 0..100 {
        let mut tcp = connect(&gw).await;
        let _ = tcp
            .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await;
        if until_closed(&mut tcp).await.starts_with("HTTP/1.1 200") {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered, "a freed slot is used again");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_admin_listener_has_its_own_cap_and_header_timeout() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let mut c = config_for(&up.url());
    c.admin.max_connections = 2;
    c.admin.header_read_secs = 1;
    let gw = TestGateway::start(c).await;
    let admin = gw.admin_url.trim_start_matches("http://").to_owned();
    // A client dripping headers is closed.
    let mut drip = TcpStream::connect(&admin).await.expect("connect");
    drip.write_all(b"GET /api/usage/live HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    until_closed(&mut drip).await;
    // Two kept-alive connections fill the cap; a third is closed unanswered.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(served(&admin).await);
    }
    let mut over = TcpStream::connect(&admin).await.expect("connect");
    let _ = over
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    assert_eq!(until_closed(&mut over).await, "", "closed unanswered");
    // The held ones idle out after the header timeout; then the metrics say what happened.
    for tcp in &mut held {
        until_closed(tcp).await;
    }
    let mut m = String::new();
    for _ in 0..100 {
        m = metrics(&gw).await;
        if m.contains(r#"listener="admin",reason="header_timeout"} 3"#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for want in [
        r#"gatehouse_connections_closed_total{listener="admin",reason="over_limit"} 1"#,
        r#"gatehouse_connections_closed_total{listener="admin",reason="header_timeout"} 3"#,
    ] {
        assert!(m.contains(want), "{want} in {m}");
    }
    gw.shutdown().await;
}
