//! Report digests end to end: a generated report → one digest on each configured channel (a
//! real SMTP sink and loopback webhook receivers), with the period, engine, top
//! recommendations and the report's link, and no prompt text or secrets; every attempt stored
//! like an alert delivery.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use gatehouse::config::Config;

use crate::alerts::{json, point_channels, verify};
use crate::report::{
    gateway_with, generate, traffic, upstream, ADVICE, PROMPT_MARKER, UPSTREAM_KEY,
};
use crate::support::*;

const ADMIN_URL: &str = "https://gw-admin.example.com";

/// Every alert channel on loopback (Alertmanager too, which digests skip), no alert rules, the
/// digest on, reports in Paris time.
fn digest_config(c: &mut Config, rx: &Receiver, smtp: &SmtpSink, dir: &Path) {
    c.report.schedule.time_zone = "Europe/Paris".into();
    c.report.digest.enabled = true;
    c.report.digest.admin_url = Some(format!("{ADMIN_URL}/"));
    let a = &mut c.alerts;
    a.rules.clear();
    a.gateway_name = "test-gw".into();
    a.delivery.retries = 1;
    a.delivery.backoff_ms = 10;
    point_channels(
        &mut a.channels,
        rx,
        smtp,
        dir,
        ("gatehouse <reports@gw.test>", &["ops@example.com"]),
    );
}

