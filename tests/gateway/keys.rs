//! Virtual keys end to end: a key made through the admin API works on the proxy at once, its
//! secret is shown only when made or rotated (never listed, logged or stored in clear), its
//! limits and allow-list apply as a config key's do, rotation, revocation and expiry refuse
//! the old secret, bad input answers 400 naming the field, and a second gateway on the same
//! store follows a revocation within its sync interval.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

const ADMIN_TOKEN: &str = "admin-token-for-keys";

/// A gateway with an admin token, reading the keys every second.
async fn gateway(up: &FakeUpstream) -> TestGateway {
    TestGateway::start(config(up)).await
}

fn config(up: &FakeUpstream) -> gatehouse::config::Config {
    let mut c = config_for(&up.url());
    c.admin.token = Some(gatehouse::config::Secret::new(ADMIN_TOKEN));
    c.auth.sync_secs = 1;
    c
}

/// An admin API call with the token; returns the status and the JSON body.
async fn admin(gw: &TestGateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client()
        .request(method, format!("{}{path}", gw.admin_url))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let rsp = req.send().await.expect("an admin answer");
    let status = rsp.status().as_u16();
    let text = rsp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON from {path}: {text}"));
    (status, json)
}

/// Creates a key; returns its id and secret.
async fn create(gw: &TestGateway, spec: Value) -> (String, String) {
    let (status, body) = admin(gw, "POST", "/api/keys", Some(spec)).await;
    assert_eq!(status, 201, "{body}");
    let secret = body["secret"].as_str().expect("the secret").to_owned();
    (body["id"].as_str().expect("an id").to_owned(), secret)
}

/// A chat call with `key`; the status.
async fn call(gw: &TestGateway, key: &str, body: &str) -> reqwest::Response {
    client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .header("content-type", "application/json")
        .bearer_auth(key)
        .body(body.to_owned())
        .send()
        .await
        .expect("a proxy answer")
}

/// How much of the minute a test that counts per minute needs left.
const MINUTE_MARGIN: Duration = Duration::from_secs(15);

async fn status(gw: &TestGateway, key: &str) -> u16 {
    call(gw, key, CHAT_BODY).await.status().as_u16()
}

