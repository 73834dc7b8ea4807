//! Seeing limits: `GET /api/quotas` answers the exact figures the counters hold after traffic
//! through the proxy, and `/metrics` shows budget gauges for teams, models, the gateway and
//! labelled keys only (never a key's secret nor an end user's id).
//!
//! Minute windows follow the clock: the test first makes sure its minute has at least
//! `MARGIN` left, so a boundary cannot fall inside it.

use std::time::Duration;

use gatehouse::config::{BudgetPeriod, EndUsers, KeyConfig, LimitsConfig};
use serde_json::{json, Value};

use crate::support::*;

const MARGIN: Duration = Duration::from_secs(10);
const ADMIN_TOKEN: &str = "admin-token-for-quota-tests";
/// The labelled key's secret and the end user's id, which must never be labels.
const SECRET_A: &str = "sk-alice-7f3e9d2c";
const SECRET_B: &str = "sk-backend-51aa0c";
const END_USER: &str = "carol@example.com";

/// An answer using 10 + 2 tokens and costing $0.0004 (OpenRouter's `usage.cost`).
fn answer() -> String {
    json!({
        "id": "gen-1", "object": "chat.completion", "model": "openai/gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Blue"}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12, "cost": 0.0004}
    })
    .to_string()
}

fn budget(usd: f64) -> LimitsConfig {
    LimitsConfig {
        budget_usd: Some(usd),
        per: Some(BudgetPeriod::Day),
        ..LimitsConfig::default()
    }
}

/// A gateway with limits at every scope: alice's key (labelled, $0.001 a day, 10 rpm, 100
/// rpd, 1000 tpm, 4 at once), a backend key trusting its end users (a $0.5 budget, unlabelled),
/// team `red` (20 rpm, $0.01 a day), the model ($1 a day), the gateway (1000 rpd) and every end
/// user (50 rpd, $0.1 a day).
async fn gateway(up: &FakeUpstream, keys: &tempfile::TempDir) -> TestGateway {
    let key = |secret: &str, user: &str, limits: LimitsConfig| {
        let path = keys.path().join(user);
        std::fs::write(&path, secret).expect("key file");
        KeyConfig {
            key_file: Some(path),
            user: user.into(),
            team: Some("red".into()),
            limits,
            ..KeyConfig::default()
        }
    };
    let mut c = config_for(&up.url());
    c.admin.token = Some(gatehouse::config::Secret::new(ADMIN_TOKEN));
    let alice = LimitsConfig {
        requests_per_minute: Some(10),
        requests_per_day: Some(100),
        tokens_per_minute: Some(1000),
        concurrent: Some(4),
        label: true,
        ..budget(0.001)
    };
    c.auth.keys.push(key(SECRET_A, "alice", alice));
    let mut backend = key(SECRET_B, "backend", budget(0.5));
    backend.end_users = EndUsers::Trusted;
    c.auth.keys.push(backend);
    c.quotas.teams.insert(
        "red".into(),
        LimitsConfig {
            requests_per_minute: Some(20),
            ..budget(0.01)
        },
    );
    c.quotas
        .models
        .insert("openai/gpt-4o-mini".into(), budget(1.0));
    c.quotas.global.requests_per_day = Some(1000);
    c.quotas.users.default = LimitsConfig {
        requests_per_day: Some(50),
        ..budget(0.1)
    };
    TestGateway::start(c).await
}

async fn call(gw: &TestGateway, key: &str, end_user: Option<&str>) -> u16 {
    let mut req = client()
        .post(format!("{}/v1/chat/completions", gw.url))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(CHAT_BODY);
    if let Some(u) = end_user {
        req = req.header("x-gatehouse-user", u);
    }
    let rsp = req.send().await.expect("a response");
    let status = rsp.status().as_u16();
    rsp.bytes().await.expect("body");
    status
}

/// Alice: 3 requests ($0.0012, past her $0.001), then one refused by her budget; the backend
/// for `END_USER`: 2 requests. Waits for each admitted request's record (its settlement).
async fn traffic(gw: &mut TestGateway) {
    for _ in 0..3 {
        assert_eq!(call(gw, SECRET_A, None).await, 200);
        gw.record().await;
    }
    assert_eq!(
        call(gw, SECRET_A, None).await,
        429,
        "alice's budget is spent"
    );
    gw.record().await;
    for _ in 0..2 {
        assert_eq!(call(gw, SECRET_B, Some(END_USER)).await, 200);
        gw.record().await;
    }
}

