//! Bad input always gets a clear OpenAI-shaped 4xx marked as gatehouse's, never a panic or a
//! hang, and still leaves one record.

use crate::support::*;
use gatehouse::event::Outcome;

#[tokio::test]
async fn table_of_bad_inputs() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let mut c = config_for(&up.url());
    c.proxy.max_body_bytes = 1024;
    c.models.default_upstream = None;
    c.models.routes.push(gatehouse::config::RouteConfig {
        prefix: "openai/".into(),
        upstream: "fake".into(),
    });
    let mut gw = TestGateway::start(c).await;
    let big = format!(
        r#"{{"model":"openai/x","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(2000)
    );
    let cases: Vec<(&str, &str, &str, Option<&str>, String, u16, &str)> = vec![
        (
            "invalid json",
            "POST",
            "/v1/chat/completions",
            None,
            "{not json".into(),
            400,
            "invalid_json",
        ),
        (
            "not an object",
            "POST",
            "/v1/chat/completions",
            None,
            "[1,2]".into(),
            400,
            "invalid_json",
        ),
        (
            "empty body",
            "POST",
            "/v1/chat/completions",
            None,
            String::new(),
            400,
            "invalid_json",
        ),
        (
            "model not a string",
            "POST",
            "/v1/chat/completions",
            None,
            r#"{"model":1}"#.into(),
            400,
            "invalid_json",
        ),
        (
            "no model",
            "POST",
            "/v1/chat/completions",
            None,
            r#"{"messages":[]}"#.into(),
            400,
            "missing_model",
        ),
        (
            "unknown model",
            "POST",
            "/v1/chat/completions",
            None,
            r#"{"model":"nope","messages":[]}"#.into(),
            404,
            "unknown_model",
        ),
        (
            "wrong content type",
            "POST",
            "/v1/chat/completions",
            Some("text/plain"),
            r#"{"model":"openai/x"}"#.into(),
            415,
            "unsupported_media_type",
        ),
        (
            "body over the limit",
            "POST",
            "/v1/chat/completions",
            None,
            big,
            413,
            "body_too_large",
        ),
        (
            "wrong method",
            "GET",
            "/v1/chat/completions",
            None,
            String::new(),
            405,
            "method_not_allowed",
        ),
        (
            "unknown path",
            "POST",
            "/v2/anything",
            None,
            "{}".into(),
            404,
            "not_found",
        ),
        (
            "generate without messages",
            "POST",
            "/generate",
            None,
            r#"{"model_name":"openai/x"}"#.into(),
            400,
            "invalid_field",
        ),
    ];
    for (name, method, path, ct, body, status, kind) in cases {
        let mut req = client()
            .request(method.parse().expect("method"), format!("{}{path}", gw.url))
            .body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let rsp = req.send().await.expect(name);
        assert_eq!(rsp.status(), status, "{name}");
        assert_eq!(rsp.headers()["x-gatehouse-error"], kind, "{name}");
        let v: serde_json::Value = rsp.json().await.expect(name);
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}: message"
        );
        let rec = gw.record().await;
        assert_eq!(
            (rec.outcome, rec.error_kind),
            (Outcome::Rejected, Some(kind)),
            "{name}"
        );
    }
    assert_eq!(up.count(), 0, "no bad request reached the upstream");
    gw.shutdown().await;
}

#[tokio::test]
async fn gateway_keys_are_required_when_configured() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let mut c = config_for(&up.url());
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "gw-secret-1\n").expect("write");
    c.auth.keys.push(gatehouse::config::KeyConfig {
        key_env: None,
        key_file: Some(key_file),
        user: "alice".into(),
        team: Some("research".into()),
        end_users: gatehouse::config::EndUsers::Trusted,
        ..Default::default()
    });
    let mut gw = TestGateway::start(c).await;
    let url = format!("{}/v1/chat/completions", gw.url);
    for auth in [None, Some("Bearer wrong")] {
        let mut req = client().post(&url).body(CHAT_BODY);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let rsp = req.send().await.expect("rsp");
        assert_eq!(rsp.status(), 401);
        assert_eq!(rsp.headers()["x-gatehouse-error"], "unauthorized");
        assert_eq!(gw.record().await.outcome, Outcome::Rejected);
    }
    let rsp = client()
        .post(&url)
        .header("authorization", "Bearer gw-secret-1")
        .body(CHAT_BODY)
        .send()
        .await
        .expect("rsp");
    assert_eq!(rsp.status(), 200);
    let rec = gw.record().await;
    assert_eq!(
        (rec.user.as_deref(), rec.team.as_deref()),
        (Some("alice"), Some("research"))
    );
    let sent = &up.requests()[0];
    assert!(
        sent.headers.get("authorization").is_none(),
        "the gateway key never goes upstream"
    );
    let rsp = client()
        .post(&url)
        .header("authorization", "Bearer gw-secret-1")
        .header("x-gatehouse-user", "end-user-7")
        .body(CHAT_BODY)
        .send()
        .await
        .expect("rsp");
    assert_eq!(rsp.status(), 200);
    assert_eq!(gw.record().await.user.as_deref(), Some("end-user-7"));
    gw.shutdown().await;
}

#[tokio::test]
async fn upstream_key_and_extra_headers_are_sent() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let mut c = config_for(&up.url());
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("upstream-key");
    std::fs::write(&key_file, "sk-or-v1-test").expect("write");
    let u = c.upstreams.get_mut("fake").expect("fake");
    u.api_key_env = None;
    u.api_key_file = Some(key_file);
    u.headers
        .insert("HTTP-Referer".into(), "https://example.org".into());
    u.headers.insert("X-Title".into(), "gatehouse".into());
    let gw = TestGateway::start(c).await;
    client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .header("authorization", "Bearer whatever")
        .body(CHAT_BODY)
        .send()
        .await
        .expect("rsp");
    let sent = &up.requests()[0];
    assert_eq!(sent.headers["authorization"], "Bearer sk-or-v1-test");
    assert_eq!(sent.headers["http-referer"], "https://example.org");
    assert_eq!(sent.headers["x-title"], "gatehouse");
    gw.shutdown().await;
}
