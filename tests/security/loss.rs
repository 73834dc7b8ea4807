//! Loss of records: a full disk must not silently stop the record (every record is written,
//! waits in the retry buffer, or is counted as dropped; the failure is logged, alerted and
//! shown on `/ready`; the store resumes when space returns), and the crash window is what
//! `store.flush_ms` says.
//!
//! The full disk is real SQLite: `store.max_size_mb` caps the file (`PRAGMA max_page_count`),
//! so writes fail with SQLite's own "database or disk is full"; a ballast table written from
//! outside fills the room, and dropping it is the space coming back.

use std::time::Duration;

use gatehouse::config::{AlertLevel, Config, RuleConfig, RuleKind};
use sqlx::{Connection, Executor, SqliteConnection};

use crate::support::*;

/// Records the retry buffer holds in the full-disk test.
const RETRY_BUFFER: usize = 20;
/// Requests sent while the disk fills.
const WHILE_FULL: usize = 120;

/// The value of one sample (`name{labels}`) in a text scrape; 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

async fn outside(path: &std::path::Path) -> SqliteConnection {
    let mut c = SqliteConnection::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap_or_else(|e| panic!("an outside connection to {}: {e}", path.display()));
    c.execute("PRAGMA busy_timeout = 5000")
        .await
        .expect("busy timeout");
    c
}

/// Stops `gw` gracefully, keeping its directory (and so its store) for the caller.
async fn shutdown_keeping_store(mut gw: TestGateway) -> tempfile::TempDir {
    let dir = std::mem::replace(&mut gw.dir, tempfile::tempdir().expect("tempdir"));
    gw.shutdown().await;
    dir
}

async fn rows(path: &std::path::Path) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM requests")
        .fetch_one(&mut outside(path).await)
        .await
        .expect("count rows")
}

async fn ready(gw: &TestGateway) -> (u16, serde_json::Value) {
    let rsp = client()
        .get(format!("{}/ready", gw.url))
        .send()
        .await
        .expect("ready");
    (rsp.status().as_u16(), rsp.json().await.expect("json"))
}

