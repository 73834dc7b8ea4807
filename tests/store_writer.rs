//! The writer task loses nothing: concurrent producers, drain on close, crash-safe commits.

#[path = "store_support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gatehouse::config::CaptureConfig;
use gatehouse::event::Capture;
use gatehouse::store::{run_writer, RequestFilter, Store, WriterConfig};
use support::*;

fn writer_cfg(batch: usize, flush_ms: u64) -> WriterConfig {
    WriterConfig {
        batch,
        flush: Duration::from_millis(flush_ms),
        retry_buffer: 4096,
        capture: CaptureConfig::default(),
        observer: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_lose_nothing() {
    for t in temp_stores().await {
        let store = t.store;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let flushes = Arc::new(AtomicUsize::new(0));
        let mut cfg = writer_cfg(256, 50);
        let seen = flushes.clone();
        cfg.observer = Some(Arc::new(move |s| {
            assert!(s.ok, "batch failed");
            seen.fetch_add(s.records, Ordering::Relaxed);
        }));
        let writer = tokio::spawn(run_writer(store.clone(), rx, cfg));
        let producers: Vec<_> = (0..8)
            .map(|p| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..1_000 {
                        let ex = exchange(
                            &format!("p{p}-{i}"),
                            MONDAY_MS + i,
                            "gpt-4o-mini",
                            Some("u1"),
                            120,
                        );
                        tx.send(Arc::new(ex)).await.expect("writer alive");
                    }
                })
            })
            .collect();
        for p in producers {
            p.await.expect("producer");
        }
        drop(tx);
        let summary = writer.await.expect("writer task");
        assert_eq!(summary.written, 8_000);
        assert_eq!(flushes.load(Ordering::Relaxed), 8_000);
        let n = store.count_requests(0, i64::MAX).await.expect("count");
        assert_eq!(n, 8_000, "{}: every record sent must be a row", t.backend);
    }
}

#[tokio::test]
async fn closing_the_channel_mid_load_drains_everything() {
    for t in temp_stores().await {
        let store = t.store;
        // Big batch and long flush: without the drain, records would sit in the buffer.
        let (tx, rx) = tokio::sync::mpsc::channel(10_000);
        for i in 0..5_000 {
            let ex = exchange(&format!("r{i}"), MONDAY_MS + i, "m", None, 10);
            tx.try_send(Arc::new(ex)).expect("room in channel");
        }
        let writer = tokio::spawn(run_writer(store.clone(), rx, writer_cfg(4096, 60_000)));
        drop(tx);
        let summary = writer.await.expect("writer task");
        assert_eq!(summary.written, 5_000);
        assert_eq!(
            store.count_requests(0, i64::MAX).await.expect("count"),
            5_000,
            "{}",
            t.backend
        );
    }
}

#[tokio::test]
async fn committed_rows_survive_reopening_and_duplicates_are_ignored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("g.db");
    {
        let store = Store::open(&path).await.expect("open");
        let batch: Vec<_> = (0..10)
            .map(|i| Arc::new(exchange(&format!("id{i}"), MONDAY_MS, "m", Some("u"), 5)))
            .collect();
        store
            .insert_batch(&batch, &CaptureConfig::default())
            .await
            .expect("write");
        store
            .insert_batch(&batch[..3], &CaptureConfig::default())
            .await
            .expect("rewrite");
        // No close(): the WAL holds the commit; reopening must see it.
    }
    let store = Store::open(&path).await.expect("reopen");
    assert_eq!(store.count_requests(0, i64::MAX).await.expect("count"), 10);
}

#[tokio::test]
async fn postgres_rows_survive_reconnecting_and_duplicates_are_ignored() {
    let Some(server) = postgres_url() else { return };
    let url = fresh_postgres_db(&server).await;
    let batch: Vec<_> = (0..10)
        .map(|i| Arc::new(exchange(&format!("id{i}"), MONDAY_MS, "m", Some("u"), 5)))
        .collect();
    {
        let store = Store::connect(&url).await.expect("connect");
        store
            .insert_batch(&batch, &CaptureConfig::default())
            .await
            .expect("write");
        store.close().await;
    }
    // A second connection migrates nothing twice and sees the rows.
    let store = Store::connect(&url).await.expect("reconnect");
    store
        .insert_batch(&batch[..3], &CaptureConfig::default())
        .await
        .expect("rewrite");
    assert_eq!(store.count_requests(0, i64::MAX).await.expect("count"), 10);
    let hours = store.rollups(0, i64::MAX, true).await.expect("rollups");
    assert_eq!(
        hours.iter().map(|h| h.requests).sum::<u64>(),
        13,
        "rollups count what was sent: a retried batch is the writer's to avoid"
    );
}

#[tokio::test]
async fn capture_is_stored_only_when_configured_and_redacted() {
    for t in temp_stores().await {
        let store = t.store;
        let mut ex = exchange("cap", MONDAY_MS, "m", None, 5);
        ex.capture = Some(Capture {
            prompt: Some("my key is sk-abcdefghijklmnopqrstuv ok".into()),
            response: Some("fine".into()),
        });
        let ex = Arc::new(ex);
        let on = CaptureConfig {
            prompts: true,
            max_bytes: 20,
            ..CaptureConfig::default()
        };
        store
            .insert_batch(std::slice::from_ref(&ex), &on)
            .await
            .expect("write");
        let row = store.request("cap").await.expect("query").expect("row");
        assert_eq!(row.prompt.as_deref(), Some("my key is [REDACTED]"));
        assert_eq!(row.response, None, "responses not configured");
        let page = store
            .requests(&RequestFilter::default(), None, 10)
            .await
            .expect("page");
        assert_eq!(page.items.len(), 1, "{}", t.backend);
    }
}

