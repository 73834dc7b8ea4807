//! The admin API on a real loopback socket: auth, parameter errors, exports that agree with the
//! store and the analytics, and a /metrics body a Prometheus parser accepts.

#[path = "store_support/mod.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gatehouse::admin::{router, AdminState};
use gatehouse::analytics::Live;
use gatehouse::config::{CaptureConfig, Secret};
use gatehouse::detect::RiskLevel;
use gatehouse::store::{run_writer, Store, WriterConfig};
use gatehouse::telemetry::metrics::Metrics;
use support::*;

struct Admin {
    base: String,
    client: reqwest::Client,
    store: Store,
    metrics: Arc<Metrics>,
    _dir: tempfile::TempDir,
}

async fn start(token: Option<&str>, public_metrics: bool) -> Admin {
    // reqwest is built with rustls and no bundled provider: the process installs ring, as
    // `main` does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (dir, store) = temp_store().await;
    let metrics = Arc::new(Metrics::new(["gpt-4o-mini".to_owned()]));
    let state = AdminState {
        store: store.clone(),
        live: Arc::new(Live::new()),
        metrics: metrics.clone(),
        token: token.map(Secret::new),
        public_metrics,
        // Detection is not under test here: the analyze route answers 503 "disabled".
        scan: Arc::new(|_| None),
        feed: tokio::sync::broadcast::channel(16).0,
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
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    Admin {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        store,
        metrics,
        _dir: dir,
    }
}

impl Admin {
    async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("admin reachable")
    }
}

#[tokio::test]
async fn auth_is_required_everywhere_but_health() {
    let admin = start(Some("s3cret"), false).await;
    assert_eq!(admin.get("/health", None).await.status(), 200);
    for path in [
        "/api/usage/analytics",
        "/metrics",
        "/api/requests",
        "/api/security/summary",
    ] {
        assert_eq!(
            admin.get(path, None).await.status(),
            401,
            "{path} without token"
        );
        assert_eq!(
            admin.get(path, Some("wrong")).await.status(),
            401,
            "{path} wrong token"
        );
        assert_eq!(
            admin.get(path, Some("s3cret")).await.status(),
            200,
            "{path} right token"
        );
    }
    let rsp = admin.get("/api/usage/analytics", None).await;
    assert_eq!(rsp.headers()["www-authenticate"], "Bearer");
    let body: serde_json::Value = rsp.json().await.expect("json error");
    assert_eq!(body["error"]["type"], "authentication_error");

    let open = start(Some("s3cret"), true).await;
    assert_eq!(
        open.get("/metrics", None).await.status(),
        200,
        "public metrics"
    );
    assert_eq!(open.get("/api/requests", None).await.status(), 401);
    let none = start(None, false).await;
    assert_eq!(
        none.get("/api/requests", None).await.status(),
        200,
        "no token configured"
    );
}