/// Waits (up to 30 s) until `done` holds for the gateway's metrics scrape.
async fn until(gw: &TestGateway, what: &str, done: impl Fn(&str) -> bool) -> String {
    let metrics = gw.app.as_ref().expect("app").metrics.clone();
    for _ in 0..600 {
        let text = metrics.render(false).1;
        if done(&text) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 30 s\n{}", metrics.render(false).1);
}

fn full_disk_config(up: &FakeUpstream, rx: &Receiver) -> Config {
    let mut c = config_for(&up.url());
    c.store.max_size_mb = 2;
    c.store.retry_buffer = RETRY_BUFFER;
    c.store.batch = 8;
    c.store.flush_ms = 20;
    c.store.capture.prompts = true;
    c.store.capture.max_bytes = 8192;
    let a = &mut c.alerts;
    a.eval_secs = 1;
    a.delivery.backoff_ms = 10;
    a.channels.alertmanager.url = Some(rx.url("/am"));
    a.rules = vec![RuleConfig {
        name: "store_failing".into(),
        kind: RuleKind::StoreFailing,
        level: AlertLevel::Critical,
        channels: vec!["alertmanager".into()],
        ..RuleConfig::default()
    }];
    c
}

async fn chat_6k(gw: &TestGateway, n: usize) {
    // About 6 KB of captured prompt per record: two pages of the capped file each.
    let prompt = "the quick brown fox jumps over the lazy dog ".repeat(140);
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": prompt}]});
    for _ in 0..n {
        assert_eq!(
            gw.chat(&body).await.status(),
            200,
            "the proxy keeps serving"
        );
    }
}

/// The next notice of `alertname`, skipping none: it must be `status`.
async fn notice(rx: &mut Receiver, status: &str) -> serde_json::Value {
    let hook = rx.next().await;
    let v: serde_json::Value = serde_json::from_slice(&hook.body).expect("alertmanager json");
    assert_eq!(v["groupLabels"]["alertname"], "store_failing", "{v}");
    assert_eq!(v["status"], status, "{v}");
    v
}

/// REGRESSION: on a full disk rows stopped while `written` kept climbing, `failed` stayed 0,
/// nothing was logged, and after space came back the store never resumed ("database is
/// locked" from outside).
#[tokio::test]
async fn a_full_disk_is_counted_logged_alerted_and_recovered_from() {
    let logs = Logs::capture();
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let mut rx = Receiver::start(|_, _| (200, "{}")).await;
    let gw = TestGateway::start(full_disk_config(&up, &rx)).await;
    let path = gw.store_config.path.clone();
    let metrics = gw.app.as_ref().expect("app").metrics.clone();

    // Fill the 2 MiB cap from outside, leaving room for a few dozen records.
    let mut other = outside(&path).await;
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&mut other)
        .await
        .expect("page count");
    let ballast = (512 - pages - 60) * 4096;
    assert!(ballast > 0, "the schema fits in 2 MiB ({pages} pages)");
    other
        .execute(
            format!(
                "CREATE TABLE ballast (b BLOB); INSERT INTO ballast VALUES (zeroblob({ballast}))"
            )
            .as_str(),
        )
        .await
        .expect("ballast");

    chat_6k(&gw, WHILE_FULL).await;
    let text = until(&gw, "every record written or failed", |t| {
        let written = sample(t, r#"gatehouse_store_records_total{result="written"}"#);
        let failed = sample(t, r#"gatehouse_store_records_total{result="failed"}"#);
        written + failed == WHILE_FULL as f64 && failed > 0.0
    })
    .await;
    let written = sample(&text, r#"gatehouse_store_records_total{result="written"}"#) as i64;
    let failed = sample(&text, r#"gatehouse_store_records_total{result="failed"}"#) as i64;
    let dropped = sample(&text, r#"gatehouse_store_records_total{result="dropped"}"#) as i64;
    let stored = rows(&path).await;
    assert_eq!(stored, written, "a record counted as written is a row");
    assert!(written > 0, "some records fit before the disk filled");
    assert_eq!(failed, WHILE_FULL as i64 - written);
    assert_eq!(
        dropped,
        failed - RETRY_BUFFER as i64,
        "what the retry buffer cannot hold is dropped, and counted"
    );
    assert_eq!(sample(&text, "gatehouse_store_failing"), 1.0);
    assert_eq!(
        sample(&text, "gatehouse_store_retry_records"),
        RETRY_BUFFER as f64
    );
    assert_eq!(
        sample(
            &text,
            r#"gatehouse_records_dropped_total{consumer="store"}"#
        ) as i64,
        dropped
    );
    let (status, body) = ready(&gw).await;
    assert_eq!(
        status, 200,
        "the proxy still serves: ready, with the store reported"
    );
    assert_eq!(body["store"], "failing", "{body}");
    assert_eq!(body["store_buffered"], RETRY_BUFFER, "{body}");
    assert_eq!(body["store_dropped"], dropped, "{body}");
    let fired = notice(&mut rx, "firing").await;
    let summary = fired["commonAnnotations"].to_string() + &fired["alerts"].to_string();
    assert!(
        summary.contains("database or disk is full"),
        "the alert says why: {fired}"
    );
    let log = logs.text();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("store"))
        .collect();
    assert!(
        errors
            .iter()
            .any(|l| l.contains("store write failed") && l.contains("database or disk is full")),
        "the failure is logged at ERROR with its cause:\n{log}"
    );
    assert!(
        errors.len() <= 2,
        "ERROR lines are rate-limited, not one per batch:\n{}",
        errors.join("\n")
    );

    // Space comes back: nothing may hold the file locked.
    other
        .execute("DROP TABLE ballast")
        .await
        .expect("the store holds no lock after failed writes (\"database is locked\")");
    until(&gw, "the retry buffer written", |t| {
        sample(t, "gatehouse_store_failing") == 0.0
            && sample(t, "gatehouse_store_retry_records") == 0.0
    })
    .await;
    assert_eq!(
        rows(&path).await,
        written + RETRY_BUFFER as i64,
        "every buffered record is stored"
    );
    notice(&mut rx, "resolved").await;
    let (status, body) = ready(&gw).await;
    assert_eq!((status, &body["store"]), (200, &"ok".into()), "{body}");
    assert!(
        logs.text().contains("store writes succeed again"),
        "the recovery is logged"
    );

    chat_6k(&gw, 5).await;
    let _dir = shutdown_keeping_store(gw).await;
    let text = metrics.render(false).1;
    assert_eq!(
        sample(&text, r#"gatehouse_store_records_total{result="failed"}"#) as i64,
        failed,
        "nothing failed after the space came back"
    );
    assert_eq!(
        sample(&text, r#"gatehouse_store_records_total{result="dropped"}"#) as i64,
        dropped,
        "nothing dropped at shutdown"
    );
}

#[test]
fn flush_ms_must_be_between_1_ms_and_a_minute() {
    for (flush_ms, ok) in [
        (0, false),
        (1, true),
        (200, true),
        (60_000, true),
        (60_001, false),
    ] {
        let mut c = Config::default();
        c.store.flush_ms = flush_ms;
        let res = gatehouse::config::validate(&c);
        assert_eq!(res.is_ok(), ok, "flush_ms {flush_ms}: {res:?}");
        if let Err(p) = res {
            assert!(p.to_string().contains("store.flush_ms"), "{p}");
        }
    }
    assert_eq!(Config::default().store.flush_ms, 200, "the default is kept");
}

/// `flush_ms` is the crash window: with a long one a lone record waits in memory until the
/// graceful shutdown commits it; with a short one it is committed while the gateway runs.
#[tokio::test]
async fn flush_ms_sets_how_long_a_finished_record_waits_in_memory() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});

    let mut c = config_for(&up.url());
    c.store.flush_ms = 60_000;
    let mut gw = TestGateway::start(c).await;
    assert_eq!(gw.chat(&body).await.status(), 200);
    gw.record().await;
    let path = gw.store_config.path.clone();
    // The store's queue got the record before the tap did; give the writer time to misbehave.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rows(&path).await, 0, "a partial batch waits for flush_ms");
    let _dir = shutdown_keeping_store(gw).await;
    assert_eq!(rows(&path).await, 1, "a graceful shutdown commits it");

    let mut c = config_for(&up.url());
    c.store.flush_ms = 20;
    let mut gw = TestGateway::start(c).await;
    assert_eq!(gw.chat(&body).await.status(), 200);
    gw.record().await;
    let path = gw.store_config.path.clone();
    let mut stored = 0;
    for _ in 0..200 {
        stored = rows(&path).await;
        if stored == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored, 1, "committed while running, within about flush_ms");
    gw.shutdown().await;
}
