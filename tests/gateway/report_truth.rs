//! What a report tells an operator must be true: a threshold change only with the replay that
//! shows its effect (and auto-tune never loosens without it), threat trends and offenders from
//! medium-risk requests up, and latency and error-rate advice against the alert thresholds
//! even when nothing rose. The `Reporter` runs on a temp store filled with records; the
//! applied thresholds are caught by the closure `app` would pass in.

use std::sync::{Arc, Mutex};

use gatehouse::config::{CaptureConfig, Config, ThresholdsConfig};
use gatehouse::detect::{Action, Category, Match, RiskLevel, Verdict};
use gatehouse::event::Exchange;
use gatehouse::report::{ChatError, Period, Report, Reporter, Trigger};
use gatehouse::store::Store;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// 2026-01-05T00:00:00Z, a Monday.
const MONDAY_MS: i64 = 1_767_571_200_000;

async fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("report.db"))
        .await
        .expect("open store");
    (dir, store)
}

/// A finished chat request of `user` to `model` that took `latency_ms`, with its tokens and
/// cost (a request with no cost counts as one whose cost is unknown).
fn exchange(id: &str, ts_ms: i64, model: &str, user: Option<&str>, latency_ms: u64) -> Exchange {
    let mut ex = Exchange::new(id.to_owned(), "POST", "/v1/chat/completions");
    ex.started_at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ts_ms as u64);
    ex.endpoint = gatehouse::event::Endpoint::ChatCompletions;
    ex.model = Some(model.to_owned());
    ex.upstream_model = Some(model.to_owned());
    ex.model_known = true;
    ex.upstream = Some(Arc::from("fake"));
    ex.user = user.map(str::to_owned);
    ex.status = 200;
    ex.outcome = gatehouse::event::Outcome::Ok;
    ex.attempts = 1;
    ex.latency = std::time::Duration::from_millis(latency_ms);
    ex.usage.prompt_tokens = Some(100);
    ex.usage.completion_tokens = Some(10);
    ex.cost = Some(0.0001);
    ex
}

/// A verdict at `level` with `score` and one match of `rule` (blocked at critical).
fn verdict(level: RiskLevel, score: f32, rule: &str) -> Verdict {
    let blocked = level == RiskLevel::Critical;
    let matches = if level == RiskLevel::None {
        vec![]
    } else {
        vec![Match {
            category: Category::PromptInjection,
            rule: Arc::from(rule),
            weight: 0.5,
            segment: 0,
            span: (0, 10),
            snippet: "0123456789".into(),
        }]
    };
    Verdict {
        level,
        score,
        action: if blocked { Action::Block } else { Action::Flag },
        blocked,
        shadow: false,
        escalated: false,
        categories: vec![Category::PromptInjection],
        matches,
        scan_us: 10,
        learned_score: rule.starts_with("learned.").then_some(0.3),
    }
}

fn scanned(id: &str, ts_ms: i64, user: &str, level: RiskLevel, score: f32, rule: &str) -> Exchange {
    let mut ex = exchange(id, ts_ms, "gpt-4o-mini", Some(user), 150);
    ex.verdict = Some(Arc::new(verdict(level, score, rule)));
    ex
}

async fn fill(store: &Store, records: Vec<Exchange>) {
    let records: Vec<_> = records.into_iter().map(Arc::new).collect();
    store
        .insert_batch(&records, &CaptureConfig::default())
        .await
        .expect("write records");
}

/// A reporter on `store` with the rule engine, `config`, and the thresholds it applies caught.
fn reporter(store: &Store, config: Config) -> (Reporter, Arc<Mutex<Vec<ThresholdsConfig>>>) {
    let applied = Arc::new(Mutex::new(Vec::new()));
    let caught = applied.clone();
    let config = Arc::new(config);
    let r = Reporter::new(
        store.clone(),
        Arc::new(|_| Box::pin(async { Err(ChatError::Timeout) })),
        Arc::new(move || config.clone()),
        Arc::new(move |t| {
            caught.lock().expect("lock").push(t);
            Ok(())
        }),
    );
    (r, applied)
}

