//! Analytics figures against a hand-computed fixture with fixed times.
//!
//! Window: days=1 at Monday 2026-01-05 10:30Z → the 24 hours [Sun 11:00, Mon 11:00).
//! Records (latency bucket (100 ms, 150 ms] unless said):
//!   4 × alice,   gpt-4o-mini, Mon 09:10, ok
//!   1 × bob,     claude,      Mon 09:20, upstream error
//!   1 × bob,     claude,      Mon 10:05, ok, 2 s (bucket (1.5 s, 2 s])
//!   1 × mallory, gpt-4o-mini, Sun 23:00, blocked (high, prompt injection)
//!   1 × alice,   gpt-4o-mini, Sun 10:00 — outside the window
//! Each record: 100 + 50 tokens, $0.001.

#[path = "store_support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use gatehouse::analytics::{security_summary, usage_at, Live};
use gatehouse::config::CaptureConfig;
use gatehouse::detect::RiskLevel;
use support::*;

const MIN: i64 = 60_000;

fn fixture() -> Vec<Arc<gatehouse::event::Exchange>> {
    let mon9 = MONDAY_MS + 9 * HOUR_MS;
    let mut v = Vec::new();
    for i in 0..4 {
        v.push(exchange(
            &format!("a{i}"),
            mon9 + 10 * MIN,
            "gpt-4o-mini",
            Some("alice"),
            150,
        ));
    }
    v.push(failed(exchange(
        "b1",
        mon9 + 20 * MIN,
        "claude",
        Some("bob"),
        150,
    )));
    v.push(exchange(
        "b2",
        MONDAY_MS + 10 * HOUR_MS + 5 * MIN,
        "claude",
        Some("bob"),
        2_000,
    ));
    v.push(blocked(
        exchange(
            "m1",
            MONDAY_MS - HOUR_MS,
            "gpt-4o-mini",
            Some("mallory"),
            150,
        ),
        RiskLevel::High,
    ));
    v.push(exchange(
        "old",
        MONDAY_MS - 14 * HOUR_MS,
        "gpt-4o-mini",
        Some("alice"),
        150,
    ));
    v.into_iter().map(Arc::new).collect()
}

