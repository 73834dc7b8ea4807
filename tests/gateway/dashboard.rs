//! The admin API's browser side: the OpenAPI document against the router, the session cookie,
//! the live event stream, and the embedded pages. (The pages themselves are driven in Chromium
//! by `tests/browser/dashboard.mjs`.)

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::support::*;

const TOKEN: &str = "dashboard-secret";

async fn gateway() -> (FakeUpstream, TestGateway) {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let mut c = config_for(&up.url());
    c.admin.token = Some(gatehouse::config::Secret::new(TOKEN));
    let gw = TestGateway::start(c).await;
    (up, gw)
}

/// Every `$ref` in `v`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// GETs `url` and reads its JSON answer, which must be a 200.
async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let rsp = http.get(url).send().await.expect("rsp");
    assert_eq!(rsp.status(), 200, "{url}");
    rsp.json().await.expect("json")
}

/// `doc` is an OpenAPI 3 document that documents exactly the paths `expected` and whose every
/// `$ref` resolves; its path items.
fn documented_paths<'a>(doc: &'a Value, expected: &[&str]) -> &'a Map<String, Value> {
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    assert_eq!(documented, expected.iter().copied().collect());
    let mut all = Vec::new();
    refs(doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} resolves"
        );
    }
    paths
}

/// Every documented operation as `(path, method, operation)`.
fn operations(paths: &Map<String, Value>) -> impl Iterator<Item = (&str, &str, &Value)> {
    paths.iter().flat_map(|(path, item)| {
        item.as_object()
            .expect("path item")
            .iter()
            .map(move |(method, op)| (path.as_str(), method.as_str(), op))
    })
}