/// The daily report of Monday 2026-01-05 over `store`, default config; closes the store.
async fn daily_report(store: Store) -> Report {
    let (r, _) = reporter(&store, Config::default());
    let date = "2026-01-05".parse().expect("a date");
    let report = r
        .generate(Period::Daily, Some(date), Trigger::Manual)
        .await
        .expect("report");
    store.close().await;
    report
}

/// One hour into yesterday (UTC): inside the period a scheduled daily report covers.
fn yesterday_ms() -> i64 {
    let now = gatehouse::analytics::unix_ms(std::time::SystemTime::now());
    now - now.rem_euclid(DAY_MS) - DAY_MS + HOUR_MS
}

/// 20 scanned requests yesterday: 15 clean and 5 at `scores` (blocked when ≥ 20).
fn scored_day(scores: [f32; 5]) -> Vec<Exchange> {
    let t = yesterday_ms();
    let mut v: Vec<Exchange> = (0..15)
        .map(|i| scanned(&format!("c{i}"), t + i, "alice", RiskLevel::None, 0.0, ""))
        .collect();
    for (i, s) in scores.into_iter().enumerate() {
        let level = if s >= 20.0 {
            RiskLevel::Critical
        } else {
            RiskLevel::High
        };
        let id = format!("s{i}");
        v.push(scanned(
            &id,
            t + 100 + i as i64,
            "mallory",
            level,
            s,
            "injection.x",
        ));
    }
    v
}

async fn scheduled(scores: [f32; 5]) -> (Report, Vec<ThresholdsConfig>) {
    let (_dir, store) = temp_store().await;
    fill(&store, scored_day(scores)).await;
    let mut c = Config::default();
    c.report.auto_tune = true;
    let (r, applied) = reporter(&store, c);
    let report = r
        .generate(Period::Daily, None, Trigger::Schedule)
        .await
        .expect("report");
    store.close().await;
    let applied = applied.lock().expect("lock").clone();
    (report, applied)
}

#[tokio::test]
async fn auto_tune_leaves_thresholds_alone_when_the_replay_shows_no_change() {
    // 25 % blocked, over the 5 % target, but every blocked score lies above 30, the highest
    // critical a proposal may reach: raising critical would let nothing more through.
    let (report, applied) = scheduled([40.0, 41.0, 45.0, 50.0, 60.0]).await;
    let f = &report.figures;
    assert_eq!(f.security.scanned, 20, "the fixture was read");
    assert!(
        f.threshold_proposal.is_none(),
        "no proposal without a replayed effect: {:?}",
        f.threshold_proposal
    );
    assert!(
        f.threshold_note
            .starts_with("no change proposed: 25.0% of 20 scanned requests")
            && f.threshold_note
                .contains("the replay shows no request would change"),
        "{}",
        f.threshold_note
    );
    assert!(
        !report
            .recommendations
            .iter()
            .any(|r| r.title.contains("thresholds")),
        "no threshold advice: {:?}",
        report.recommendations
    );
    assert_eq!(applied, vec![], "auto-tune must not loosen critical");
}

#[tokio::test]
async fn auto_tune_applies_a_proposal_whose_replay_shows_the_effect() {
    // 4 of 20 blocked (20 %); critical 23 leaves only the 30 (5 %).
    let (report, applied) = scheduled([20.0, 21.0, 22.0, 30.0, 5.0]).await;
    let p = report
        .figures
        .threshold_proposal
        .as_ref()
        .expect("a proposal the replay supports");
    assert_eq!(p.proposed.critical, 23.0);
    assert_eq!(p.effect.newly_unblocked, 3);
    assert!(
        p.reason
            .contains("3 fewer requests blocked, 5.0% of scanned requests blocked"),
        "the proposal carries its replay: {}",
        p.reason
    );
    let crit: Vec<f32> = applied.iter().map(|t| t.critical).collect();
    assert_eq!(crit, vec![23.0], "one step, within 25 % of 20");
}