fn remaining(rsp: &reqwest::Response) -> Option<&str> {
    rsp.headers()
        .get("x-ratelimit-remaining-requests")
        .and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_key_made_through_the_api_works_at_once_and_its_secret_is_shown_only_then() {
    let logs = Logs::capture();
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let mut gw = gateway(&up).await;
    assert_eq!(status(&gw, "gh-not-a-key").await, 200, "no keys yet: open");
    gw.record().await;
    let (id, secret) = create(
        &gw,
        json!({"name": "ci", "user": "alice", "team": "research", "metadata": {"ticket": "OPS-1"}}),
    )
    .await;
    assert!(secret.starts_with("gh-") && secret.len() == 46, "{secret}");
    assert_eq!(status(&gw, &secret).await, 200);
    let rec = gw.record().await;
    assert_eq!(rec.key_user.as_deref(), Some("alice"));
    assert_eq!(rec.team.as_deref(), Some("research"));
    assert_eq!(
        status(&gw, "gh-not-a-key").await,
        401,
        "once a key exists, keys are required"
    );
    assert_eq!(status(&gw, "").await, 401);
    for _ in 0..2 {
        assert_eq!(gw.record().await.status, 401, "refusals are recorded too");
    }

    // A key that trusts its clients records the end user they name; one that does not, its own.
    let (_, backend) = create(&gw, json!({"user": "chatbot", "end_users": "trusted"})).await;
    for (key, recorded) in [(&backend, "end-1"), (&secret, "alice")] {
        let rsp = client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .header("content-type", "application/json")
            .header("x-gatehouse-user", "end-1")
            .bearer_auth(key)
            .body(CHAT_BODY)
            .send()
            .await
            .expect("answer");
        assert_eq!(rsp.status(), 200);
        let rec = gw.record().await;
        assert_eq!(rec.user.as_deref(), Some(recorded));
    }

    let (s, list) = admin(&gw, "GET", "/api/keys", None).await;
    assert_eq!(s, 200);
    let (s, one) = admin(&gw, "GET", &format!("/api/keys/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(list[0], one);
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    assert_eq!(one["user"], "alice");
    assert_eq!(one["status"], "active");
    assert_eq!(one["metadata"], json!({"ticket": "OPS-1"}));
    assert_eq!(one["prefix"], format!("{}…", &secret[..9]));
    let body_tail = &secret[9..];
    for (what, text) in [
        ("list", list.to_string()),
        ("get", one.to_string()),
        ("logs", logs.text()),
    ] {
        assert!(!text.contains(body_tail), "{what} shows the secret: {text}");
    }
    assert!(
        logs.text().contains("virtual key created"),
        "the log capture works: {}",
        logs.text()
    );

    // The store holds its hash, nothing of the secret past the prefix.
    let url = match &gw.store_config.url {
        Some(u) => u.expose().to_owned(),
        None => format!("sqlite:{}", gw.store_config.path.display()),
    };
    let pool = sqlx::AnyPool::connect(&url).await.expect("open the store");
    let row: (String, String) =
        sqlx::query_as("SELECT secret_hash, prefix FROM gateway_keys WHERE \"user\" = 'alice'")
            .fetch_one(&pool)
            .await
            .expect("one row");
    assert_eq!(row.0, gatehouse::keys::hash(&secret));
    assert_eq!(row.1, &secret[..9]);
    let dump: Vec<(String, Option<String>, String, String)> =
        sqlx::query_as("SELECT id, name, metadata, limits FROM gateway_keys")
            .fetch_all(&pool)
            .await
            .expect("rows");
    assert!(!format!("{dump:?}").contains(body_tail));
    pool.close().await;
    gw.shutdown().await;
}

#[tokio::test]
async fn the_admin_routes_need_the_token_and_bad_input_names_the_field() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let gw = gateway(&up).await;
    for (method, path) in [("POST", "/api/keys"), ("GET", "/api/keys")] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let rsp = client()
            .request(method, format!("{}{path}", gw.admin_url))
            .json(&json!({"user": "mallory"}))
            .send()
            .await
            .expect("answer");
        assert_eq!(rsp.status(), 401, "{path}");
        let body: Value = rsp.json().await.expect("json");
        assert_eq!(body["error"]["type"], "authentication_error");
    }
    let cases = [
        (json!({"team": "x"}), "missing field `user`"),
        (json!({"user": " "}), "user must not be empty"),
        (
            json!({"user": "u", "limits": {"requests_per_minute": 0}}),
            "limits.requests_per_minute must be greater than 0",
        ),
        (
            json!({"user": "u", "limits": {"budget_usd": 5}}),
            "limits.per must be day, week or month when budget_usd is set",
        ),
        (
            json!({"user": "u", "limits": {"rpm": 5}}),
            "unknown field `rpm`",
        ),
        (
            json!({"user": "u", "expires_at": "soon"}),
            "expires_at must be an RFC 3339 time",
        ),
    ];
    for (body, message) in cases {
        let (s, answer) = admin(&gw, "POST", "/api/keys", Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {answer}");
        let got = answer["error"]["message"].as_str().expect("message");
        assert!(got.contains(message), "{body}: {got:?} lacks {message:?}");
        assert_eq!(answer["error"]["type"], "invalid_request_error");
    }
    let (s, list) = admin(&gw, "GET", "/api/keys", None).await;
    assert_eq!((s, list), (200, json!([])), "nothing was created");
    let (s, _) = admin(&gw, "GET", "/api/keys/nope", None).await;
    assert_eq!(s, 404);
    let doc = get_text(&format!("{}/openapi.json", gw.admin_url)).await;
    let doc: Value = serde_json::from_str(&doc).expect("openapi");
    for path in ["/api/keys", "/api/keys/{id}", "/api/keys/{id}/rotate"] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn a_virtual_key_has_its_limits_and_allow_list() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let gw = gateway(&up).await;
    let (_, secret) = create(
        &gw,
        json!({"user": "bob", "models": ["openai/gpt-4o-mini"],
               "limits": {"requests_per_minute": 2}}),
    )
    .await;
    let other =
        r#"{"model":"anthropic/claude-3.5-haiku","messages":[{"role":"user","content":"hi"}]}"#;
    let rsp = call(&gw, &secret, other).await;
    assert_eq!(rsp.status(), 403);
    let body: Value = rsp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "model_not_allowed");
    fresh_minute(MINUTE_MARGIN).await;
    for left in ["1", "0"] {
        let rsp = call(&gw, &secret, CHAT_BODY).await;
        assert_eq!(rsp.status(), 200);
        assert_eq!(remaining(&rsp), Some(left));
    }
    let rsp = call(&gw, &secret, CHAT_BODY).await;
    assert_eq!(rsp.status(), 429, "the third request in a minute");
    let body: Value = rsp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(
        up.count(),
        2,
        "only the admitted requests reached the upstream"
    );
    // The limit's state is visible like a config key's.
    let (status, view) = admin(&gw, "GET", "/api/quotas", None).await;
    assert_eq!(status, 200, "{view}");
    let bob = view["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .find(|s| s["scope"] == "key" && s["name"] == "bob")
        .unwrap_or_else(|| panic!("the virtual key in /api/quotas: {view}"));
    assert_eq!(bob["requests_per_minute"]["used"], 2);
    assert_eq!(bob["requests_per_minute"]["remaining"], 0);
    assert_eq!(bob["rejected"], 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn rotation_revocation_and_expiry_refuse_the_key_and_counters_survive_changes() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let gw = gateway(&up).await;
    let (id, old) = create(
        &gw,
        json!({"user": "carol", "limits": {"requests_per_minute": 50}}),
    )
    .await;
    fresh_minute(MINUTE_MARGIN).await;
    assert_eq!(remaining(&call(&gw, &old, CHAT_BODY).await), Some("49"));

    // A change that leaves the limits alone keeps counting.
    let (s, changed) = admin(
        &gw,
        "PATCH",
        &format!("/api/keys/{id}"),
        Some(json!({"name": "renamed", "metadata": {"a": 1}})),
    )
    .await;
    assert_eq!(s, 200, "{changed}");
    assert_eq!(changed["name"], "renamed");
    assert_eq!(remaining(&call(&gw, &old, CHAT_BODY).await), Some("48"));

    let (s, rotated) = admin(&gw, "POST", &format!("/api/keys/{id}/rotate"), None).await;
    assert_eq!(s, 200, "{rotated}");
    let new = rotated["secret"].as_str().expect("a new secret").to_owned();
    assert_ne!(new, old);
    assert_eq!(status(&gw, &old).await, 401, "the old secret stops at once");
    let rsp = call(&gw, &new, CHAT_BODY).await;
    assert_eq!(rsp.status(), 200);
    assert_eq!(remaining(&rsp), Some("47"), "the key's counters follow it");
    let (_, one) = admin(&gw, "GET", &format!("/api/keys/{id}"), None).await;
    assert!(one.get("secret").is_none());
    assert!(!one.to_string().contains(&new[9..]));

    // A bad change is refused whole, naming the field.
    let (s, bad) = admin(
        &gw,
        "PATCH",
        &format!("/api/keys/{id}"),
        Some(json!({"name": "x", "limits": {"concurrent": 0}})),
    )
    .await;
    assert_eq!(s, 400, "{bad}");
    assert!(bad["error"]["message"]
        .as_str()
        .expect("message")
        .contains("limits.concurrent must be greater than 0"));

    // Expiry set in the past through PATCH, and a key made already expired.
    let (s, _) = admin(
        &gw,
        "PATCH",
        &format!("/api/keys/{id}"),
        Some(json!({"expires_at": "2020-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(status(&gw, &new).await, 401, "expired");
    let (s, _) = admin(
        &gw,
        "PATCH",
        &format!("/api/keys/{id}"),
        Some(json!({"expires_at": null})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(status(&gw, &new).await, 200, "no expiry any more");
    let (_, stale) = create(
        &gw,
        json!({"user": "dave", "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(status(&gw, &stale).await, 401, "made expired");

    let (s, revoked) = admin(&gw, "DELETE", &format!("/api/keys/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(
        status(&gw, &new).await,
        401,
        "revoked, on this replica at once"
    );
    let (s, _) = admin(&gw, "POST", &format!("/api/keys/{id}/rotate"), None).await;
    assert_eq!(s, 409, "a revoked key cannot be rotated back to life");
    let (_, list) = admin(&gw, "GET", "/api/keys", None).await;
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(2),
        "the revoked key is kept"
    );
    gw.shutdown().await;
}

/// Polls `key` on `gw` until it answers `want`, for at most 10 s (the sync is every second).
async fn until_status(gw: &TestGateway, key: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = status(gw, key).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {got}, not {want}, after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn another_gateway_on_the_same_store_follows_a_revocation_within_its_sync() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let a = gateway(&up).await;
    let (_, first) = create(&a, json!({"user": "frank"})).await;
    let b = TestGateway::start_sharing(config(&up), &a).await;
    assert_eq!(status(&b, &first).await, 200, "b read the keys at start");
    assert_eq!(status(&b, "gh-unknown").await, 401, "so b requires keys");
    let (id, secret) = create(&a, json!({"user": "erin"})).await;
    until_status(&b, &secret, 200).await;
    let (s, _) = admin(&a, "DELETE", &format!("/api/keys/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(status(&a, &secret).await, 401);
    until_status(&b, &secret, 401).await;
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_virtual_keys_budget_is_read_back_from_the_store_at_start() {
    if std::env::var("TEST_STORE").as_deref() == Ok("postgres") {
        // Each start gets a fresh PostgreSQL database: nothing to read back.
        return;
    }
    let answer = json!({
        "id": "gen-1", "object": "chat.completion", "model": "openai/gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Blue"}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "cost": 0.0006}
    });
    let up = FakeUpstream::always(Reply::Json(200, answer.to_string())).await;
    let mut gw = gateway(&up).await;
    let (_, secret) = create(
        &gw,
        json!({"user": "gina", "limits": {"budget_usd": 0.001, "per": "week"}}),
    )
    .await;
    for _ in 0..2 {
        assert_eq!(status(&gw, &secret).await, 200);
        gw.record().await;
    }
    let dir = gw.stop_keeping_store().await;
    let gw = TestGateway::start_in(config(&up), dir).await;
    let rsp = call(&gw, &secret, CHAT_BODY).await;
    assert_eq!(rsp.status(), 429, "the week's spend came back with the key");
    let body: Value = rsp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "insufficient_quota");
    assert_eq!(up.count(), 2);
    gw.shutdown().await;
}
