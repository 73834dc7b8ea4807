//! Report periods, paging and retention end to end: `POST /api/reports/generate` and
//! `gatehouse report` cut the same calendar periods in the configured zone; `GET /api/reports`
//! pages with a cursor and says what is wrong with a bad parameter; old reports are deleted.

use serde_json::Value;

use gatehouse::report::Period;
use gatehouse::store::StoredReport;

use crate::report::{generate, markdown};
use crate::support::*;

const DAY_MS: i64 = 86_400_000;

async fn paris_gateway() -> (FakeUpstream, TestGateway) {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let mut c = config_for(&up.url());
    c.report.schedule.time_zone = "Europe/Paris".into();
    let gw = TestGateway::start(c).await;
    (up, gw)
}

fn store(gw: &TestGateway) -> &gatehouse::store::Store {
    &gw.app.as_ref().expect("app").store
}

/// A stored report created at `created_ms` (bodies left empty).
fn old_report(id: &str, created_ms: i64) -> StoredReport {
    StoredReport {
        id: id.into(),
        created_ms,
        period: "daily".into(),
        from_ms: created_ms - DAY_MS,
        to_ms: created_ms,
        engine: "rules".into(),
        recommendations: 0,
        json: "{}".into(),
        markdown: String::new(),
        html: String::new(),
    }
}

