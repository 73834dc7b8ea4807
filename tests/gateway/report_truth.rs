//! What a report tells an operator must be true: threat trends and offenders count
//! medium-risk requests and above. The `Reporter` runs on a temp store filled with records.

use std::sync::{Arc, Mutex};

use gatehouse::config::{CaptureConfig, Config, ThresholdsConfig};
use gatehouse::detect::{Action, Category, Match, RiskLevel, Verdict};
use gatehouse::event::Exchange;
use gatehouse::report::{ChatError, Period, Reporter, Trigger};
use gatehouse::store::Store;

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

/// A finished chat request of `user` to `model` that took `latency_ms`.
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
    let (r, _) = reporter(&store, Config::default());
    let date = "2026-01-05".parse().expect("a date");
    let report = r
        .generate(Period::Daily, Some(date), Trigger::Manual)
        .await
        .expect("report");
    store.close().await;

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
