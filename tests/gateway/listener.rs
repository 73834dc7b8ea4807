//! The proxy listener speaks HTTP/1.1, h2c and TLS; `/ready` reflects the upstream.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::support::*;

#[tokio::test]
async fn h2c_prior_knowledge_works() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let gw = TestGateway::with_upstream(&up).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let rsp = h2
        .post(format!("{}/v1/chat/completions", gw.url))
        .body(CHAT_BODY)
        .send()
        .await
        .expect("h2c response");
    assert_eq!(rsp.version(), reqwest::Version::HTTP_2);
    assert_eq!(rsp.text().await.expect("body"), CHAT_ANSWER);
    gw.shutdown().await;
}

#[tokio::test]
async fn tls_termination_serves_http1_and_h2() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let dir = tempfile::tempdir().expect("dir");
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let mut c = config_for(&up.url());
    c.proxy.tls = Some(gatehouse::config::TlsConfig {
        cert: cert_path,
        key: key_path,
    });
    let gw = TestGateway::start(c).await;
    let addr = gw.app.as_ref().expect("app").proxy_addr;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).expect("root");
    for alpn in [b"http/1.1".to_vec(), b"h2".to_vec()] {
        let mut tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        tls.alpn_protocols = vec![alpn.clone()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let stream = TokioIo::new(connector.connect(name, tcp).await.expect("handshake"));
        let req = http::Request::post("/v1/chat/completions")
            .header("host", "localhost")
            .body(Full::new(Bytes::from(CHAT_BODY)))
            .expect("req");
        let rsp = if alpn == b"h2" {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), stream)
                    .await
                    .expect("h2");
            tokio::spawn(conn);
            let req = http::Request::post(format!(
                "https://localhost:{}/v1/chat/completions",
                addr.port()
            ))
            .body(Full::new(Bytes::from(CHAT_BODY)))
            .expect("req");
            send.send_request(req).await.expect("h2 response")
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(stream)
                .await
                .expect("http1");
            tokio::spawn(conn);
            send.send_request(req).await.expect("http1 response")
        };
        assert_eq!(rsp.status(), 200);
        let body = rsp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body, CHAT_ANSWER.as_bytes());
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn ready_follows_the_upstream() {
    let up = FakeUpstream::always(Reply::Json(401, r#"{"error":"no key"}"#.into())).await;
    let gw = TestGateway::with_upstream(&up).await;
    let rsp = client()
        .get(format!("{}/ready", gw.url))
        .send()
        .await
        .expect("ready");
    assert_eq!(rsp.status(), 200, "any HTTP answer means reachable");
    gw.shutdown().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v1", closed.local_addr().expect("addr"));
    drop(closed);
    let gw = TestGateway::start(config_for(&url)).await;
    let rsp = client()
        .get(format!("{}/ready", gw.url))
        .send()
        .await
        .expect("ready");
    assert_eq!(rsp.status(), 503);
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