async fn get(gw: &TestGateway, path_and_query: &str) -> (u16, Value) {
    let rsp = client()
        .get(format!("{}{path_and_query}", gw.admin_url))
        .send()
        .await
        .expect("rsp");
    let status = rsp.status().as_u16();
    (status, rsp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn generated_reports_state_local_calendar_periods_and_their_zone() {
    let (_up, gw) = paris_gateway().await;
    // (query, from, to): days and weeks across the spring change, a leap-year February.
    let cases = [
        (
            "period=daily&date=2026-03-29",
            "2026-03-29T00:00:00+01:00",
            "2026-03-30T00:00:00+02:00",
        ),
        (
            "period=weekly&date=2026-03-29",
            "2026-03-23T00:00:00+01:00",
            "2026-03-30T00:00:00+02:00",
        ),
        (
            "period=monthly&date=2024-02-10",
            "2024-02-01T00:00:00+01:00",
            "2024-03-01T00:00:00+01:00",
        ),
    ];
    for (q, from, to) in cases {
        let r = generate(&gw, q).await;
        assert_eq!(
            (r["from"].as_str(), r["to"].as_str()),
            (Some(from), Some(to)),
            "{q}"
        );
        assert_eq!(r["zone"], "Europe/Paris", "{q}");
        assert_eq!(
            r["figures"]["from"], from,
            "the figures cover the same period: {q}"
        );
        let md = markdown(&gw, &r).await;
        assert!(
            md.contains(&format!("Period {from} – {to} (Europe/Paris).")),
            "{md}"
        );
    }

    // Without a date: the previous complete local day.
    let now = jiff::Timestamp::now().in_tz("Europe/Paris").expect("zone");
    let yesterday = now.date().yesterday().expect("yesterday");
    let want = yesterday
        .in_tz("Europe/Paris")
        .expect("midnight")
        .timestamp()
        .as_millisecond();
    let r = generate(&gw, "period=daily").await;
    assert_eq!(r["from_ms"], want, "{r}");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_cli_cuts_the_same_period_as_the_api() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config_for(&up.url());
    c.report.schedule.time_zone = "Europe/Paris".into();
    c.store.path = dir.path().join("cli.db");
    let date = "2026-10-25".parse().expect("date");
    let md = gatehouse::app::report_once(c, Period::Weekly, Some(date))
        .await
        .expect("report");
    assert!(
        md.contains("Period 2026-10-19T00:00:00+02:00 – 2026-10-26T00:00:00+01:00 (Europe/Paris)."),
        "{md}"
    );
}

#[tokio::test]
async fn bad_generate_parameters_are_400_and_a_digest_needs_digests_on() {
    let (_up, gw) = paris_gateway().await;
    for q in [
        "period=hourly",
        "period=daily&date=2026-13-01",
        "period=daily&date=yesterday",
        "period=daily&date=0001-01-01",
        "period=daily&digest=maybe",
    ] {
        let rsp = client()
            .post(format!("{}/api/reports/generate?{q}", gw.admin_url))
            .send()
            .await
            .expect("rsp");
        assert_eq!(rsp.status(), 400, "{q}");
    }
    let rsp = client()
        .post(format!(
            "{}/api/reports/generate?period=daily&digest=true",
            gw.admin_url
        ))
        .send()
        .await
        .expect("rsp");
    assert_eq!(rsp.status(), 503, "report.digest is off");
    let body = rsp.text().await.expect("text");
    assert!(body.contains("report.digest.enabled is false"), "{body}");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_report_list_pages_with_a_cursor_newest_first() {
    let (_up, gw) = paris_gateway().await;
    let now = jiff::Timestamp::now().as_millisecond();
    // Two reports share a creation time: the id breaks the tie, so none is lost or repeated.
    let ids = [
        ("01900000-0000-7000-8000-000000000001", now - 5_000),
        ("01900000-0000-7000-8000-000000000002", now - 4_000),
        ("01900000-0000-7000-8000-000000000003", now - 3_000),
        ("01900000-0000-7000-8000-000000000004", now - 3_000),
        ("01900000-0000-7000-8000-000000000005", now - 1_000),
    ];
    for (id, ms) in ids {
        store(&gw)
            .insert_report(&old_report(id, ms))
            .await
            .expect("insert");
    }
    let mut seen = Vec::new();
    let mut query = "/api/reports?limit=2".to_owned();
    for page in 0.. {
        let (status, v) = get(&gw, &query).await;
        assert_eq!(status, 200, "{v}");
        let items = v["items"].as_array().expect("items");
        assert!(items.len() <= 2, "{v}");
        seen.extend(
            items
                .iter()
                .map(|i| i["id"].as_str().expect("id").to_owned()),
        );
        match v["next_cursor"].as_str() {
            Some(c) => query = format!("/api/reports?limit=2&cursor={c}"),
            None => break,
        }
        assert!(page < 5, "paging ends");
    }
    let want: Vec<&str> = ids.iter().rev().map(|(id, _)| *id).collect();
    assert_eq!(seen, want, "every report once, newest first");

    for q in [
        "limit=0",
        "limit=501",
        "limit=ten",
        "cursor=garbage",
        "cursor=123.not-a-uuid",
        "cursor=.01900000-0000-7000-8000-000000000001",
    ] {
        let (status, v) = get(&gw, &format!("/api/reports?{q}")).await;
        assert_eq!(status, 400, "{q}: {v}");
        let msg = v.to_string();
        let name = q.split('=').next().expect("name");
        assert!(msg.contains(name), "the error names {name}: {msg}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn reports_older_than_the_retention_are_deleted_when_a_report_is_stored() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let mut c = config_for(&up.url());
    c.report.retention_days = 30;
    let gw = TestGateway::start(c).await;
    let now = jiff::Timestamp::now().as_millisecond();
    let (old, recent) = (
        "01900000-0000-7000-8000-00000000000a",
        "01900000-0000-7000-8000-00000000000b",
    );
    store(&gw)
        .insert_report(&old_report(old, now - 31 * DAY_MS))
        .await
        .expect("insert");
    store(&gw)
        .insert_report(&old_report(recent, now - 29 * DAY_MS))
        .await
        .expect("insert");
    let fresh = generate(&gw, "period=daily").await;
    let (_, v) = get(&gw, "/api/reports").await;
    let ids: Vec<&str> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [fresh["id"].as_str().expect("id"), recent], "{v}");
    gw.shutdown().await;
}
