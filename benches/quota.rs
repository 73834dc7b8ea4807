//! Question: what does the quota check add to a request on the hot path, with 10,000 keys
//! configured? Target (issue 16): ≤ 1 µs at p50 for admission.
//!
//! Measured: `Quotas::admit` plus settling and dropping the ticket (what the recorder does when
//! the answer ends), with the clock read each time as the proxy does, and the key's scope looked
//! up among 10,000 in a `HashMap` keyed by the key string as `proxy::Runtime` holds them. Two
//! cases: a key's own limits only, and every scope at once (key, one of 100,000 end users, one
//! of 100 teams, a model, the gateway). Limits are set high so nothing is refused: refusal
//! costs the same checks plus a message.
//!
//! Second question: what does one fleet sync cost this process, off the hot path, at its
//! worst: 100,000 end users tracked, each with every limit, and another replica's rows for
//! every one of them (everyone active on both today). `quota_fleet_sync` measures what a sync
//! does in memory once the store has answered: find what changed to send (nothing here), take
//! in the rows read (none new here: the sums move by what a read brings), and set every
//! scope's share. The store's side is one upsert of the changed rows and one read of the rows written
//! since the last read (README, Quotas → Fleet).
//!
//! Run: `cargo bench --bench quota` (criterion prints the median time per admission and per
//! sync).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse::config::{BudgetPeriod, Config, LimitsConfig};
use gatehouse::quota::{
    apply_fleet, lease_ms, Ask, Ledger, Limits, Others, Quotas, Scope, ScopeKind,
};

const KEYS: usize = 10_000;
const USERS: usize = 100_000;
const TEAMS: usize = 100;

/// Every kind of limit, high enough never to refuse.
fn every_limit() -> LimitsConfig {
    LimitsConfig {
        requests_per_minute: Some(1 << 39),
        requests_per_day: Some(1 << 39),
        tokens_per_minute: Some(1 << 39),
        tokens_per_day: Some(1 << 39),
        concurrent: Some(1 << 39),
        budget_usd: Some(1e9),
        per: Some(BudgetPeriod::Day),
        label: false,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn keys() -> (HashMap<String, Arc<Scope>>, Vec<String>) {
    let limits = Limits::from_config(&every_limit()).expect("limits");
    let names: Vec<String> = (0..KEYS).map(|i| format!("gh-key-{i:016x}")).collect();
    let map = names
        .iter()
        .map(|k| {
            (
                k.clone(),
                Arc::new(Scope::new(ScopeKind::Key, limits, None)),
            )
        })
        .collect();
    (map, names)
}

fn quotas() -> (Quotas, Vec<String>, Vec<String>) {
    let mut c = Config::default();
    c.quotas.users.default = every_limit();
    c.quotas.users.max_tracked = USERS;
    let teams: Vec<String> = (0..TEAMS).map(|i| format!("team-{i}")).collect();
    for t in &teams {
        c.quotas.teams.insert(t.clone(), every_limit());
    }
    c.quotas
        .models
        .insert("openai/gpt-4o-mini".into(), every_limit());
    c.quotas.global = every_limit();
    let users: Vec<String> = (0..USERS)
        .map(|i| format!("user-{i}@example.com"))
        .collect();
    (Quotas::build(&c, None), users, teams)
}

fn admission(c: &mut Criterion) {
    let (keys, names) = keys();
    let none = Quotas::build(&Config::default(), None);
    let (all, users, teams) = quotas();
    // Every user seen once, so the cache holds them all as in a warm gateway.
    for u in &users {
        let ask = Ask {
            tokens: 0,
            ..Ask::user_only(u, now_ms())
        };
        drop(all.admit(&ask));
    }
    let mut g = c.benchmark_group("quota_admit");
    let mut i = 0usize;
    g.bench_function("key_only_10k_keys", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            let key = keys.get(&names[i % KEYS]);
            let ask = Ask {
                key,
                user: None,
                team: None,
                model: Some("openai/gpt-4o-mini"),
                upstream_model: Some("openai/gpt-4o-mini"),
                tokens: 250,
                now_ms: now_ms(),
            };
            let ticket = none
                .admit(black_box(&ask))
                .expect("admitted")
                .expect("a ticket");
            ticket.settle(Some(300), Some(0.0001), ask.now_ms);
        });
    });
    g.bench_function("every_scope_10k_keys_100k_users", |b| {
        b.iter(|| {
            i = i.wrapping_add(7919);
            let ask = Ask {
                key: keys.get(&names[i % KEYS]),
                user: Some(&users[i % USERS]),
                team: Some(&teams[i % TEAMS]),
                model: Some("gpt"),
                upstream_model: Some("openai/gpt-4o-mini"),
                tokens: 250,
                now_ms: now_ms(),
            };
            let ticket = all
                .admit(black_box(&ask))
                .expect("admitted")
                .expect("a ticket");
            ticket.settle(Some(300), Some(0.0001), ask.now_ms);
        });
    });
    g.finish();
}

fn fleet_sync(c: &mut Criterion) {
    let (all, users, _) = quotas();
    let now = now_ms();
    for u in &users {
        let ask = Ask {
            tokens: 10,
            ..Ask::user_only(u, now)
        };
        let ticket = all.admit(&ask).expect("admitted").expect("a ticket");
        ticket.settle(Some(12), Some(0.0001), now);
    }
    let shared: Vec<(String, Arc<Scope>)> = all.shared().collect();
    let by_id = || shared.iter().map(|(id, s)| (id.as_str(), &**s));
    let (zone, lease) = (all.zone().clone(), lease_ms(1000));
    let mut ledger = Ledger::default();
    let sent = ledger.changes(by_id(), now, &zone, lease);
    ledger.commit(&sent, now, &zone);
    // Another replica counted exactly what this one did, for every scope.
    let mut others = Others::default();
    others.merge(sent.iter().map(|t| ("b".to_owned(), t.clone())), now, lease);
    eprintln!(
        "fleet sync: {} scopes, {} rows of the other replica",
        shared.len(),
        others.len()
    );
    let mut g = c.benchmark_group("quota_fleet_sync");
    g.sample_size(10);
    g.bench_function("100k_users_every_limit", |b| {
        b.iter(|| {
            // What each sync lists: every tracked scope by its fleet-wide name.
            let shared: Vec<(String, Arc<Scope>)> = all.shared().collect();
            let by_id = || shared.iter().map(|(id, s)| (id.as_str(), &**s));
            let changed = ledger.changes(by_id(), now, &zone, lease);
            assert!(changed.is_empty());
            // A read that brought nothing new (the steady state between bursts).
            others.merge(std::iter::empty(), now, lease);
            all.set_fleet_users(others.sums());
            apply_fleet(by_id(), &others.read(), now, &zone);
            black_box(others.len())
        });
    });
    g.finish();
}

criterion_group!(benches, admission, fleet_sync);
criterion_main!(benches);