#[tokio::test]
async fn bad_parameters_are_400_with_a_message() {
    let admin = start(None, false).await;
    let cases = [
        (
            "/api/usage/analytics?days=0",
            "days must be an integer between 1 and 365",
        ),
        ("/api/usage/analytics?days=-3", "days must be"),
        ("/api/usage/analytics?days=100000", "days must be"),
        ("/api/usage/analytics?days=seven", "days must be"),
        ("/api/export?format=xml", "format must be json or csv"),
        (
            "/api/export?kind=users",
            "kind must be requests or security",
        ),
        (
            "/api/export?from=yesterday",
            "from must be an RFC 3339 time",
        ),
        (
            "/api/export?from=2026-01-06T00:00:00Z&to=2026-01-05T00:00:00Z",
            "from must be earlier than to",
        ),
        (
            "/api/security/events?risk_level=severe",
            "risk_level must be one of",
        ),
        (
            "/api/security/events?category=xss",
            "category must be one of",
        ),
        ("/api/requests?limit=0", "limit must be"),
        ("/api/requests?cursor=abc", "cursor must be"),
        ("/api/requests?since=13:00", "since must be"),
    ];
    for (path, want) in cases {
        let rsp = admin.get(path, None).await;
        assert_eq!(rsp.status(), 400, "{path}");
        let body: serde_json::Value = rsp.json().await.expect("json error body");
        let msg = body["error"]["message"].as_str().expect("message");
        assert!(msg.contains(want), "{path}: {msg}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    assert_eq!(admin.get("/api/requests/nope", None).await.status(), 404);
    let rsp = admin
        .client
        .post(format!("{}/api/feedback", admin.base))
        .json(&serde_json::json!({"request_id": "r1", "score": 7}))
        .send()
        .await
        .expect("post");
    assert_eq!(rsp.status(), 400);
    let rsp = admin
        .client
        .post(format!("{}/api/feedback", admin.base))
        .json(&serde_json::json!({"request_id": "r1", "score": 0.8, "comment": "good"}))
        .send()
        .await
        .expect("post");
    assert_eq!(rsp.status(), 201);
}

fn now_ms() -> i64 {
    gatehouse::analytics::unix_ms(SystemTime::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_rows_usage_and_exports_agree() {
    let admin = start(None, false).await;
    let (tx, rx) = tokio::sync::mpsc::channel(512);
    let cfg = WriterConfig {
        batch: 300,
        flush: Duration::from_millis(50),
        retry_buffer: 4096,
        capture: CaptureConfig::default(),
        observer: None,
    };
    let writer = tokio::spawn(run_writer(admin.store.clone(), rx, cfg));
    let start = now_ms() - 60_000;
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0..1_500i64 {
                    let mut ex =
                        exchange(&format!("{p}-{i}"), start + i, "gpt-4o-mini", Some("u"), 80);
                    if i % 100 == 0 {
                        ex = blocked(ex, RiskLevel::Critical);
                    }
                    tx.send(Arc::new(ex)).await.expect("writer alive");
                }
            })
        })
        .collect();
    drop(tx);
    // Shut down mid-load: the producers still hold senders; the writer drains when they finish.
    for p in producers {
        p.await.expect("producer");
    }
    let summary = writer.await.expect("writer");
    assert_eq!(summary.written, 6_000);
    assert_eq!(
        admin
            .store
            .count_requests(0, i64::MAX)
            .await
            .expect("count"),
        6_000
    );

    let usage: serde_json::Value = admin
        .get("/api/usage/analytics?days=1", None)
        .await
        .json()
        .await
        .expect("usage");
    assert_eq!(usage["general_metrics"]["total_requests"], 6_000);
    assert_eq!(usage["general_metrics"]["blocked_requests"], 60);

    let csv_body = admin
        .get("/api/export?format=csv&kind=requests", None)
        .await
        .text()
        .await
        .expect("csv");
    let mut rdr = csv::Reader::from_reader(csv_body.as_bytes());
    let headers = rdr.headers().expect("header row").clone();
    assert!(headers.iter().any(|h| h == "latency"), "{headers:?}");
    let rows = rdr
        .records()
        .collect::<Result<Vec<_>, _>>()
        .expect("every CSV row parses");
    assert_eq!(rows.len(), 6_000);
    let ids: HashSet<&str> = rows.iter().map(|r| r.get(0).expect("id")).collect();
    assert_eq!(ids.len(), 6_000, "no row twice across pages");

    let json: Vec<serde_json::Value> = admin
        .get(
            &format!("/api/export?format=json&from={}", start / 1000),
            None,
        )
        .await
        .json()
        .await
        .expect("JSON export is one valid array");
    assert_eq!(json.len(), 6_000);
    let sec = admin
        .get("/api/export?format=csv&kind=security", None)
        .await
        .text()
        .await
        .expect("csv");
    assert_eq!(
        csv::Reader::from_reader(sec.as_bytes()).records().count(),
        60
    );
    let empty = admin
        .get("/api/export?format=csv&from=1", None)
        .await
        .text()
        .await
        .expect("csv");
    assert!(
        empty.starts_with("id,timestamp,"),
        "header even when later pages are empty"
    );

    let page: serde_json::Value = admin
        .get("/api/requests?limit=2", None)
        .await
        .json()
        .await
        .expect("page");
    let cursor = page["next_cursor"].as_str().expect("cursor on a full page");
    let next: serde_json::Value = admin
        .get(&format!("/api/requests?limit=2&cursor={cursor}"), None)
        .await
        .json()
        .await
        .expect("page 2");
    assert_ne!(page["items"][0]["id"], next["items"][0]["id"]);
    let one = admin.get("/api/requests/0-0", None).await;
    assert_eq!(one.status(), 200);
}

/// Minimal 0.0.4 checks the lenient parser doesn't make: TYPE once per name and before its
/// samples; every sample belongs to a declared family.
fn check_text_format(body: &str) {
    let mut types: HashMap<String, String> = HashMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "TYPE twice for {name}"
            );
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().expect("sample name");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(name);
            assert!(types.contains_key(family), "sample {name} has no TYPE line");
        }
    }
}

#[tokio::test]
async fn metrics_parse_in_both_formats() {
    let admin = start(None, false).await;
    let mut ex = exchange("m1", now_ms(), "gpt-4o-mini", Some("u"), 300);
    admin.metrics.observe(&ex);
    ex.model = Some("some-random-model".into());
    ex.upstream_model = None;
    admin.metrics.observe(&blocked(ex, RiskLevel::High));
    admin.metrics.set_model_score("gpt-4o-mini", 0.9);
    admin.metrics.record_dropped("store");
    admin
        .metrics
        .store_flush(10, Duration::from_millis(3), 5, true);
    let _guard = admin.metrics.in_flight();

    let rsp = admin.get("/metrics", None).await;
    assert_eq!(
        rsp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = rsp.text().await.expect("body");
    check_text_format(&body);
    let scrape =
        prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    let names: HashSet<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for want in [
        "inference_requests_total",
        "inference_latency_seconds",
        "security_threats_total",
        "model_performance_score",
        "gatehouse_time_to_first_token_seconds",
        "gatehouse_input_tokens_total",
        "gatehouse_cost_usd_total",
        "gatehouse_requests_in_flight",
        "gatehouse_blocked_requests_total",
        "gatehouse_records_dropped_total",
        "gatehouse_store_queue_depth",
        "gatehouse_config_reload_success",
    ] {
        assert!(names.contains(want), "{want} missing from\n{body}");
    }
    assert!(
        body.contains("model=\"other\""),
        "unknown model is bucketed"
    );
    assert!(!body.contains("some-random-model"));
    assert!(!body.contains("user="), "no user labels");

    let rsp = admin
        .client
        .get(format!("{}/metrics", admin.base))
        .header("accept", "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
        .send()
        .await
        .expect("scrape");
    assert_eq!(
        rsp.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = rsp.text().await.expect("body");
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE inference_requests counter"));
}
