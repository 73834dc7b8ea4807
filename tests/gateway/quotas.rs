//! Quotas end to end: each limit trips at exactly its figure for each scope, the 429 is
//! OpenAI's (body, `Retry-After`, `x-ratelimit-*`), admitted answers carry the headers too,
//! tokens are reconciled with the answer's usage (streams included), concurrency slots come
//! back when a stream ends or its client goes away, budgets refuse once spent, and a key's
//! model allow-list answers 403.
//!
//! Minute windows follow the clock: a test that counts per minute first makes sure its minute
//! has at least `MARGIN` left (`fresh_minute`), so a boundary cannot fall inside it.

use std::sync::Arc;
use std::time::Duration;

use gatehouse::config::{BudgetPeriod, EndUsers, KeyConfig, LimitsConfig};
use gatehouse::event::{Limited, Outcome};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::support::*;

const MARGIN: Duration = Duration::from_secs(10);

/// Gateway keys written to files in a temp dir.
struct Keys(tempfile::TempDir);

impl Keys {
    fn new() -> Keys {
        Keys(tempfile::tempdir().expect("tempdir"))
    }

    /// A key `secret` for `user` in `team`, with `limits`.
    fn key(&self, secret: &str, user: &str, team: Option<&str>, limits: LimitsConfig) -> KeyConfig {
        let path = self.0.path().join(secret);
        std::fs::write(&path, secret).expect("key file");
        KeyConfig {
            key_file: Some(path),
            user: user.into(),
            team: team.map(Into::into),
            limits,
            ..KeyConfig::default()
        }
    }
}

fn rpm(n: u64) -> LimitsConfig {
    LimitsConfig {
        requests_per_minute: Some(n),
        ..LimitsConfig::default()
    }
}

/// A chat call with `key` (when given) and `body`.
async fn call(gw: &TestGateway, key: Option<&str>, body: &str) -> reqwest::Response {
    let mut req = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    req.send().await.expect("a response")
}

