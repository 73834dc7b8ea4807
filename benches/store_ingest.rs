//! Question: how many records per second does the store writer sustain on this machine, end to
//! end (channel → batching → one transaction per batch with rows, matches and rollups)?
//! Target: ≥ 20,000 records/s.
//!
//! `cargo bench --bench store_ingest` (plain harness; prints each run and the median). With
//! `TEST_POSTGRES_URL` set (a server and a role that may create databases) it measures the
//! PostgreSQL backend too, a fresh database per run.

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use gatehouse::config::StoreConfig;
use gatehouse::detect::{Action, Category, Match, RiskLevel, Verdict};
use gatehouse::event::{Exchange, Outcome, Usage};
use gatehouse::store::{run_writer, Store, WriterConfig};

#[path = "../tests/support/pg.rs"]
mod pg;

const RECORDS: usize = 200_000;
const RUNS: usize = 3;

fn exchange(i: usize, v: &Arc<Verdict>) -> Arc<Exchange> {
    let mut ex = Exchange::new(
        format!("0190f5b4-7c1e-7000-8000-{i:012}"),
        "POST",
        "/v1/chat/completions",
    );
    ex.started_at = UNIX_EPOCH + Duration::from_millis(1_767_571_200_000 + i as u64 * 5);
    ex.model = Some(
        [
            "openai/gpt-4o-mini",
            "anthropic/claude-sonnet-4",
            "openai/gpt-4o",
        ][i % 3]
            .into(),
    );
    ex.upstream_model = ex.model.clone();
    ex.user = Some(format!("user-{}", i % 500));
    ex.status = 200;
    ex.outcome = if i.is_multiple_of(50) {
        Outcome::UpstreamError
    } else {
        Outcome::Ok
    };
    ex.latency = Duration::from_millis(200 + (i % 900) as u64);
    ex.usage = Usage {
        prompt_tokens: Some(700),
        completion_tokens: Some(300),
        ..Usage::default()
    };
    ex.cost = Some(0.0004);
    if i.is_multiple_of(100) {
        ex.verdict = Some(v.clone());
    }
    Arc::new(ex)
}

fn verdict() -> Arc<Verdict> {
    Arc::new(Verdict {
        level: RiskLevel::Medium,
        score: 0.5,
        action: Action::Flag,
        blocked: false,
        shadow: false,
        escalated: false,
        categories: vec![Category::PromptInjection],
        matches: vec![Match {
            category: Category::PromptInjection,
            rule: Arc::from("ignore_previous"),
            weight: 0.5,
            segment: 0,
            span: (0, 20),
            snippet: "ignore previous instructions".into(),
        }],
        scan_us: 30,
        learned_score: None,
    })
}

async fn run_once(postgres: Option<&str>) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = match postgres {
        Some(server) => Store::connect(&pg::fresh_postgres_db(server).await).await,
        None => Store::open(&dir.path().join("bench.db")).await,
    }
    .expect("open");
    let cfg = StoreConfig::default();
    let v = verdict();
    let records: Vec<Arc<Exchange>> = (0..RECORDS).map(|i| exchange(i, &v)).collect();
    let (tx, rx) = tokio::sync::mpsc::channel(cfg.queue);
    let started = Instant::now();
    let writer = tokio::spawn(run_writer(
        store.clone(),
        rx,
        WriterConfig::from_config(&cfg),
    ));
    for ex in records {
        tx.send(ex).await.expect("writer alive");
    }
    drop(tx);
    let summary = writer.await.expect("writer");
    assert_eq!(summary.written as usize, RECORDS);
    RECORDS as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let server = std::env::var("TEST_POSTGRES_URL").ok();
    let mut backends = vec![("sqlite", None)];
    if let Some(s) = server.as_deref() {
        backends.push(("postgres", Some(s)));
    }
    for (name, url) in backends {
        let mut rates = Vec::new();
        for run in 1..=RUNS {
            let r = run_once(url).await;
            println!("{name} run {run}: {r:.0} records/s ({RECORDS} records, batch 1024)");
            rates.push(r);
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "store_ingest {name} median: {:.0} records/s",
            rates[RUNS / 2]
        );
    }
}