/// Decodes a quoted-printable body (lettre picks it for lines over 76 characters).
fn unquote(qp: &str) -> String {
    let joined = qp.replace("=\r\n", "");
    let mut out = Vec::new();
    let mut bytes = joined.bytes();
    while let Some(b) = bytes.next() {
        if b == b'=' {
            let hex: Vec<u8> = bytes.by_ref().take(2).collect();
            let hex = std::str::from_utf8(&hex).expect("ascii");
            out.push(u8::from_str_radix(hex, 16).expect("=XX"));
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// Asserts that a digest body leaks nothing of the traffic or the channels' credentials.
fn assert_clean(what: &str, body: &str) {
    for secret in [PROMPT_MARKER, UPSTREAM_KEY, "whsec_", "/slack", "/teams"] {
        assert!(
            !body.contains(secret),
            "{what} digest holds {secret:?}: {body}"
        );
    }
}

/// Waits until the store holds `n` delivery attempts for report `id` (rows are written after
/// the receiver answered: there is no signal to wait on); gives up after 10 s.
async fn deliveries(gw: &TestGateway, id: &str, n: usize) -> Vec<gatehouse::store::DeliveryRow> {
    let store = &gw.app.as_ref().expect("app").store;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = store.alert_deliveries(id).await.expect("deliveries");
        if rows.len() >= n || tokio::time::Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_generated_report_sends_one_digest_per_channel_without_prompt_text_or_secrets() {
    let up = upstream(ADVICE).await;
    let mut rx = Receiver::start(|_, _| (200, "ok")).await;
    let mut smtp = SmtpSink::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gw = gateway_with(&up, |c| digest_config(c, &rx, &smtp, dir.path())).await;
    let today = traffic(&mut gw, 3, "Europe/Paris").await;

    let plain = generate(&gw, &format!("period=daily&date={today}")).await;
    let report = generate(&gw, &format!("period=daily&date={today}&digest=true")).await;
    let id = report["id"].as_str().expect("id");
    let link = format!("{ADMIN_URL}/api/reports/{id}?format=html");
    let (from, to) = (
        report["from"].as_str().expect("from"),
        report["to"].as_str().expect("to"),
    );
    assert!(from.starts_with(&format!("{today}T00:00:00+0")), "{from}");

    let mail = smtp.next().await;
    let subject = mail.header("Subject").expect("subject");
    assert_eq!(
        subject,
        format!("test-gw daily report: 1 recommendation ({from} to {to} (Europe/Paris))")
    );
    assert_eq!(
        mail.header("Message-ID").as_deref(),
        Some(format!("<{id}.digest@gatehouse>").as_str())
    );
    let body = match mail.header("Content-Transfer-Encoding").as_deref() {
        Some("quoted-printable") => unquote(mail.body()),
        _ => mail.body().to_owned(),
    }
    .replace("\r\n", "\n");
    assert!(body.contains("- [high] cost: Cheaper alias\n"), "{body}");
    assert!(
        body.contains("Written by: llm:openai/gpt-4o-mini"),
        "{body}"
    );
    assert!(body.contains(&format!("Full report: {link}")), "{body}");
    assert_clean("email", &format!("{subject}\n{body}"));

    let mut got: HashMap<String, Hook> = HashMap::new();
    for _ in 0..3 {
        let h = rx.next().await;
        assert!(
            got.insert(h.path.clone(), h).is_none(),
            "one digest per channel"
        );
    }
    let mut paths: Vec<&str> = got.keys().map(String::as_str).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        ["/hook", "/slack", "/teams"],
        "Alertmanager takes no digest"
    );

    let slack = json(&got["/slack"].body);
    assert_eq!(
        slack["blocks"][0]["text"]["text"],
        "test-gw daily report: 1 recommendation"
    );
    assert!(slack["blocks"][2]["text"]["text"]
        .as_str()
        .expect("items")
        .contains("*[high]* cost: Cheaper alias"));
    assert_eq!(slack["blocks"][4]["elements"][0]["url"], link.as_str());
    let teams = json(&got["/teams"].body);
    let card = &teams["attachments"][0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["actions"][0]["url"], link.as_str());
    let hook = &got["/hook"];
    verify(hook);
    assert_eq!(
        hook.headers.get("webhook-id").and_then(|v| v.to_str().ok()),
        Some(format!("msg_{id}_digest").as_str())
    );
    let hb = json(&hook.body);
    assert_eq!(hb["type"], "gateway.report.digest");
    let data = &hb["data"];
    assert_eq!(data["report_id"], id);
    assert_eq!(
        (data["from"].as_str(), data["to"].as_str()),
        (Some(from), Some(to))
    );
    assert_eq!(data["zone"], "Europe/Paris");
    assert_eq!(data["engine"], "llm:openai/gpt-4o-mini");
    assert_eq!(data["top"][0]["priority"], "high");
    assert_eq!(data["link"], link.as_str());
    for (path, h) in &got {
        assert_clean(path, std::str::from_utf8(&h.body).expect("utf-8"));
    }

    let rows = deliveries(&gw, id, 4).await;
    let mut channels: Vec<&str> = rows.iter().map(|r| r.channel.as_str()).collect();
    channels.sort_unstable();
    assert_eq!(
        channels,
        ["email", "slack", "teams", "webhook#0"],
        "{rows:#?}"
    );
    assert!(
        rows.iter().all(|r| r.ok && r.notice == "digest"),
        "{rows:#?}"
    );
    let plain_rows = deliveries(&gw, plain["id"].as_str().expect("id"), 0).await;
    assert!(
        plain_rows.is_empty(),
        "a report asked for without a digest sends none"
    );
    assert!(
        rx.hooks.try_recv().is_err() && smtp.mails.try_recv().is_err(),
        "exactly one digest per channel"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn digest_channels_can_be_narrowed() {
    let up = upstream(ADVICE).await;
    let mut rx = Receiver::start(|_, _| (200, "ok")).await;
    let mut smtp = SmtpSink::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway_with(&up, |c| {
        digest_config(c, &rx, &smtp, dir.path());
        c.report.digest.channels = vec!["slack".into()];
        c.report.digest.admin_url = None;
    })
    .await;
    let report = generate(&gw, "period=weekly&digest=true").await;
    let id = report["id"].as_str().expect("id");
    let h = rx.next().await;
    assert_eq!(h.path, "/slack");
    let slack = json(&h.body);
    assert_eq!(
        slack["blocks"][4]["type"], "context",
        "no URL: the path, no button"
    );
    assert!(slack["blocks"][4]["elements"][0]["text"]
        .as_str()
        .expect("path")
        .contains(&format!("/api/reports/{id}?format=html")));
    assert_eq!(deliveries(&gw, id, 1).await.len(), 1);
    assert!(rx.hooks.try_recv().is_err() && smtp.mails.try_recv().is_err());
    gw.shutdown().await;
}

#[tokio::test]
async fn scheduled_reports_send_a_digest_and_manual_ones_only_when_asked() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use gatehouse::report::{ChatError, Period, Reporter, Trigger};

    let dir = tempfile::tempdir().expect("tempdir");
    let store = gatehouse::store::Store::open(&dir.path().join("r.db"))
        .await
        .expect("store");
    for (enabled, trigger, want) in [
        (true, Trigger::Schedule, 1),
        (true, Trigger::Manual, 0),
        (true, Trigger::ManualWithDigest, 1),
        (false, Trigger::Schedule, 0),
        (false, Trigger::ManualWithDigest, 0),
    ] {
        let mut c = Config::default();
        c.report.digest.enabled = enabled;
        let c = Arc::new(c);
        let sent = Arc::new(AtomicUsize::new(0));
        let s = sent.clone();
        let reporter = Reporter::new(
            store.clone(),
            Arc::new(|_| Box::pin(async { Err(ChatError::Timeout) })),
            Arc::new(move || c.clone()),
            Arc::new(|_| Ok(())),
        )
        .with_digest(Arc::new(move |_| {
            s.fetch_add(1, Ordering::SeqCst);
        }));
        reporter
            .generate(Period::Daily, None, trigger)
            .await
            .expect("report");
        assert_eq!(
            sent.load(Ordering::SeqCst),
            want,
            "digest enabled {enabled}, {trigger:?}"
        );
    }
    store.close().await;
}