async fn admin_get(gw: &TestGateway, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = client().get(format!("{}{path}", gw.admin_url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("an admin response")
}

fn scope<'a>(view: &'a Value, kind: &str, name: &str) -> &'a Value {
    view["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .find(|s| s["scope"] == kind && s["name"] == name)
        .unwrap_or_else(|| panic!("scope {kind} {name} in {view:#}"))
}

fn rate(limit: u64, used: u64) -> Value {
    json!({"limit": limit, "used": used, "remaining": limit - used})
}

/// `rate` without `reset_secs`, which follows the clock (checked for range separately).
fn without_reset(v: &Value) -> Value {
    let mut v = v.clone();
    let reset = v
        .as_object_mut()
        .and_then(|o| o.remove("reset_secs"))
        .and_then(|r| r.as_u64())
        .expect("reset_secs");
    assert!((1..=86_400).contains(&reset), "reset_secs {reset}");
    v
}

#[tokio::test]
async fn the_api_answers_the_counters_exact_figures() {
    let up = FakeUpstream::always(Reply::Json(200, answer())).await;
    let keys = tempfile::tempdir().expect("tempdir");
    let mut gw = gateway(&up, &keys).await;
    fresh_minute(MARGIN).await;
    traffic(&mut gw).await;

    let rsp = admin_get(&gw, "/api/quotas", None).await;
    assert_eq!(rsp.status(), 401, "the admin token is required");
    let rsp = admin_get(&gw, "/api/quotas?users=101", Some(ADMIN_TOKEN)).await;
    assert_eq!(rsp.status(), 400);
    let err: Value = rsp.json().await.expect("json error");
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("users")),
        "the message names the parameter: {err}"
    );

    let rsp = admin_get(&gw, "/api/quotas", Some(ADMIN_TOKEN)).await;
    assert_eq!(rsp.status(), 200);
    let text = rsp.text().await.expect("body");
    for secret in [SECRET_A, SECRET_B, ADMIN_TOKEN] {
        assert!(!text.contains(secret), "a secret in the answer: {text}");
    }
    let view: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(view["time_zone"], "UTC");

    let alice = scope(&view, "key", "alice");
    assert_eq!(
        without_reset(&alice["requests_per_minute"]),
        rate(10, 3),
        "the refused request took nothing"
    );
    assert_eq!(without_reset(&alice["requests_per_day"]), rate(100, 3));
    assert_eq!(
        without_reset(&alice["tokens_per_minute"]),
        rate(1000, 36),
        "3 answers of 12 tokens each, the estimates corrected"
    );
    assert_eq!(alice["tokens_per_day"], Value::Null, "no such limit");
    assert_eq!(alice["concurrent"], json!({"limit": 4, "in_flight": 0}));
    assert_eq!(alice["rejected"], 1);
    let b = &alice["budget"];
    assert_eq!(b["budget_usd"], 0.001);
    assert_eq!(b["spent_usd"], 0.0012, "three answers at $0.0004");
    assert_eq!(b["remaining_usd"], 0.0);
    assert_eq!(b["used_ratio"], 1.2);
    assert_eq!(b["period"], "day");
    let end = b["period_end_ms"].as_i64().expect("period_end_ms");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    assert_eq!(
        end,
        (now / 86_400_000 + 1) * 86_400_000,
        "the next UTC midnight"
    );
    let shown: jiff::Timestamp = b["period_end"]
        .as_str()
        .expect("period_end")
        .parse()
        .expect("RFC 3339");
    assert_eq!(shown.as_millisecond(), end);

    let backend = scope(&view, "key", "backend");
    assert_eq!(backend["budget"]["spent_usd"], 0.0008);
    assert_eq!(backend["rejected"], 0);
    let red = scope(&view, "team", "red");
    assert_eq!(without_reset(&red["requests_per_minute"]), rate(20, 5));
    assert_eq!(red["budget"]["spent_usd"], 0.002);
    let model = scope(&view, "model", "openai/gpt-4o-mini");
    assert_eq!(model["budget"]["spent_usd"], 0.002);
    assert_eq!(model["budget"]["remaining_usd"], 0.998);
    let global = scope(&view, "global", "global");
    assert_eq!(without_reset(&global["requests_per_day"]), rate(1000, 5));
    let order: Vec<&str> = view["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .map(|s| s["scope"].as_str().expect("scope"))
        .collect();
    assert_eq!(order, ["key", "key", "team", "model", "global"]);

    let users = view["users"].as_array().expect("users");
    let names: Vec<&str> = users
        .iter()
        .map(|u| u["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["alice", END_USER], "the most used first");
    assert_eq!(without_reset(&users[0]["requests_per_day"]), rate(50, 3));
    assert_eq!(without_reset(&users[1]["requests_per_day"]), rate(50, 2));
    assert_eq!(view["users_tracked"], 2);
    let one: Value = admin_get(&gw, "/api/quotas?users=1", Some(ADMIN_TOKEN))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        one["users"].as_array().map(Vec::len),
        Some(1),
        "bounded by `users`"
    );

    assert_eq!(
        view["rejected"],
        json!([{"scope": "key", "reason": "budget", "count": 1}])
    );
    let doc: Value = admin_get(&gw, "/openapi.json", Some(ADMIN_TOKEN))
        .await
        .json()
        .await
        .expect("openapi");
    assert!(
        doc["paths"]["/api/quotas"]["get"].is_object(),
        "documented in /openapi.json"
    );
    assert!(doc["components"]["schemas"]["QuotaView"].is_object());
    gw.shutdown().await;
}

/// The value of the sample `name{labels}` in a scrape, if present.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
}