#[tokio::test]
async fn low_risk_learned_matches_make_no_offender_and_no_rising_trend() {
    let (_dir, store) = temp_store().await;
    let t = MONDAY_MS + 9 * HOUR_MS;
    let mut records = Vec::new();
    for i in 0..6 {
        // A harmless prompt the learned stage gave a weak hunch about: one match, level low.
        let id = format!("b{i}");
        records.push(scanned(
            &id,
            t + i,
            "benign",
            RiskLevel::Low,
            4.0,
            "learned.prompt_injection",
        ));
        let id = format!("m{i}");
        records.push(scanned(
            &id,
            t + 100 + i,
            "mallory",
            RiskLevel::Medium,
            9.0,
            "injection.ignore",
        ));
    }
    fill(&store, records).await;
    let report = daily_report(store).await;

    let f = &report.figures;
    let offenders: Vec<&str> = f
        .security
        .top_offenders
        .iter()
        .map(|o| o.user.as_str())
        .collect();
    assert_eq!(
        offenders,
        vec!["mallory"],
        "low-risk matches make no offender"
    );
    let rising: Vec<&str> = f
        .threat_trends
        .by_user
        .iter()
        .filter(|t| t.rising)
        .map(|t| t.key.as_str())
        .collect();
    assert_eq!(rising, vec!["mallory"], "{:?}", f.threat_trends.by_user);
    assert!(
        f.threat_trends.by_user.iter().all(|t| t.key != "benign"),
        "benign has no threatening request: {:?}",
        f.threat_trends.by_user
    );
    let category = &f.threat_trends.by_category;
    assert_eq!(category.len(), 1, "{category:?}");
    assert_eq!(category[0].daily.last(), Some(&6), "mallory's six only");
    let titles: Vec<&str> = report
        .recommendations
        .iter()
        .map(|r| r.title.as_str())
        .collect();
    assert!(
        titles.contains(&"Threats rising: user mallory"),
        "{titles:?}"
    );
    assert!(
        report
            .recommendations
            .iter()
            .all(|r| !r.title.contains("benign") && !r.action.contains("benign")),
        "no advice against a benign user: {titles:?}"
    );
}

#[tokio::test]
async fn a_slow_model_is_named_against_the_alert_threshold_with_no_period_before() {
    let (_dir, store) = temp_store().await;
    let t = MONDAY_MS + 9 * HOUR_MS;
    let slow =
        (0..25).map(|i| exchange(&format!("s{i}"), t + i, "slow-model", Some("alice"), 6_450));
    let fast = (0..25).map(|i| exchange(&format!("f{i}"), t + i, "gpt-4o-mini", Some("bob"), 150));
    fill(&store, slow.chain(fast).collect()).await;
    let report = daily_report(store).await;

    assert_eq!(
        report.figures.previous_p95_latency, None,
        "no period before"
    );
    let rec = report
        .recommendations
        .iter()
        .find(|r| r.title == "p95 latency of slow-model is above the alert threshold")
        .unwrap_or_else(|| {
            panic!(
                "latency advice for slow-model: {:?}",
                report.recommendations
            )
        });
    let p95 = report
        .figures
        .models
        .iter()
        .find(|m| m.model == "slow-model")
        .expect("slow-model")
        .p95_latency;
    assert!((5.0..7.5).contains(&p95), "in the (5, 7.5] s bucket: {p95}");
    assert_eq!(
        rec.evidence[0],
        format!(
            "p95 {p95:.2} s over 25 requests of slow-model, above the 5.00 s alert threshold \
             (`alerts.thresholds.latency_secs`)"
        )
    );
    assert!(
        report
            .recommendations
            .iter()
            .all(|r| !r.title.contains("gpt-4o-mini")),
        "{:?}",
        report.recommendations
    );
}

#[tokio::test]
async fn auto_tune_does_not_loosen_by_a_clamped_step_the_replay_shows_no_effect_for() {
    // The proposal (critical 29) unblocks three requests, but one auto-tune step may move
    // critical 25 % at most: to 25, under every blocked score, so the step itself changes
    // nothing and would only loosen the guard.
    let (report, applied) = scheduled([26.0, 27.0, 28.0, 29.0, 5.0]).await;
    let p = report
        .figures
        .threshold_proposal
        .as_ref()
        .expect("the full proposal has a replayed effect");
    assert_eq!((p.proposed.critical, p.effect.newly_unblocked), (29.0, 3));
    assert_eq!(
        applied,
        vec![],
        "a step with no replayed effect is not applied"
    );
}

