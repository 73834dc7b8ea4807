//! What replicas sharing one store coordinate through, on both backends (PostgreSQL when
//! `TEST_POSTGRES_URL` is set): alert claims, alert de-duplication between two engines, the
//! per-user high-risk counts the behaviour sync reads, and the shared rate-limit counts.

#[path = "store_support/mod.rs"]
mod support;

use std::sync::Arc;

use gatehouse::alerts::{run_engine, Engine, Message, NoticeKind};
use gatehouse::analytics::Live;
use gatehouse::config::{AlertLevel, AlertsConfig, CaptureConfig, RuleConfig, RuleKind};
use gatehouse::detect::{Category, RiskLevel};
use gatehouse::event::Exchange;
use gatehouse::store::{QuotaCount, Store};
use support::*;

/// Two handles on one store, as two replicas have: two pools on one PostgreSQL database, or
/// (SQLite, one process) the same handle twice.
async fn replicas() -> Vec<(&'static str, Store, Store, Option<tempfile::TempDir>)> {
    let (dir, sqlite) = temp_store().await;
    let mut out = vec![("sqlite", sqlite.clone(), sqlite, Some(dir))];
    if let Some(server) = postgres_url() {
        let url = fresh_postgres_db(&server).await;
        let a = Store::connect(&url).await.expect("replica a");
        let b = Store::connect(&url).await.expect("replica b");
        out.push(("postgres", a, b, None));
    }
    out
}