/// Sends `method` to `url` with an empty JSON object as the body: enough to reach the route.
async fn call(http: &reqwest::Client, method: &str, url: &str) -> reqwest::Response {
    let m = http::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    http.request(m, url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("rsp")
}

#[tokio::test]
async fn the_openapi_document_matches_the_router() {
    let (_up, gw) = gateway().await;
    let http = client();
    let doc = get_json(&http, &format!("{}/openapi.json", gw.admin_url)).await;
    let expected = [
        "/health",
        "/metrics",
        "/api/session",
        "/api/usage/analytics",
        "/api/usage/forecast",
        "/api/usage/live",
        "/api/security/events",
        "/api/security/summary",
        "/api/security/analyze",
        "/api/requests",
        "/api/requests/{id}",
        "/api/export",
        "/api/feedback",
        "/api/feedback/summary",
        "/api/quotas",
        "/api/events/stream",
        "/api/alerts",
        "/api/alerts/rules",
        "/api/alerts/test",
        "/api/reports",
        "/api/reports/{id}",
        "/api/reports/generate",
        "/api/recommendations",
        "/api/config/thresholds",
        "/api/keys",
        "/api/keys/{id}",
        "/api/keys/{id}/rotate",
    ];
    let paths = documented_paths(&doc, &expected);
    let mut ids = BTreeSet::new();
    for ops in paths.values() {
        for op in ops.as_object().expect("operations").values() {
            if let Some(id) = op.get("operationId").and_then(|v| v.as_str()) {
                assert!(ids.insert(id.to_owned()), "operationId {id} is not unique");
            }
        }
    }

    // Each documented operation is routed: without credentials a guarded one answers 401, an
    // open one anything but 401 — never the fallback's 404.
    for (path, method, op) in operations(paths) {
        let open = op["security"].as_array().is_some_and(|s| {
            s.iter()
                .all(|r| r.as_object().is_some_and(|o| o.is_empty()))
        });
        let url = format!("{}{}", gw.admin_url, path.replace("{id}", "x"));
        let status = call(&http, method, &url).await.status().as_u16();
        if open {
            assert!(status != 401 && status != 404, "{method} {path}: {status}");
        } else {
            assert_eq!(status, 401, "{method} {path} needs a token");
        }
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} documents its responses"
        );
    }
    for scheme in ["bearer", "session_cookie"] {
        assert!(doc["components"]["securitySchemes"][scheme].is_object());
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn a_browser_session_is_a_cookie_that_sign_out_revokes() {
    let (_up, gw) = gateway().await;
    let http = client();
    let session = format!("{}/api/session", gw.admin_url);
    let live = format!("{}/api/usage/live", gw.admin_url);

    let wrong = http
        .post(&session)
        .json(&serde_json::json!({"token": "nope"}))
        .send()
        .await
        .expect("rsp");
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    let rsp = http
        .post(&session)
        .json(&serde_json::json!({"token": TOKEN}))
        .send()
        .await
        .expect("rsp");
    assert_eq!(rsp.status(), 200);
    let set = rsp.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains(TOKEN), "the cookie is not the token");
    let cookie = set.split(';').next().expect("pair").to_owned();

    let with = |url: &str| http.get(url).header("cookie", &cookie).send();
    assert_eq!(with(&live).await.expect("rsp").status(), 200);
    let state: Value = with(&session)
        .await
        .expect("rsp")
        .json()
        .await
        .expect("json");
    assert_eq!(state["authenticated"], true);
    assert_eq!(state["auth_required"], true);
    let forged = http
        .get(&live)
        .header("cookie", "gatehouse_admin=00ff")
        .send()
        .await
        .expect("rsp");
    assert_eq!(forged.status(), 401);

    let out = http
        .delete(&session)
        .header("cookie", &cookie)
        .send()
        .await
        .expect("rsp");
    assert!(out.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .contains("Max-Age=0"));
    assert_eq!(with(&live).await.expect("rsp").status(), 401);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_event_stream_carries_a_summary_of_each_request_without_its_text() {
    let (_up, gw) = gateway().await;
    let http = client();
    let rsp = http
        .get(format!("{}/api/events/stream", gw.admin_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("rsp");
    assert_eq!(rsp.status(), 200);
    assert!(rsp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/event-stream"));
    let mut events = rsp.bytes_stream();

    let sent = http
        .post(format!("{}/v1/chat/completions", gw.url))
        .header("content-type", "application/json")
        .header("x-gatehouse-user", "stream-user")
        .body(CHAT_BODY)
        .send()
        .await
        .expect("rsp");
    let id = sent.headers()["x-gatehouse-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let _ = sent.bytes().await;

    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = events.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
            if seen.contains(&id) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "an event for {id} within 10 s: {seen}");
    let line = seen
        .lines()
        .find(|l| l.starts_with("data:") && l.contains(&id))
        .expect("data line");
    let item: Value = serde_json::from_str(line.trim_start_matches("data:").trim()).expect("json");
    assert_eq!(item["user"], "stream-user");
    assert_eq!(item["outcome"], "ok");
    assert_eq!(item["status"], 200);
    assert!(seen.contains("event: request"));
    assert!(!seen.contains("Colour of the sky"), "no prompt text");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_pages_are_embedded_open_and_locked_down() {
    let (_up, gw) = gateway().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let root = http.get(&gw.admin_url).send().await.expect("rsp");
    assert_eq!(root.headers()["location"], "/dashboard");
    for (path, ct) in [
        ("/dashboard", "text/html"),
        ("/dashboard/dashboard.js", "text/javascript"),
        ("/dashboard/gatehouse.css", "text/css"),
        ("/docs", "text/html"),
        ("/docs/docs.js", "text/javascript"),
    ] {
        let rsp = http
            .get(format!("{}{path}", gw.admin_url))
            .send()
            .await
            .expect("rsp");
        assert_eq!(rsp.status(), 200, "{path}");
        let h = rsp.headers();
        assert!(h["content-type"].to_str().expect("ascii").starts_with(ct));
        assert!(h["content-security-policy"]
            .to_str()
            .expect("ascii")
            .contains("script-src 'self'"));
        assert_eq!(h["x-frame-options"], "DENY");
        // The SVG namespace is a name, not a download.
        let body = rsp.text().await.expect("body");
        let body = body.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} loads nothing from elsewhere"
        );
    }
    gw.shutdown().await;
}

/// The proxy port's API is documented: the admin port's `/openapi-proxy.json` (also the proxy
/// port's own `/openapi.json`) lists every proxy route, the passthrough paths configured, the
/// OpenAI error shape and exactly the `x-gatehouse-error` kinds gatehouse names; `/docs` links
/// and renders it; and every documented operation is one the proxy serves, never its 404.
#[tokio::test]
async fn the_proxy_port_is_documented() {
    let (_up, gw) = gateway().await;
    let http = client();
    let doc = get_json(&http, &format!("{}/openapi-proxy.json", gw.admin_url)).await;
    let expected = [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/models",
        "/v1/models/{id}",
        "/v1/files",
        "/v1/files/{path}",
        "/generate",
        "/v1/feedback",
        "/health",
        "/ready",
        "/openapi.json",
    ];
    let paths = documented_paths(&doc, &expected);

    let kinds: Vec<&str> = doc["components"]["schemas"]["GatehouseErrorKind"]["enum"]
        .as_array()
        .expect("the kinds")
        .iter()
        .map(|k| k.as_str().expect("a kind"))
        .collect();
    let declared: Vec<&str> = gatehouse::proxy::kind::Kind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(kinds, declared);
    for kind in [
        "prompt_blocked",
        "unscannable_body",
        "upstream_reset",
        "not_found",
    ] {
        assert!(kinds.contains(&kind), "{kind}");
    }
    let error = &doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"];
    for field in ["message", "type", "param", "code"] {
        assert!(error[field].is_object(), "the error body has {field}");
    }
    let served = get_json(&http, &format!("{}/openapi.json", gw.url)).await;
    assert_eq!(served, doc, "the proxy port serves the same document");

    // Each documented operation is routed on the proxy port: whatever it answers to an empty
    // body, it is not the router's own 404 or 405.
    for (path, method, _) in operations(paths) {
        let url = format!(
            "{}{}",
            gw.url,
            path.replace("{id}", "qwendeepseek")
                .replace("{path}", "file-1")
        );
        let rsp = call(&http, method, &url).await;
        let kind = rsp
            .headers()
            .get("x-gatehouse-error")
            .map(|v| v.to_str().unwrap_or("").to_owned());
        assert!(
            !matches!(kind.as_deref(), Some("not_found" | "method_not_allowed")),
            "{method} {path}: {} {kind:?}",
            rsp.status()
        );
    }

    let page = http
        .get(format!("{}/docs", gw.admin_url))
        .send()
        .await
        .expect("rsp")
        .text()
        .await
        .expect("text");
    assert!(page.contains("href=\"/openapi-proxy.json\""), "{page}");
    let script = http
        .get(format!("{}/docs/docs.js", gw.admin_url))
        .send()
        .await
        .expect("rsp")
        .text()
        .await
        .expect("text");
    assert!(
        script.contains("'/openapi-proxy.json'"),
        "the page renders it"
    );
    gw.shutdown().await;
}