#[tokio::test]
async fn matches_and_rollups_are_written_with_the_rows() {
    for t in temp_stores().await {
        let store = t.store;
        let ex = blocked(
            exchange("b1", MONDAY_MS, "m", Some("eve"), 3),
            gatehouse::detect::RiskLevel::High,
        );
        store
            .insert_batch(&[Arc::new(ex)], &CaptureConfig::default())
            .await
            .expect("write");
        let events = store
            .security_events(&Default::default(), None, 10)
            .await
            .expect("events");
        assert_eq!(events.items.len(), 1);
        assert_eq!(events.items[0].category, "prompt_injection");
        assert!(
            events.items[0].snippet.contains("[REDACTED]"),
            "e-mail in snippet is masked"
        );
        let hours = store.rollups(0, i64::MAX, true).await.expect("rollups");
        assert_eq!(hours.len(), 1);
        assert_eq!(
            (hours[0].requests, hours[0].blocked, hours[0].threats[2]),
            (1, 1, 1)
        );
        let purged = store.purge_before(MONDAY_MS + 1).await.expect("purge");
        assert_eq!((purged.requests, purged.matches), (1, 1), "{}", t.backend);
        assert_eq!(store.count_requests(0, i64::MAX).await.expect("count"), 0);
    }
}

/// Many batches whose NULLs fall in different places (no verdict, then a verdict with a
/// score): each backend must take a value where an earlier batch had NULL, and keep the sums.
#[tokio::test]
async fn batches_with_nulls_in_different_places_all_commit() {
    for t in temp_stores().await {
        let v = Arc::new(verdict(gatehouse::detect::RiskLevel::Medium, false));
        for b in 0..3usize {
            let batch: Vec<_> = (b * 1024..(b + 1) * 1024)
                .map(|i| {
                    let mut ex = exchange(
                        &format!("n{i}"),
                        MONDAY_MS + i as i64 * 5,
                        ["a", "b", "c"][i % 3],
                        Some(&format!("user-{}", i % 500)),
                        200 + (i % 900) as u64,
                    );
                    ex.cost = (i % 7 != 0).then_some(0.0004);
                    if i % 100 == 0 {
                        ex.verdict = Some(v.clone());
                    }
                    Arc::new(ex)
                })
                .collect();
            t.store
                .insert_batch(&batch, &CaptureConfig::default())
                .await
                .unwrap_or_else(|e| panic!("{} batch {b}: {e:?}", t.backend));
        }
        assert_eq!(
            t.store.count_requests(0, i64::MAX).await.expect("count"),
            3 * 1024,
            "{}",
            t.backend
        );
        let events = t
            .store
            .security_events(&Default::default(), None, 100)
            .await
            .expect("events");
        assert_eq!(
            events.items.len(),
            31,
            "{}: one match per verdict",
            t.backend
        );
    }
}

/// The spend budgets read back at start: one query, a sum per start, grouped by key user, end
/// user and team; requests without a cost and before the earliest start are left out.
#[tokio::test]
async fn spend_is_summed_since_each_start_per_key_user_user_and_team() {
    for t in temp_stores().await {
        let store = t.store;
        let mut rows = Vec::new();
        for (id, ts, key_user, user, team, cost) in [
            (
                "s1",
                MONDAY_MS - HOUR_MS,
                "alice",
                "alice",
                "red",
                Some(0.5),
            ),
            (
                "s2",
                MONDAY_MS + HOUR_MS,
                "alice",
                "alice",
                "red",
                Some(0.25),
            ),
            ("s3", MONDAY_MS + 2 * HOUR_MS, "alice", "alice", "red", None),
            (
                "s4",
                MONDAY_MS + 3 * HOUR_MS,
                "bot",
                "end-7",
                "red",
                Some(0.125),
            ),
            (
                "s5",
                MONDAY_MS - 30 * 24 * HOUR_MS,
                "alice",
                "alice",
                "red",
                Some(100.0),
            ),
        ] {
            let mut ex = exchange(id, ts, "m", Some(user), 3);
            ex.key_user = Some(key_user.into());
            ex.team = Some(team.into());
            ex.cost = cost;
            rows.push(Arc::new(ex));
        }
        store
            .insert_batch(&rows, &CaptureConfig::default())
            .await
            .expect("write");
        let mut spent = store
            .spend_since(&[MONDAY_MS, MONDAY_MS - 2 * HOUR_MS])
            .await
            .expect("spend");
        spent.sort_by(|a, b| a.user.cmp(&b.user));
        let got: Vec<_> = spent
            .iter()
            .map(|s| {
                (
                    s.key_user.as_deref(),
                    s.user.as_deref(),
                    s.team.as_deref(),
                    s.usd.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (Some("alice"), Some("alice"), Some("red"), vec![0.25, 0.75]),
                (Some("bot"), Some("end-7"), Some("red"), vec![0.125, 0.125]),
            ],
            "{}",
            t.backend
        );
        assert!(store.spend_since(&[]).await.expect("none").is_empty());
    }
}