#[tokio::test]
async fn a_claim_holds_until_it_lapses_or_is_released() {
    for (backend, a, b, _dir) in replicas().await {
        let claim = |s: &Store, inst: &'static str, id: &'static str, now: i64, until: i64| {
            let s = s.clone();
            async move {
                s.alert_claim("error_rate", "openrouter", id, inst, now, until)
                    .await
                    .expect("claim")
            }
        };
        assert!(
            claim(&a, "a", "x1", 1_000, 2_000).await,
            "{backend}: first claim wins"
        );
        assert!(
            !claim(&b, "b", "x2", 1_500, 2_500).await,
            "{backend}: live claim holds"
        );
        assert!(
            b.alert_claim("error_rate", "other-subject", "x3", "b", 1_500, 2_500)
                .await
                .expect("claim"),
            "{backend}: another subject is another key"
        );
        assert_eq!(a.alert_claims_renew("a", 5_000).await.expect("renew"), 1);
        assert!(
            !claim(&b, "b", "x2", 3_000, 4_000).await,
            "{backend}: renewed lease holds"
        );
        a.alert_claim_release("x1", 3_500).await.expect("release");
        assert!(
            !claim(&b, "b", "x2", 3_400, 4_000).await,
            "{backend}: cool-down holds"
        );
        assert!(
            claim(&b, "b", "x2", 3_500, 4_500).await,
            "{backend}: then it's free"
        );
        assert_eq!(
            a.alert_claims_renew("a", 9_000).await.expect("renew"),
            0,
            "{backend}: a's claim passed to b"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_replicas_get_exactly_one_claim() {
    for (backend, a, b, _dir) in replicas().await {
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    s.alert_claim("critical", "-", &format!("id{i}"), &format!("r{i}"), 10, 99)
                        .await
                        .expect("claim")
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.expect("task"));
        }
        assert_eq!(winners, 1, "{backend}: one winner among 16 racers");
    }
}

fn count(scope: &str, window: i64, used: i64) -> QuotaCount {
    QuotaCount {
        scope: scope.into(),
        counter: "requests_minute".into(),
        window,
        used,
        ends_ms: (window + 1) * 60_000,
    }
}

/// What `instance` wrote, as `others_quota_counts` gives it back.
fn by(instance: &str, c: QuotaCount) -> (String, QuotaCount) {
    (instance.to_owned(), c)
}

/// Sorted by instance and scope, so two reads compare whatever order the store returns.
async fn others(store: &Store, me: &str, since: i64, now: i64) -> Vec<(String, QuotaCount)> {
    let mut v = store
        .others_quota_counts(me, since, now)
        .await
        .expect("read");
    v.sort_by(|x, y| (&x.0, &x.1.scope, x.1.window).cmp(&(&y.0, &y.1.scope, y.1.window)));
    v
}

#[tokio::test]
async fn each_replica_overwrites_its_own_counts_and_reads_the_others_written_since() {
    for (backend, a, b, _dir) in replicas().await {
        let now = 10 * 60_000 + 5;
        a.put_quota_counts("a", &[count("vkey:1", 10, 3), count("global", 10, 1)], 100)
            .await
            .expect("a writes");
        // Overwritten, not added to: a retried write counts once.
        a.put_quota_counts("a", &[count("vkey:1", 10, 4)], 200)
            .await
            .expect("a writes again");
        b.put_quota_counts("b", &[count("vkey:1", 10, 5), count("vkey:1", 9, 50)], 200)
            .await
            .expect("b writes");
        b.put_quota_counts("c", &[count("vkey:1", 10, 2)], 300)
            .await
            .expect("c writes");
        assert_eq!(
            others(&a, "a", i64::MIN, now).await,
            vec![
                by("b", count("vkey:1", 10, 5)),
                by("c", count("vkey:1", 10, 2))
            ],
            "{backend}: b's and c's, open windows only, a's own left out"
        );
        assert_eq!(
            others(&b, "b", i64::MIN, now).await,
            vec![
                by("a", count("global", 10, 1)),
                by("a", count("vkey:1", 10, 4)),
                by("c", count("vkey:1", 10, 2)),
            ],
            "{backend}: a's 4 (not 3 + 4) and c's 2"
        );
        assert_eq!(
            others(&b, "b", 100, now).await,
            vec![
                by("a", count("vkey:1", 10, 4)),
                by("c", count("vkey:1", 10, 2))
            ],
            "{backend}: only what was written after 100 (a's global row was not)"
        );
        assert!(
            others(&b, "b", 300, now).await.is_empty(),
            "{backend}: nothing written after 300"
        );
        assert_eq!(
            a.purge_quota_counts(now).await.expect("purge"),
            1,
            "{backend}: the ended window's row"
        );
        assert_eq!(
            a.purge_quota_counts(11 * 60_000).await.expect("purge"),
            4,
            "{backend}: then the rest, once their window ends"
        );
    }
}

/// A replica's requests in flight: one row (window 0) whose end is a lease each write moves.
fn held(used: i64, ends_ms: i64) -> QuotaCount {
    QuotaCount {
        scope: "team:red".into(),
        counter: "in_flight".into(),
        window: 0,
        used,
        ends_ms,
    }
}

#[tokio::test]
async fn a_lease_moves_with_each_write_and_a_dead_replicas_lapses() {
    for (backend, a, b, _dir) in replicas().await {
        a.put_quota_counts("a", &[held(2, 1_000)], 10)
            .await
            .expect("a writes");
        b.put_quota_counts("b", &[held(1, 1_000)], 10)
            .await
            .expect("b writes");
        // a renews its lease; b has died and does not.
        a.put_quota_counts("a", &[held(3, 2_000)], 20)
            .await
            .expect("a renews");
        assert_eq!(
            others(&b, "b", i64::MIN, 1_500).await,
            vec![by("a", held(3, 2_000))],
            "{backend}: the renewed count and lease"
        );
        assert_eq!(
            a.purge_quota_counts(1_500).await.expect("purge"),
            1,
            "{backend}: b's lapsed row"
        );
        assert!(
            others(&a, "a", i64::MIN, 1_500).await.is_empty(),
            "{backend}: nothing of b's is left"
        );
    }
}

fn critical_rule_config() -> AlertsConfig {
    AlertsConfig {
        enabled: true,
        rules: vec![RuleConfig {
            name: "critical_threat".into(),
            kind: RuleKind::CriticalThreat,
            level: AlertLevel::Critical,
            ..RuleConfig::default()
        }],
        ..AlertsConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_on_one_store_notify_a_critical_threat_once() {
    for (backend, a, b, _dir) in replicas().await {
        let cfg = critical_rule_config();
        let (notices_tx, mut notices) = tokio::sync::mpsc::channel(16);
        let mut feeds = Vec::new();
        let mut engines = Vec::new();
        for (store, name) in [(a.clone(), "replica-a"), (b.clone(), "replica-b")] {
            let engine = Engine::new(
                &cfg,
                Arc::new(Live::new()),
                store,
                notices_tx.clone(),
                name.into(),
            );
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            feeds.push(tx);
            engines.push(tokio::spawn(run_engine(engine, rx)));
        }
        drop(notices_tx);
        // The same attacker hits both replicas at once: each sees a critical threat.
        for (i, tx) in feeds.iter().enumerate() {
            let ex = blocked(
                exchange(&format!("atk{i}"), MONDAY_MS, "m", Some("mallory"), 5),
                RiskLevel::Critical,
            );
            tx.send(Arc::new(ex)).await.expect("engine alive");
        }
        // Closing the record channels ends each engine after it has handled what it got.
        drop(feeds);
        for e in engines {
            e.await.expect("engine");
        }
        let mut fired = Vec::new();
        while let Ok((message, _channels)) = notices.try_recv() {
            if let Message::Alert(notice) = message {
                if notice.kind == NoticeKind::Fired {
                    fired.push(notice.alert_id);
                }
            }
        }
        assert_eq!(
            fired.len(),
            1,
            "{backend}: one notice for the fleet, got {fired:?}"
        );
        let stored = a
            .alerts(&gatehouse::store::AlertFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("alerts");
        assert_eq!(stored.len(), 1, "{backend}: one stored alert");
        assert_eq!(stored[0].id, fired[0]);
    }
}

#[tokio::test]
async fn high_risk_counts_per_user_leave_out_escalations_low_risk_and_weak_evidence() {
    for t in temp_stores().await {
        let mut batch = Vec::new();
        for i in 0..3 {
            let ex = corroborated(blocked(
                exchange(&format!("h{i}"), MONDAY_MS + i, "m", Some("eve"), 5),
                RiskLevel::High,
            ));
            batch.push(Arc::new(ex));
        }
        // High on one weak rule alone (and a pasted secret beside it) is not an offence.
        let mut weak = blocked(
            exchange("weak", MONDAY_MS + 20, "m", Some("eve"), 5),
            RiskLevel::High,
        );
        let mut v = verdict(RiskLevel::High, true);
        let mut secret = v.matches[0].clone();
        secret.category = Category::SecretsInPrompt;
        secret.rule = Arc::from("secrets.openai_key");
        secret.weight = 14.0;
        v.matches.push(secret);
        weak.verdict = Some(Arc::new(v));
        batch.push(Arc::new(weak));
        // One rule weighted as high on its own is.
        let mut strong = blocked(
            exchange("strong", MONDAY_MS + 21, "m", Some("dan"), 5),
            RiskLevel::High,
        );
        let mut v = verdict(RiskLevel::High, true);
        v.matches[0].weight = 14.0;
        strong.verdict = Some(Arc::new(v));
        batch.push(Arc::new(strong));
        let mut esc = blocked(
            exchange("esc", MONDAY_MS + 10, "m", Some("eve"), 5),
            RiskLevel::Critical,
        );
        let mut v = verdict(RiskLevel::Critical, true);
        v.escalated = true;
        v.matches[0].rule = Arc::from(gatehouse::detect::behaviour::ESCALATION_RULE);
        esc.verdict = Some(Arc::new(v));
        batch.push(Arc::new(esc));
        batch.push(Arc::new(blocked(
            exchange("low", MONDAY_MS + 11, "m", Some("eve"), 5),
            RiskLevel::Low,
        )));
        batch.push(Arc::new(blocked(
            exchange("old", MONDAY_MS - 60_000, "m", Some("eve"), 5),
            RiskLevel::High,
        )));
        batch.push(Arc::new(corroborated(blocked(
            exchange("bob", MONDAY_MS + 12, "m", Some("bob"), 5),
            RiskLevel::Critical,
        ))));
        t.store
            .insert_batch(&batch, &CaptureConfig::default())
            .await
            .expect("write");
        let mut got = t.store.high_risk_by_user(MONDAY_MS).await.expect("counts");
        got.sort();
        assert_eq!(
            got,
            vec![
                ("bob".to_owned(), 1, MONDAY_MS + 12),
                ("dan".to_owned(), 1, MONDAY_MS + 21),
                ("eve".to_owned(), 3, MONDAY_MS + 2)
            ],
            "{}",
            t.backend
        );
    }
}

/// `ex` with a second hostile rule beside the first: corroborated evidence.
fn corroborated(mut ex: Exchange) -> Exchange {
    let mut v = ex.verdict.as_deref().cloned().expect("a verdict");
    let mut second = v.matches[0].clone();
    second.rule = Arc::from("learned.prompt_injection");
    v.matches.push(second);
    ex.verdict = Some(Arc::new(v));
    ex
}