/// A fresh store on every backend, holding `batch`.
async fn stores_holding(batch: &[Arc<gatehouse::event::Exchange>]) -> Vec<TempStore> {
    let stores = temp_stores().await;
    for t in &stores {
        t.store
            .insert_batch(batch, &CaptureConfig::default())
            .await
            .unwrap_or_else(|e| panic!("{}: write: {e}", t.backend));
    }
    stores
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn usage_matches_the_hand_computed_fixture() {
    for t in stores_holding(&fixture()).await {
        let store = t.store;
        eprintln!("backend: {}", t.backend);
        let now = MONDAY_MS + 10 * HOUR_MS + 30 * MIN;
        let u = usage_at(&store, now, 1).await.expect("usage");
        let g = &u.general_metrics;
        assert_eq!(g.total_requests, 7);
        assert!(close(g.error_rate, 1.0 / 7.0), "{}", g.error_rate);
        assert_eq!(
            (g.unique_users, g.blocked_requests, g.total_tokens),
            (3, 1, 1050)
        );
        assert!(close(g.total_cost, 0.007), "{}", g.total_cost);
        assert!(close(g.avg_latency, 2.9 / 7.0), "{}", g.avg_latency);
        // Six in (0.10, 0.15], one in (1.5, 2]: p50 rank 3.5 → 0.1 + 3.5/6·0.05.
        assert!(
            close(g.p50_latency, 0.1 + 3.5 / 6.0 * 0.05),
            "{}",
            g.p50_latency
        );
        assert!(close(g.p95_latency, 1.5 + 0.65 * 0.5), "{}", g.p95_latency);
        assert!(close(g.p99_latency, 1.5 + 0.93 * 0.5), "{}", g.p99_latency);

        let models: Vec<(&str, u64, u64)> = u
            .by_model
            .iter()
            .map(|m| (m.model.as_str(), m.requests, m.errors))
            .collect();
        assert_eq!(models, [("gpt-4o-mini", 5, 0), ("claude", 2, 1)]);
        assert!(close(u.by_model[1].error_rate, 0.5));
        let users: Vec<(&str, u64)> = u
            .by_user
            .iter()
            .map(|x| (x.user.as_str(), x.requests))
            .collect();
        assert_eq!(users, [("alice", 4), ("bob", 2), ("mallory", 1)]);

        assert_eq!(u.timeseries.bucket, "hour");
        assert_eq!(u.timeseries.points.len(), 24);
        assert_eq!(u.timeseries.points[0].timestamp, "2026-01-04T11:00:00Z");
        let busy: Vec<(usize, u64, u64)> = u
            .timeseries
            .points
            .iter()
            .enumerate()
            .filter(|(_, p)| p.requests > 0)
            .map(|(i, p)| (i, p.requests, p.errors))
            .collect();
        assert_eq!(busy, [(12, 1, 0), (22, 5, 1), (23, 1, 0)]);

        let hours = &u.temporal_patterns.by_hour_of_day;
        assert_eq!(
            (hours[9].requests, hours[10].requests, hours[23].requests),
            (5, 1, 1)
        );
        assert_eq!(hours.iter().map(|h| h.requests).sum::<u64>(), 7);
        let days = &u.temporal_patterns.by_weekday;
        assert_eq!((days[0].key.as_str(), days[0].requests), ("monday", 6));
        assert_eq!((days[6].key.as_str(), days[6].requests), ("sunday", 1));
        assert!(u.anomalies.is_empty(), "{:?}", u.anomalies);
    }
}

#[tokio::test]
async fn security_summary_counts_levels_categories_and_offenders() {
    for t in stores_holding(&fixture()).await {
        let store = t.store;
        eprintln!("backend: {}", t.backend);
        let s = security_summary(&store, MONDAY_MS - 2 * HOUR_MS, MONDAY_MS + 11 * HOUR_MS)
            .await
            .expect("summary");
        assert_eq!((s.total_requests, s.threats, s.blocked), (7, 1, 1));
        assert_eq!(s.by_level["high"], 1);
        assert_eq!(s.by_category["prompt_injection"], 1);
        assert_eq!(s.top_users.len(), 1);
        assert_eq!(
            (
                s.top_users[0].user.as_str(),
                s.top_users[0].max_level.as_str()
            ),
            ("mallory", "high")
        );
    }
}

#[test]
fn live_windows_count_what_finished_inside_them() {
    let live = Live::new();
    for ex in fixture() {
        live.record(&ex);
    }
    let now = at(MONDAY_MS + 10 * HOUR_MS + 30 * MIN);
    let w = live.window_at(now, Duration::from_secs(2 * 3600));
    assert_eq!((w.requests, w.errors, w.blocked), (6, 1, 0));
    assert!(close(w.error_rate, 1.0 / 6.0));
    let day = live.window_at(now, Duration::from_secs(24 * 3600));
    assert_eq!((day.requests, day.blocked), (7, 1));
    assert_eq!(day.threats_by_level.get("high"), Some(&1));
    // The seconds ring only covers the last 5 minutes: nothing finished then.
    assert_eq!(live.window_at(now, Duration::from_secs(60)).requests, 0);
    let models = live.models_at(now, Duration::from_secs(3600));
    assert_eq!(models.len(), 2);
}

#[tokio::test]
async fn an_empty_store_gives_zeros_not_errors() {
    for t in temp_stores().await {
        let store = t.store;
        eprintln!("backend: {}", t.backend);
        let u = usage_at(&store, MONDAY_MS, 7)
            .await
            .expect("usage on an empty store");
        assert_eq!(u.general_metrics.total_requests, 0);
        assert_eq!(u.timeseries.points.len(), 168);
        let s = security_summary(&store, MONDAY_MS - 7 * 24 * HOUR_MS, MONDAY_MS + 90_000)
            .await
            .expect("summary on an empty store");
        assert_eq!((s.total_requests, s.threats), (0, 0));
    }
}

/// An upstream's 404 to a client's mistake is the client's error: it does not count in error
/// rates (the live windows the error-rate alert reads, the rollups), only as a client error.
#[tokio::test]
async fn client_mistakes_are_not_counted_in_error_rates() {
    let base = MONDAY_MS + 9 * HOUR_MS;
    let mut v: Vec<gatehouse::event::Exchange> = (0..4)
        .map(|i| {
            exchange(
                &format!("ok{i}"),
                base + i * MIN,
                "gpt-4o-mini",
                Some("alice"),
                150,
            )
        })
        .collect();
    for i in 0..2 {
        let mut ex = exchange(
            &format!("c{i}"),
            base + 10 * MIN,
            "gpt-4o-mini",
            Some("alice"),
            150,
        );
        ex.status = 404;
        ex.outcome = gatehouse::event::Outcome::UpstreamError;
        ex.error_kind = Some("upstream_status");
        ex.blame = Some(gatehouse::event::Blame::Client);
        v.push(ex);
    }
    v.push(failed(exchange(
        "u1",
        base + 11 * MIN,
        "gpt-4o-mini",
        Some("alice"),
        150,
    )));
    let live = Live::new();
    for ex in &v {
        live.record(ex);
    }
    let w = live.window_at(at(base + 20 * MIN), Duration::from_secs(3600));
    assert_eq!(
        (w.requests, w.errors),
        (7, 1),
        "only the upstream's own failure"
    );
    assert!(v.iter().filter(|e| e.is_client_error()).count() == 2);
    let batch: Vec<Arc<gatehouse::event::Exchange>> = v.into_iter().map(Arc::new).collect();
    for t in stores_holding(&batch).await {
        let u = usage_at(&t.store, base + 20 * MIN, 1).await.expect("usage");
        let g = &u.general_metrics;
        assert_eq!(g.total_requests, 7, "{}", t.backend);
        assert!(
            close(g.error_rate, 1.0 / 7.0),
            "{}: {}",
            t.backend,
            g.error_rate
        );
    }
}

/// On both backends: the rollups count requests whose cost is unknown apart from the cost sum,
/// and the report's TTFT read buckets streamed requests per model (plain ones left out).
#[tokio::test]
async fn unpriced_requests_and_streamed_ttft_on_every_backend() {
    let base = MONDAY_MS + 9 * HOUR_MS;
    let mut v = Vec::new();
    for i in 0..3 {
        let mut ex = exchange(&format!("p{i}"), base + i, "acme/unpriced-1", None, 800);
        ex.cost = None;
        v.push(ex);
    }
    for i in 0..4 {
        let mut ex = exchange(&format!("s{i}"), base + i, "gpt-4o-mini", None, 800);
        ex.stream = true;
        ex.ttft = Some(Duration::from_millis(2_500));
        v.push(ex);
    }
    let batch: Vec<Arc<gatehouse::event::Exchange>> = v.into_iter().map(Arc::new).collect();
    for t in stores_holding(&batch).await {
        let u = usage_at(&t.store, base + 20 * MIN, 1).await.expect("usage");
        let g = &u.general_metrics;
        assert_eq!(g.unpriced_requests, 3, "{}", t.backend);
        assert!(
            close(g.total_cost, 0.004),
            "{}: {}",
            t.backend,
            g.total_cost
        );
        let ttft = t
            .store
            .ttft_by_model(base - HOUR_MS, base + HOUR_MS)
            .await
            .expect("ttft");
        assert_eq!(
            ttft.len(),
            1,
            "{}: only streamed requests: {ttft:?}",
            t.backend
        );
        assert_eq!(ttft[0].model, "gpt-4o-mini");
        assert_eq!(ttft[0].hist.count(), 4);
        assert_eq!(ttft[0].hist.max_us, 2_500_000);
        t.store.close().await;
    }
}