/// A report does not pass unknown cost off as $0: requests to a model with no price and no
/// upstream cost are counted in the figures, said in the text ("cost unknown for N
/// requests") and get a recommendation to price the model.
#[tokio::test]
async fn unknown_cost_is_said_in_the_report() {
    let (_dir, store) = temp_store().await;
    let t = MONDAY_MS + 9 * HOUR_MS;
    let unpriced = (0..3).map(|i| {
        let mut ex = exchange(&format!("u{i}"), t + i, "acme/unpriced-1", None, 150);
        ex.cost = None;
        ex
    });
    let priced = (0..5).map(|i| {
        let mut ex = exchange(&format!("p{i}"), t + i, "gpt-4o-mini", None, 150);
        ex.cost = Some(0.25);
        ex
    });
    fill(&store, unpriced.chain(priced).collect()).await;
    let report = daily_report(store).await;

    assert_eq!(report.figures.unpriced_requests, 3);
    assert!((report.figures.total_cost - 1.25).abs() < 1e-9);
    let text = gatehouse::report::render::markdown(&report);
    assert!(
        text.contains("$1.25 (cost unknown for 3 requests)"),
        "the cost figure says what it leaves out:\n{text}"
    );
    let line = text
        .lines()
        .find(|l| l.contains("acme/unpriced-1: 3 requests"))
        .unwrap_or_else(|| panic!("a line for the unpriced model:\n{text}"));
    assert!(
        line.ends_with("/request (cost unknown for 3 requests)"),
        "{line}"
    );
    assert!(
        report
            .recommendations
            .iter()
            .any(|r| r.title == "Cost of acme/unpriced-1 is unknown"),
        "{:?}",
        report.recommendations
    );
}

/// Time to first token is judged on the streamed requests read back from the store: a model
/// whose streams start slowly is named with its p95, its streamed count and the limit, and
/// one whose plain answers are slow but whose streams start fast is not.
#[tokio::test]
async fn a_slow_first_token_is_named_against_its_limit() {
    let (_dir, store) = temp_store().await;
    let t = MONDAY_MS + 9 * HOUR_MS;
    let stream = |id: String, model: &str, ttft_ms: u64| {
        let mut ex = exchange(&id, t, model, None, ttft_ms + 500);
        ex.stream = true;
        ex.ttft = Some(std::time::Duration::from_millis(ttft_ms));
        ex
    };
    let slow = (0..25).map(|i| stream(format!("s{i}"), "slow-start", 3_200));
    let fast = (0..25).map(|i| stream(format!("f{i}"), "quick-start", 300));
    // Plain answers: their TTFT is their whole body, not a stream's first token.
    let plain = (0..25).map(|i| {
        let mut ex = exchange(&format!("p{i}"), t, "quick-start", None, 4_000);
        ex.ttft = Some(std::time::Duration::from_millis(4_000));
        ex
    });
    fill(&store, slow.chain(fast).chain(plain).collect()).await;
    let report = daily_report(store).await;

    let figures = |name: &str| {
        report
            .figures
            .models
            .iter()
            .find(|m| m.model == name)
            .unwrap_or_else(|| panic!("{name} in the figures"))
            .clone()
    };
    let slow = figures("slow-start");
    assert_eq!(slow.streamed_requests, 25);
    let p95 = slow.p95_ttft.expect("a p95 TTFT for slow-start");
    assert!(
        (3.0..=3.2).contains(&p95),
        "in the (3, 4] s bucket, capped at 3.2: {p95}"
    );
    let quick = figures("quick-start");
    assert_eq!(quick.streamed_requests, 25, "plain answers are not counted");
    assert!(quick.p95_ttft.expect("quick-start p95") <= 0.3);

    let ttft: Vec<_> = report
        .recommendations
        .iter()
        .filter(|r| r.title.starts_with("Time to first token"))
        .collect();
    assert_eq!(ttft.len(), 1, "{:?}", report.recommendations);
    assert_eq!(
        ttft[0].evidence,
        [format!(
            "p95 time to first token {p95:.2} s over 25 streamed requests of slow-start, above \
             the 2.00 s limit (`report.rules.ttft_p95_secs`)"
        )]
    );
}