fn header<'a>(rsp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    rsp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Asserts a 429 from gatehouse: status, OpenAI body (the message starting with `message`),
/// `x-gatehouse-error`, `Retry-After`; returns the body and `Retry-After`.
async fn assert_429(
    rsp: reqwest::Response,
    kind: &str,
    type_: &str,
    code: &str,
    message: &str,
) -> u64 {
    assert_eq!(rsp.status(), 429);
    assert_eq!(header(&rsp, "x-gatehouse-error"), Some(kind));
    assert_eq!(header(&rsp, "content-type"), Some("application/json"));
    let retry: u64 = header(&rsp, "retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    let body: Value = rsp.json().await.expect("json body");
    let got = body["error"]["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(
        got.starts_with(message),
        "message {got:?} should start with {message:?}"
    );
    assert_eq!(
        body,
        json!({"error": {"message": got, "type": type_, "param": null, "code": code}}),
        "the OpenAI error shape, nothing more"
    );
    retry
}

async fn metrics(gw: &TestGateway) -> String {
    get_text(&format!("{}/metrics", gw.admin_url)).await
}

#[tokio::test]
async fn a_key_rpm_trips_at_its_figure_with_openai_headers() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let keys = Keys::new();
    let mut c = config_for(&up.url());
    c.auth.keys.push(keys.key("k-rpm", "alice", None, rpm(3)));
    let mut gw = TestGateway::start(c).await;
    fresh_minute(MARGIN).await;
    for remaining in ["2", "1", "0"] {
        let rsp = call(&gw, Some("k-rpm"), CHAT_BODY).await;
        assert_eq!(rsp.status(), 200);
        assert_eq!(header(&rsp, "x-ratelimit-limit-requests"), Some("3"));
        assert_eq!(
            header(&rsp, "x-ratelimit-remaining-requests"),
            Some(remaining)
        );
        let reset = header(&rsp, "x-ratelimit-reset-requests").expect("reset");
        assert!(
            reset.ends_with('s') && reset.len() >= 3,
            "a Go duration: {reset}"
        );
        assert_eq!(
            header(&rsp, "x-ratelimit-limit-tokens"),
            None,
            "no token limit applies"
        );
        assert_eq!(
            rsp.text().await.expect("body"),
            CHAT_ANSWER,
            "the answer is untouched"
        );
        assert_eq!(gw.record().await.outcome, Outcome::Ok);
    }
    let rsp = call(&gw, Some("k-rpm"), CHAT_BODY).await;
    assert_eq!(header(&rsp, "x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(header(&rsp, "x-ratelimit-limit-requests"), Some("3"));
    assert_eq!(header(&rsp, "x-should-retry"), None, "the SDK may retry");
    let retry = assert_429(
        rsp,
        "rate_limited",
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests per minute on this key: limit 3, used 3, requested 1. Please try again in ",
    )
    .await;
    assert!((1..=60).contains(&retry), "until the minute ends: {retry}");
    assert_eq!(
        up.count(),
        3,
        "the refused request never reached the upstream"
    );
    let rec = gw.record().await;
    assert_eq!((rec.status, rec.outcome), (429, Outcome::Rejected));
    assert_eq!(rec.error_kind, Some("rate_limited"));
    assert_eq!(
        rec.limited,
        Some(Limited {
            scope: "key",
            reason: "requests"
        })
    );
    let m = metrics(&gw).await;
    assert!(
        m.contains(r#"gatehouse_ratelimit_rejected_total{scope="key",reason="requests"} 1"#),
        "{m}"
    );
    assert!(!m.contains("alice"), "no user in the metrics");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_key_without_limits_gets_no_rate_headers() {
    let up = FakeUpstream::always(Reply::Full(
        200,
        vec![
            ("content-type", "application/json".into()),
            ("x-ratelimit-remaining-requests", "499".into()),
        ],
        CHAT_ANSWER.into(),
    ))
    .await;
    let keys = Keys::new();
    let mut c = config_for(&up.url());
    c.auth
        .keys
        .push(keys.key("k-free", "alice", None, LimitsConfig::default()));
    c.auth.keys.push(keys.key("k-one", "bob", None, rpm(5)));
    let gw = TestGateway::start(c).await;
    fresh_minute(MARGIN).await;
    let rsp = call(&gw, Some("k-free"), CHAT_BODY).await;
    assert_eq!(
        header(&rsp, "x-ratelimit-remaining-requests"),
        Some("499"),
        "the upstream's own header passes through"
    );
    let rsp = call(&gw, Some("k-one"), CHAT_BODY).await;
    assert_eq!(
        header(&rsp, "x-ratelimit-remaining-requests"),
        Some("4"),
        "a limited key's figure replaces the upstream's"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn requests_per_day_and_the_global_scope_trip_at_their_figure() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let mut c = config_for(&up.url());
    c.quotas.global.requests_per_day = Some(2);
    let mut gw = TestGateway::start(c).await;
    for remaining in ["1", "0"] {
        let rsp = call(&gw, None, CHAT_BODY).await;
        assert_eq!(rsp.status(), 200);
        assert_eq!(
            header(&rsp, "x-ratelimit-remaining-requests"),
            Some(remaining)
        );
        gw.record().await;
    }
    let retry = assert_429(
        call(&gw, None, CHAT_BODY).await,
        "rate_limited",
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests per day on this gateway: limit 2, used 2",
    )
    .await;
    assert!(
        (1..=86_400).contains(&retry),
        "until the UTC day ends: {retry}"
    );
    let rec = gw.record().await;
    assert_eq!(rec.limited.map(|l| l.scope), Some("global"));
    gw.shutdown().await;
}

#[tokio::test]
async fn each_end_user_has_their_own_count() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let keys = Keys::new();
    let mut c = config_for(&up.url());
    let mut k = keys.key("k-backend", "backend", None, LimitsConfig::default());
    k.end_users = EndUsers::Trusted;
    c.auth.keys.push(k);
    c.quotas.users.default = rpm(2);
    let gw = TestGateway::start(c).await;
    fresh_minute(MARGIN).await;
    let as_user = |user: &'static str| {
        client()
            .post(format!("{}/v1/chat/completions", gw.url))
            .header("authorization", "Bearer k-backend")
            .header("x-gatehouse-user", user)
            .body(CHAT_BODY)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(as_user("ann").await.expect("rsp").status(), 200);
    }
    assert_429(
        as_user("ann").await.expect("rsp"),
        "rate_limited",
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests per minute on this user: limit 2",
    )
    .await;
    let bob = as_user("bob").await.expect("rsp");
    assert_eq!(bob.status(), 200, "bob has his own count");
    assert_eq!(header(&bob, "x-ratelimit-remaining-requests"), Some("1"));
    let m = metrics(&gw).await;
    assert!(
        m.contains(r#"gatehouse_ratelimit_rejected_total{scope="user",reason="requests"} 1"#),
        "{m}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_team_limit_is_shared_by_its_keys() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let keys = Keys::new();
    let mut c = config_for(&up.url());
    c.auth
        .keys
        .push(keys.key("k-red-1", "ann", Some("red"), LimitsConfig::default()));
    c.auth
        .keys
        .push(keys.key("k-red-2", "bob", Some("red"), LimitsConfig::default()));
    c.auth
        .keys
        .push(keys.key("k-blue", "cy", Some("blue"), LimitsConfig::default()));
    c.quotas.teams.insert("red".into(), rpm(2));
    let gw = TestGateway::start(c).await;
    fresh_minute(MARGIN).await;
    assert_eq!(call(&gw, Some("k-red-1"), CHAT_BODY).await.status(), 200);
    assert_eq!(call(&gw, Some("k-red-2"), CHAT_BODY).await.status(), 200);
    assert_429(
        call(&gw, Some("k-red-1"), CHAT_BODY).await,
        "rate_limited",
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests per minute on this team: limit 2, used 2",
    )
    .await;
    assert_eq!(call(&gw, Some("k-blue"), CHAT_BODY).await.status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_model_limit_applies_by_alias_and_by_upstream_id() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let mut c = config_for(&up.url());
    // `qwendeepseek` is an alias of deepseek/deepseek-r1-distill-qwen-32b (support::config_for).
    c.quotas
        .models
        .insert("deepseek/deepseek-r1-distill-qwen-32b".into(), rpm(2));
    c.quotas.models.insert("openai/gpt-4o-mini".into(), rpm(1));
    let gw = TestGateway::start(c).await;
    fresh_minute(MARGIN).await;
    let alias = r#"{"model":"qwendeepseek","messages":[{"role":"user","content":"hi"}]}"#;
    let by_id = r#"{"model":"deepseek/deepseek-r1-distill-qwen-32b","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(call(&gw, None, alias).await.status(), 200);
    assert_eq!(call(&gw, None, by_id).await.status(), 200);
    assert_429(
        call(&gw, None, alias).await,
        "rate_limited",
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests per minute on this model: limit 2, used 2",
    )
    .await;
    assert_eq!(
        call(&gw, None, CHAT_BODY).await.status(),
        200,
        "another model"
    );
    assert_eq!(call(&gw, None, CHAT_BODY).await.status(), 429);
    gw.shutdown().await;
}

#[tokio::test]
async fn tokens_are_estimated_then_counted_from_usage() {
    // CHAT_ANSWER reports 1213 tokens; CHAT_BODY's prompt is 18 characters, estimated at 5.
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let keys = Keys::new();
    let mut c = config_for(&up.url());
    let tpm = LimitsConfig {
        tokens_per_minute: Some(2430),
        ..LimitsConfig::default()
    };
    c.auth.keys.push(keys.key("k-tpm", "alice", None, tpm));
    let tiny = LimitsConfig {
        tokens_per_day: Some(4),
        ..LimitsConfig::default()
    };
    c.auth.keys.push(keys.key("k-tiny", "bob", None, tiny));
    let gw = TestGateway::start(c).await;
    fresh_minute(MARGIN).await;
    // Admitted with room for the estimate: 0 + 5, then 1213 + 5; refused at 2426 + 5 > 2430.
    for remaining in ["2425", "1212"] {
        let rsp = call(&gw, Some("k-tpm"), CHAT_BODY).await;
        assert_eq!(rsp.status(), 200);
        assert_eq!(header(&rsp, "x-ratelimit-limit-tokens"), Some("2430"));
        assert_eq!(
            header(&rsp, "x-ratelimit-remaining-tokens"),
            Some(remaining)
        );
        assert!(header(&rsp, "x-ratelimit-reset-tokens").is_some());
        assert_eq!(header(&rsp, "x-ratelimit-limit-requests"), None);
        rsp.bytes().await.expect("body");
    }
    assert_429(
        call(&gw, Some("k-tpm"), CHAT_BODY).await,
        "rate_limited",
        "tokens",
        "rate_limit_exceeded",
        "Rate limit reached for tokens per minute on this key: limit 2430, used 2426, requested 5.",
    )
    .await;
    let tiny = call(&gw, Some("k-tiny"), CHAT_BODY).await;
    assert_eq!(
        header(&tiny, "x-should-retry"),
        Some("false"),
        "waiting cannot help"
    );
    assert_429(
        tiny,
        "rate_limited",
        "tokens",
        "rate_limit_exceeded",
        "Request too large for tokens per day on this key: limit 4, requested 5.",
    )
    .await;
    assert_eq!(up.count(), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_streamed_answer_is_counted_from_its_final_usage() {
    let events = chat_stream_events(true);
    let chunks: Vec<&str> = events.iter().map(String::as_str).collect();
    let up = FakeUpstream::always(stream(&chunks)).await;
    let keys = Keys::new();
    let mut c = config_for(&up.url());
    let tpm = LimitsConfig {
        tokens_per_minute: Some(10_000),
        ..LimitsConfig::default()
    };
    c.auth.keys.push(keys.key("k-stream", "alice", None, tpm));
    let mut gw = TestGateway::start(c).await;
    fresh_minute(MARGIN).await;
    let body = r#"{"model":"openai/gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Colour of the sky?"}]}"#;
    let first = call(&gw, Some("k-stream"), body).await;
    let after_estimate: u64 = header(&first, "x-ratelimit-remaining-tokens")
        .expect("tokens header on a stream")
        .parse()
        .expect("a number");
    let estimate = 10_000 - after_estimate;
    let text = first.text().await.expect("the whole stream");
    assert!(
        !text.contains("\"usage\":{"),
        "the usage chunk gatehouse asked for is stripped"
    );
    assert_eq!(gw.record().await.usage.total(), Some(1212));
    let second = call(&gw, Some("k-stream"), body).await;
    assert_eq!(
        header(&second, "x-ratelimit-remaining-tokens"),
        Some((10_000 - 1212 - estimate).to_string().as_str()),
        "the first stream counts its 1212 tokens, the second its estimate"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_concurrency_slot_comes_back_when_a_stream_ends_or_its_client_goes() {
    let events = chat_stream_events(true);
    let mut long = events.clone();
    long.splice(2..2, std::iter::repeat_n(events[1].clone(), 5_000));
    let gate = Arc::new(Semaphore::new(0));
    let to_bytes = |v: &[String]| v.iter().map(|e| bytes::Bytes::from(e.clone())).collect();
    let (short, long): (Vec<bytes::Bytes>, Vec<bytes::Bytes>) =
        (to_bytes(&events), to_bytes(&long));
    let g = gate.clone();
    let up = FakeUpstream::start(move |n, _| Reply::Stream {
        chunks: if n == 2 { long.clone() } else { short.clone() },
        gate: Some(g.clone()),
        reset_after: None,
    })
    .await;
    let keys = Keys::new();
    let mut c = config_for(&up.url());
    let one = LimitsConfig {
        concurrent: Some(1),
        ..LimitsConfig::default()
    };
    c.auth.keys.push(keys.key("k-one", "alice", None, one));
    let mut gw = TestGateway::start(c).await;
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

    // A stream holds the slot until it ends.
    let held = call(&gw, Some("k-one"), body).await;
    assert_eq!(held.status(), 200);
    let retry = assert_429(
        call(&gw, Some("k-one"), body).await,
        "rate_limited",
        "requests",
        "rate_limit_exceeded",
        "Too many requests in flight on this key: limit 1.",
    )
    .await;
    assert_eq!(retry, 1);
    gate.add_permits(events.len());
    held.text().await.expect("the stream to its end");
    assert_eq!(gw.record().await.status, 429);
    assert_eq!(gw.record().await.outcome, Outcome::Ok);
    let next = call(&gw, Some("k-one"), body).await;
    assert_eq!(
        next.status(),
        200,
        "the slot came back when the stream ended"
    );
    gate.add_permits(events.len());
    next.text().await.expect("the stream to its end");
    assert_eq!(gw.record().await.outcome, Outcome::Ok);

    // A client that goes away mid-stream gives its slot back.
    let gone = call(&gw, Some("k-one"), body).await;
    assert_eq!(gone.status(), 200);
    let mut s = gone.bytes_stream();
    gate.add_permits(1);
    futures_util::StreamExt::next(&mut s)
        .await
        .expect("a first chunk")
        .expect("bytes");
    assert_eq!(
        call(&gw, Some("k-one"), body).await.status(),
        429,
        "still held"
    );
    assert_eq!(gw.record().await.status, 429);
    drop(s);
    gate.add_permits(Semaphore::MAX_PERMITS - 1000);
    assert_eq!(gw.record().await.outcome, Outcome::Cancelled);
    let after = call(&gw, Some("k-one"), body).await;
    assert_eq!(
        after.status(),
        200,
        "the slot came back when the client went"
    );
    gw.shutdown().await;
}

/// An answer from `openai/gpt-4o-mini` using 10 + 2 tokens, with OpenRouter's `usage.cost`
/// (USD) when `cost` is given.
fn answer_costing(cost: Option<f64>) -> String {
    let mut usage = json!({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12});
    if let Some(c) = cost {
        usage["cost"] = c.into();
    }
    json!({
        "id": "gen-1", "object": "chat.completion", "model": "openai/gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Blue"}}],
        "usage": usage
    })
    .to_string()
}

fn priced_answer(cost: f64) -> String {
    answer_costing(Some(cost))
}

#[tokio::test]
async fn a_spent_budget_refuses_the_next_request_until_the_local_period_ends() {
    let up = FakeUpstream::always(Reply::Json(200, priced_answer(0.0006))).await;
    let keys = Keys::new();
    let mut c = config_for(&up.url());
    c.report.schedule.time_zone = "America/New_York".into();
    let budget = LimitsConfig {
        budget_usd: Some(0.001),
        per: Some(BudgetPeriod::Day),
        ..LimitsConfig::default()
    };
    c.auth
        .keys
        .push(keys.key("k-budget", "alice", None, budget));
    let mut gw = TestGateway::start(c).await;
    // $0 then $0.0006 spent: both below $0.001; the second crosses it.
    for _ in 0..2 {
        let rsp = call(&gw, Some("k-budget"), CHAT_BODY).await;
        assert_eq!(rsp.status(), 200);
        rsp.bytes().await.expect("body");
        assert_eq!(gw.record().await.cost, Some(0.0006));
    }
    let before = now_ms();
    let rsp = call(&gw, Some("k-budget"), CHAT_BODY).await;
    let after = now_ms();
    assert_eq!(header(&rsp, "x-should-retry"), Some("false"));
    let retry = assert_429(
        rsp,
        "quota_exceeded",
        "insufficient_quota",
        "insufficient_quota",
        "Budget exceeded on this key: spent $0.0012 of $0.001 this day; it resets in ",
    )
    .await;
    let zone = jiff::tz::TimeZone::get("America/New_York").expect("zone");
    let (_, end) =
        gatehouse::quota::period_bounds(BudgetPeriod::Day, after, &zone).expect("bounds");
    let (lo, hi) = ((end - after) / 1000, (end - before + 999) / 1000);
    assert!(
        (lo..=hi).contains(&(retry as i64)),
        "Retry-After {retry} is the time to New York midnight ({lo}..={hi})"
    );
    assert_eq!(up.count(), 2);
    let rec = gw.record().await;
    assert_eq!(rec.error_kind, Some("quota_exceeded"));
    assert_eq!(rec.limited.map(|l| l.reason), Some("budget"));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_restart_reads_the_periods_spend_back_from_the_store() {
    if std::env::var("TEST_STORE").as_deref() == Ok("postgres") {
        // Each start gets a fresh PostgreSQL database: nothing to read back.
        return;
    }
    let up = FakeUpstream::always(Reply::Json(200, priced_answer(0.0006))).await;
    let keys = Keys::new();
    let config = || {
        let mut c = config_for(&up.url());
        let budget = |usd| LimitsConfig {
            budget_usd: Some(usd),
            per: Some(BudgetPeriod::Week),
            ..LimitsConfig::default()
        };
        c.auth
            .keys
            .push(keys.key("k-a", "alice", Some("red"), budget(0.001)));
        c.auth
            .keys
            .push(keys.key("k-b", "bob", Some("red"), LimitsConfig::default()));
        c.quotas.teams.insert("red".into(), budget(0.0015));
        c
    };
    let mut gw = TestGateway::start(config()).await;
    for key in ["k-a", "k-a", "k-b"] {
        assert_eq!(call(&gw, Some(key), CHAT_BODY).await.status(), 200);
        gw.record().await;
    }
    let dir = gw.stop_keeping_store().await;
    let gw = TestGateway::start_in(config(), dir).await;
    assert_429(
        call(&gw, Some("k-a"), CHAT_BODY).await,
        "quota_exceeded",
        "insufficient_quota",
        "insufficient_quota",
        "Budget exceeded on this key: spent $0.0012 of $0.001 this week",
    )
    .await;
    assert_429(
        call(&gw, Some("k-b"), CHAT_BODY).await,
        "quota_exceeded",
        "insufficient_quota",
        "insufficient_quota",
        "Budget exceeded on this team: spent $0.0018 of $0.0015 this week",
    )
    .await;
    assert_eq!(
        up.count(),
        3,
        "nothing reached the upstream after the restart"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_budget_is_charged_from_the_price_table_when_the_upstream_names_no_cost() {
    // The answer names no cost: the checked-in price table prices it.
    let prices = gatehouse::llm::prices::Prices::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/prices.yaml"
    )))
    .expect("prices");
    let each = prices
        .cost("openai/gpt-4o-mini", Some(10), Some(2), None)
        .expect("gpt-4o-mini is priced");
    let up = FakeUpstream::always(Reply::Json(200, answer_costing(None))).await;
    let keys = Keys::new();
    let mut c = config_for(&up.url());
    let budget = LimitsConfig {
        // Room for a second request, not for a third.
        budget_usd: Some(each * 1.5),
        per: Some(BudgetPeriod::Month),
        ..LimitsConfig::default()
    };
    c.auth
        .keys
        .push(keys.key("k-priced", "alice", None, budget));
    let mut gw = TestGateway::start(c).await;
    for _ in 0..2 {
        assert_eq!(call(&gw, Some("k-priced"), CHAT_BODY).await.status(), 200);
        assert_eq!(
            gw.record().await.cost,
            Some(each),
            "the record's cost is the budget's"
        );
    }
    assert_429(
        call(&gw, Some("k-priced"), CHAT_BODY).await,
        "quota_exceeded",
        "insufficient_quota",
        "insufficient_quota",
        "Budget exceeded on this key: spent $",
    )
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_model_outside_the_keys_list_is_refused_with_403() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let keys = Keys::new();
    let mut c = config_for(&up.url());
    let mut k = keys.key("k-models", "alice", None, LimitsConfig::default());
    k.models = vec!["qwendeepseek".into(), "openai/gpt-4o-mini".into()];
    c.auth.keys.push(k);
    let mut gw = TestGateway::start(c).await;
    let ok = r#"{"model":"qwendeepseek","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(call(&gw, Some("k-models"), ok).await.status(), 200);
    assert_eq!(call(&gw, Some("k-models"), CHAT_BODY).await.status(), 200);
    gw.record().await;
    gw.record().await;
    let other =
        r#"{"model":"anthropic/claude-3.5-haiku","messages":[{"role":"user","content":"hi"}]}"#;
    let rsp = call(&gw, Some("k-models"), other).await;
    assert_eq!(rsp.status(), 403);
    assert_eq!(header(&rsp, "x-gatehouse-error"), Some("model_not_allowed"));
    let body: Value = rsp.json().await.expect("json");
    assert_eq!(
        body,
        json!({"error": {
            "message": "the model \"anthropic/claude-3.5-haiku\" is not allowed for this key",
            "type": "permission_error", "param": null, "code": "model_not_allowed"
        }})
    );
    assert_eq!(
        up.count(),
        2,
        "the refused model never reached the upstream"
    );
    let rec = gw.record().await;
    assert_eq!((rec.status, rec.outcome), (403, Outcome::Rejected));
    gw.shutdown().await;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Where a table row puts its limits.
#[derive(Clone, Copy, Debug)]
enum At {
    Key,
    User,
    Team,
    Model,
    Global,
}

/// Every kind of limit at every scope trips at exactly its figure: `allowed` requests pass,
/// the next is refused by that scope for that reason. Answers cost $0.0006 and use 12 tokens;
/// CHAT_BODY's prompt is estimated at 5, so 20 tokens admit 0+5 and 12+5, not 24+5.
#[tokio::test]
async fn every_kind_of_limit_trips_at_its_figure_at_every_scope() {
    let kinds: [(&str, LimitsConfig, usize); 6] = [
        ("requests", rpm(2), 2),
        (
            "requests",
            LimitsConfig {
                requests_per_day: Some(2),
                ..LimitsConfig::default()
            },
            2,
        ),
        (
            "tokens",
            LimitsConfig {
                tokens_per_minute: Some(20),
                ..LimitsConfig::default()
            },
            2,
        ),
        (
            "tokens",
            LimitsConfig {
                tokens_per_day: Some(20),
                ..LimitsConfig::default()
            },
            2,
        ),
        (
            "budget",
            LimitsConfig {
                budget_usd: Some(0.001),
                per: Some(BudgetPeriod::Day),
                ..LimitsConfig::default()
            },
            2,
        ),
        (
            "concurrent",
            LimitsConfig {
                concurrent: Some(1),
                ..LimitsConfig::default()
            },
            1,
        ),
    ];
    let gate = Arc::new(Semaphore::new(0));
    let events = chat_stream_events(true);
    let g = gate.clone();
    let chunks: Vec<bytes::Bytes> = events
        .iter()
        .map(|e| bytes::Bytes::from(e.clone()))
        .collect();
    let up = FakeUpstream::start(move |_, req| {
        if req.body.windows(13).any(|w| w == b"\"stream\":true") {
            Reply::Stream {
                chunks: chunks.clone(),
                gate: Some(g.clone()),
                reset_after: None,
            }
        } else {
            Reply::Json(200, priced_answer(0.0006))
        }
    })
    .await;
    let keys = Keys::new();
    let stream_body = r#"{"model":"openai/gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    for at in [At::Key, At::User, At::Team, At::Model, At::Global] {
        for (reason, limits, allowed) in &kinds {
            let row = format!("{at:?} {limits:?}");
            let mut c = config_for(&up.url());
            let mut key = keys.key("k-table", "alice", Some("red"), LimitsConfig::default());
            match at {
                At::Key => key.limits = limits.clone(),
                At::User => c.quotas.users.default = limits.clone(),
                At::Team => {
                    c.quotas.teams.insert("red".into(), limits.clone());
                }
                At::Model => {
                    c.quotas
                        .models
                        .insert("openai/gpt-4o-mini".into(), limits.clone());
                }
                At::Global => c.quotas.global = limits.clone(),
            }
            c.auth.keys.push(key);
            let mut gw = TestGateway::start(c).await;
            fresh_minute(MARGIN).await;
            let held = if *reason == "concurrent" {
                let rsp = call(&gw, Some("k-table"), stream_body).await;
                assert_eq!(rsp.status(), 200, "{row}: the held stream");
                Some(rsp)
            } else {
                for i in 0..*allowed {
                    let rsp = call(&gw, Some("k-table"), CHAT_BODY).await;
                    assert_eq!(rsp.status(), 200, "{row}: request {i} of {allowed}");
                    rsp.bytes().await.expect("body");
                }
                None
            };
            let refused = call(&gw, Some("k-table"), CHAT_BODY).await;
            assert_eq!(
                refused.status(),
                429,
                "{row}: request {} of {allowed}",
                allowed + 1
            );
            refused.bytes().await.expect("body");
            if let Some(h) = held {
                gate.add_permits(events.len());
                h.text().await.expect("the held stream ends");
            }
            let scope = format!("{at:?}").to_lowercase();
            let limited = loop {
                let rec = gw.record().await;
                if rec.status == 429 {
                    break rec.limited;
                }
            };
            assert_eq!(
                limited.map(|l| (l.scope.to_owned(), l.reason)),
                Some((scope, *reason)),
                "{row}"
            );
            gw.shutdown().await;
        }
    }
}

/// A reload keeps the counts of a key that is still configured and applies its new figure.
#[tokio::test]
async fn a_reload_keeps_counting_with_the_new_figure() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let keys = Keys::new();
    let key_file = keys
        .key("k-reload", "alice", None, LimitsConfig::default())
        .key_file;
    let path = keys.0.path().join("gateway.yaml");
    let yaml = |per_day: u64| {
        format!(
            "proxy:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nupstreams:\n  fake:\n    base_url: {}\nmodels:\n  default_upstream: fake\nauth:\n  keys:\n    - key_file: {}\n      user: alice\n      limits:\n        requests_per_day: {per_day}\n",
            up.url(),
            key_file.as_ref().expect("a key file").display()
        )
    };
    std::fs::write(&path, yaml(2)).expect("write");
    let gw = TestGateway::start(gatehouse::config::load(Some(&path)).expect("loads")).await;
    let remaining = |rsp: reqwest::Response| {
        assert_eq!(rsp.status(), 200);
        header(&rsp, "x-ratelimit-remaining-requests").map(str::to_owned)
    };
    assert_eq!(
        remaining(call(&gw, Some("k-reload"), CHAT_BODY).await).as_deref(),
        Some("1")
    );
    std::fs::write(&path, yaml(3)).expect("write");
    let app = gw.app.as_ref().expect("app");
    app.reload(Some(&path)).expect("reloads");
    for left in ["1", "0"] {
        let rsp = call(&gw, Some("k-reload"), CHAT_BODY).await;
        assert_eq!(
            remaining(rsp).as_deref(),
            Some(left),
            "3 a day, 1 used before the reload"
        );
    }
    assert_eq!(call(&gw, Some("k-reload"), CHAT_BODY).await.status(), 429);
    gw.shutdown().await;
}

/// The seed's `POST /generate` is inference too: the same allow-list and limits apply.
#[tokio::test]
async fn generate_is_limited_like_chat() {
    let up = FakeUpstream::always(Reply::Json(200, CHAT_ANSWER.into())).await;
    let keys = Keys::new();
    let mut c = config_for(&up.url());
    let mut k = keys.key(
        "k-gen",
        "alice",
        None,
        LimitsConfig {
            requests_per_day: Some(1),
            ..LimitsConfig::default()
        },
    );
    k.models = vec!["qwendeepseek".into()];
    c.auth.keys.push(k);
    let gw = TestGateway::start(c).await;
    let generate = |model: &str| {
        client()
            .post(format!("{}/generate", gw.url))
            .header("authorization", "Bearer k-gen")
            .body(format!(
                r#"{{"model_name":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#
            ))
            .send()
    };
    let rsp = generate("qwendeepseek").await.expect("rsp");
    assert_eq!(rsp.status(), 200);
    assert_eq!(header(&rsp, "x-ratelimit-remaining-requests"), Some("0"));
    let rsp = generate("openai/gpt-4o-mini").await.expect("rsp");
    assert_eq!(rsp.status(), 403);
    assert_eq!(header(&rsp, "x-gatehouse-error"), Some("model_not_allowed"));
    let rsp = generate("qwendeepseek").await.expect("rsp");
    assert_eq!(rsp.status(), 429);
    assert_eq!(header(&rsp, "x-gatehouse-error"), Some("rate_limited"));
    assert_eq!(up.count(), 1);
    gw.shutdown().await;
}
