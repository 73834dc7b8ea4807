//! The admin surface: a blank token signs nobody in, wrong tokens are rate limited, state
//! changes on the session cookie must come from the admin's own origin, and the Bearer scheme
//! is read in any case.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::support::{client, config_for, FakeUpstream, Reply, TestGateway, CHAT_ANSWER};

const TOKEN: &str = "9c1d6f0e4b7a2c58e3f19d0a6b4c7e21";

async fn gateway() -> (FakeUpstream, TestGateway) {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let mut c = config_for(&up.url());
    c.admin.token = Some(gatehouse::config::Secret::new(TOKEN));
    let gw = TestGateway::start(c).await;
    (up, gw)
}

async fn sign_in(admin: &str, token: &str) -> reqwest::Response {
    client()
        .post(format!("{admin}/api/session"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .expect("admin reachable")
}

/// The `name=value` pair of the session cookie a successful sign-in set.
fn session_cookie(rsp: &reqwest::Response) -> String {
    let set = rsp.headers()["set-cookie"].to_str().expect("ascii");
    set.split(';').next().expect("a pair").to_owned()
}

/// An admin router served on loopback with `token` as configured, bypassing `config`
/// validation: the defence in depth for a blank token that got past it.
async fn bare_admin(token: &str) -> (String, tempfile::TempDir) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = gatehouse::store::Store::from_config(&gatehouse::config::StoreConfig {
        path: dir.path().join("admin.db"),
        ..Default::default()
    })
    .await
    .expect("store");
    let state = gatehouse::admin::AdminState {
        store,
        live: Arc::new(gatehouse::analytics::Live::new()),
        metrics: Arc::new(gatehouse::telemetry::metrics::Metrics::new(
            Vec::<String>::new(),
        )),
        token: Some(gatehouse::config::Secret::new(token)),
        public_metrics: false,
        scan: Arc::new(|_| None),
        feed: tokio::sync::broadcast::channel(4).0,
        alerts: None,
        reports: None,
        proxy_openapi: None,
        keys_synced: None,
        quotas: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = gatehouse::admin::router(state)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), dir)
}

/// REGRESSION: with `GATEHOUSE_ADMIN__TOKEN=` the gateway started and `{"token": ""}` signed
/// in with full rights. Config now refuses such a token (see `secrets`); if one gets to the
/// admin router anyway, it opens nothing.
#[tokio::test]
async fn an_empty_token_never_signs_in() {
    for configured in ["", "  "] {
        let (admin, _dir) = bare_admin(configured).await;
        for presented in ["", " "] {
            let rsp = sign_in(&admin, presented).await;
            assert_eq!(rsp.status(), 401, "{configured:?} / {presented:?}");
            assert!(rsp.headers().get("set-cookie").is_none());
            let api = client()
                .get(format!("{admin}/api/usage/live"))
                .header("authorization", format!("Bearer {presented}"))
                .send()
                .await
                .expect("rsp");
            assert_eq!(api.status(), 401, "Bearer {presented:?}");
        }
    }
    let (_up, gw) = gateway().await;
    assert_eq!(sign_in(&gw.admin_url, "").await.status(), 401);
    assert_eq!(sign_in(&gw.admin_url, TOKEN).await.status(), 200);
}

/// REGRESSION: 300 wrong tokens in 5 s were all answered 401; now the sixth try in a minute,
/// right or wrong, is 429 with `Retry-After`.
#[tokio::test]
async fn wrong_tokens_are_rate_limited_per_client() {
    let (_up, gw) = gateway().await;
    for i in 0..4 {
        assert_eq!(
            sign_in(&gw.admin_url, "wrong").await.status(),
            401,
            "try {i}"
        );
    }
    let ok = sign_in(&gw.admin_url, TOKEN).await;
    assert_eq!(
        ok.status(),
        200,
        "the right token before the limit signs in"
    );
    assert_eq!(sign_in(&gw.admin_url, "wrong").await.status(), 401, "try 5");
    for token in ["wrong", TOKEN] {
        let rsp = sign_in(&gw.admin_url, token).await;
        assert_eq!(rsp.status(), 429, "{token}: limited");
        let wait: u64 = rsp.headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&wait), "{wait}");
        let body: Value = rsp.json().await.expect("json");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("too many")),
            "{body}"
        );
    }
    // The Bearer header draws on the same budget.
    let bearer = client()
        .get(format!("{}/api/usage/live", gw.admin_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("rsp");
    assert_eq!(bearer.status(), 429);
}

async fn reports(gw: &TestGateway) -> usize {
    let list: Value = client()
        .get(format!("{}/api/reports", gw.admin_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("rsp")
        .json()
        .await
        .expect("json");
    list["items"].as_array().expect("items").len()
}

/// REGRESSION: a cross-origin form post carrying the session cookie generated a report.
#[tokio::test]
async fn cookie_writes_from_another_origin_are_refused() {
    let (_up, gw) = gateway().await;
    let cookie = session_cookie(&sign_in(&gw.admin_url, TOKEN).await);
    let generate = format!("{}/api/reports/generate", gw.admin_url);
    let post = || client().post(&generate).header("cookie", &cookie);

    let evil = post()
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("x=1")
        .send()
        .await
        .expect("rsp");
    assert_eq!(evil.status(), 403);
    let body: Value = evil.json().await.expect("json");
    assert!(body["error"]["message"].is_string(), "{body}");
    let site = post()
        .header("sec-fetch-site", "same-site")
        .send()
        .await
        .expect("rsp");
    assert_eq!(site.status(), 403, "another port of the same host");
    assert_eq!(reports(&gw).await, 0, "nothing was generated");

    let own = post()
        .header("origin", &gw.admin_url)
        .send()
        .await
        .expect("rsp");
    assert_eq!(own.status(), 201, "same origin");
    let fetch = post()
        .header("sec-fetch-site", "same-origin")
        .header("origin", &gw.admin_url)
        .send()
        .await
        .expect("rsp");
    assert_eq!(fetch.status(), 201, "the dashboard's own fetch");
    let bearer = client()
        .post(&generate)
        .bearer_auth(TOKEN)
        .header("origin", "https://elsewhere.example")
        .send()
        .await
        .expect("rsp");
    assert_eq!(bearer.status(), 201, "Bearer carries no ambient credential");
    assert_eq!(reports(&gw).await, 3);

    let out = client()
        .delete(format!("{}/api/session", gw.admin_url))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("rsp");
    assert_eq!(out.status(), 403, "no sign-out from another origin either");
}

/// The auth scheme is case-insensitive (RFC 9110 §11.1), as on the proxy port.
#[tokio::test]
async fn the_bearer_scheme_is_read_in_any_case() {
    let (_up, gw) = gateway().await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let rsp = client()
            .get(format!("{}/api/usage/live", gw.admin_url))
            .header("authorization", format!("{scheme} {TOKEN}"))
            .send()
            .await
            .expect("rsp");
        assert_eq!(rsp.status(), 200, "{scheme}");
    }
}