#[tokio::test]
async fn metrics_show_labelled_budgets_and_never_users_or_secrets() {
    let up = FakeUpstream::always(Reply::Json(200, answer())).await;
    let keys = tempfile::tempdir().expect("tempdir");
    let mut gw = gateway(&up, &keys).await;
    fresh_minute(MARGIN).await;
    traffic(&mut gw).await;
    let rsp = admin_get(&gw, "/metrics", Some(ADMIN_TOKEN)).await;
    assert_eq!(rsp.status(), 200);
    let scrape = rsp.text().await.expect("scrape");
    let rows = [
        ("key", "alice", 0.0, 1.2),
        ("team", "red", 0.008, 0.2),
        ("model", "openai/gpt-4o-mini", 0.998, 0.002),
    ];
    for (scope, name, remaining, ratio) in rows {
        let labels = format!("{{scope=\"{scope}\",name=\"{name}\"}}");
        let got = sample(&scrape, &format!("gatehouse_budget_remaining_usd{labels}"));
        assert_eq!(got, Some(remaining), "remaining of {scope} {name}");
        let got = sample(&scrape, &format!("gatehouse_budget_used_ratio{labels}"));
        assert_eq!(got, Some(ratio), "ratio of {scope} {name}");
    }
    let budget_lines: Vec<&str> = scrape
        .lines()
        .filter(|l| l.starts_with("gatehouse_budget_"))
        .collect();
    assert_eq!(
        budget_lines.len(),
        6,
        "only the labelled key, the team and the model have gauges (the unlabelled key, the end \
         users and the budget-less gateway none): {budget_lines:#?}"
    );
    for hidden in [SECRET_A, SECRET_B, END_USER, "backend"] {
        assert!(
            !scrape.contains(hidden),
            "{hidden:?} must never be in a scrape"
        );
    }
    assert!(
        scrape.contains("# TYPE gatehouse_budget_used_ratio gauge"),
        "described as a gauge"
    );
    gw.shutdown().await;
}

/// The analysis agent's cost advice refers to the budgets: alice's spent key budget is named
/// with its figures and the setting to change, and the report lists every budget it saw.
#[tokio::test]
async fn a_report_names_a_spent_budget_and_lists_the_budgets() {
    let up = FakeUpstream::always(Reply::Json(200, answer())).await;
    let keys = tempfile::tempdir().expect("tempdir");
    let mut gw = gateway(&up, &keys).await;
    fresh_minute(MARGIN).await;
    traffic(&mut gw).await;

    let rsp = client()
        .post(format!(
            "{}/api/reports/generate?period=daily",
            gw.admin_url
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("generate");
    assert_eq!(rsp.status(), 201);
    let report: Value = rsp.json().await.expect("report json");
    let budgets = report["figures"]["budgets"].as_array().expect("budgets");
    let named: Vec<(&str, &str)> = budgets
        .iter()
        .map(|b| {
            (
                b["scope"].as_str().expect("a string"),
                b["name"].as_str().expect("a string"),
            )
        })
        .collect();
    assert_eq!(
        named,
        [
            ("key", "alice"),
            ("team", "red"),
            ("model", "openai/gpt-4o-mini"),
            ("key", "backend"),
        ],
        "most used first; the gateway has no budget and carol's $0.0008 of $0.1 is under half"
    );
    assert_eq!(budgets[0]["spent_usd"], 0.0012);
    assert_eq!(budgets[0]["per"], "day");
    let recs = report["recommendations"]
        .as_array()
        .expect("recommendations");
    // Budgets past 80%. A projection ("on course to run out") depends on the hour the test runs:
    // from 10% of the day on, team red's $0.002 of $0.01 projects past its budget until about
    // 04:48 UTC, so it is left out here (the rule has its own unit tests).
    let spent: Vec<&Value> = recs
        .iter()
        .filter(|r| {
            let title = r["title"].as_str().unwrap_or_default();
            title.contains("budget") && !title.contains("on course to run out")
        })
        .collect();
    assert_eq!(spent.len(), 1, "only alice's budget is past 80%: {recs:#?}");
    assert_eq!(spent[0]["group"], "cost");
    assert_eq!(spent[0]["priority"], "high");
    assert!(
        spent[0]["title"]
            .as_str()
            .expect("a string")
            .starts_with("The budget of the key of alice is spent"),
        "{}",
        spent[0]["title"]
    );
    assert!(
        spent[0]["evidence"][0]
            .as_str()
            .expect("a string")
            .starts_with("$0.0012 spent of $0.001 per day (120.0%)"),
        "{}",
        spent[0]["evidence"][0]
    );
    let id = report["id"].as_str().expect("id");
    let md = admin_get(
        &gw,
        &format!("/api/reports/{id}?format=md"),
        Some(ADMIN_TOKEN),
    )
    .await
    .text()
    .await
    .expect("markdown");
    assert!(
        md.contains("- budget now: key alice: $0.0012 of $0.001 per day (120.0%)"),
        "{md}"
    );
}
