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
//! Run: `cargo bench --bench quota` (criterion prints the median time per admission).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse::config::{BudgetPeriod, Config, LimitsConfig};
use gatehouse::quota::{Ask, Limits, Quotas, Scope, ScopeKind};

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
            key: None,
            user: Some(u),
            team: None,
            model: None,
            upstream_model: None,
            tokens: 0,
            now_ms: now_ms(),
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

criterion_group!(benches, admission);
criterion_main!(benches);
