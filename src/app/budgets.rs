//! Budgets read back from the store at start: the current period's spend per key, end user and
//! team, in one query, so a restart does not hand every budget a fresh period. After this the
//! counters only ever move in memory (no store round trip on the request path).
//!
//! In fleet mode the replicas' shared spend counts (`quota_counts`) are read between reading
//! the records and seeding (`fleet_quotas::first`; end users with spend this period are
//! tracked before it, as only tracked scopes get a share): a budget's fleet share is then every
//! replica's count, earlier runs of this one included, and the seed keeps only what the
//! records hold beyond it (`quota::Spend::seed`), so a restart counts no dollar twice. Records
//! lag the counts by a flush interval and the counts lag the records by a sync interval, so the
//! seed can be off by what the fleet spent in the last of either: too high by spend recorded
//! but not yet synced, too low (only where the records hold spend no count covers) by spend
//! synced but not yet recorded.
//!
//! A key's spend is that of its user's requests made with a key (`key_user`): two keys of one
//! user each start from their combined spend. Virtual keys (`/api/keys`) are seeded the same
//! way, those that exist at start; a key made later starts at zero.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::BudgetPeriod;
use crate::proxy::Runtime;
use crate::quota::{period_bounds, Scope};
use crate::store::{Spent, Store};

/// This period's spend read from the records, for every budget period in use.
pub(super) struct Seed {
    rows: Vec<Spent>,
    /// Each period in use and its start (unix ms), in `rows`' `usd` order.
    starts: Vec<(BudgetPeriod, i64)>,
    now_ms: i64,
}

/// Reads this period's spend of every budget of `rt` and of the virtual keys' scopes
/// (`(user, scope)`) from `store`. `None` when no budget is set, or when the query failed
/// (logged: the budgets start at zero and the gateway still serves).
pub(super) async fn read(
    rt: &Runtime,
    virtual_keys: &[(Arc<str>, Arc<Scope>)],
    store: &Store,
    now_ms: i64,
) -> Option<Seed> {
    let q = &rt.quotas;
    let mut periods: Vec<BudgetPeriod> = key_scopes(rt, virtual_keys)
        .filter_map(|(_, s)| s.limits.budget.map(|(_, per)| per))
        .chain(q.budget_periods())
        .collect();
    periods.sort_by_key(|p| p.as_str());
    periods.dedup();
    let starts: Vec<(BudgetPeriod, i64)> = periods
        .into_iter()
        .filter_map(|p| Some((p, period_bounds(p, now_ms, q.zone())?.0)))
        .collect();
    if starts.is_empty() {
        return None;
    }
    let froms: Vec<i64> = starts.iter().map(|s| s.1).collect();
    match store.spend_since(&froms).await {
        Ok(rows) => Some(Seed {
            rows,
            starts,
            now_ms,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "budgets start at zero: reading this period's spend failed");
            None
        }
    }
}

/// Reads and seeds at once ([`read`], then [`Seed::apply`]): where no fleet shares a count.
pub(super) async fn seed(
    rt: &Runtime,
    virtual_keys: &[(Arc<str>, Arc<Scope>)],
    store: &Store,
    now_ms: i64,
) {
    if let Some(seed) = read(rt, virtual_keys, store, now_ms).await {
        seed.apply(rt, virtual_keys);
    }
}

fn key_scopes<'a>(
    rt: &'a Runtime,
    virtual_keys: &'a [(Arc<str>, Arc<Scope>)],
) -> impl Iterator<Item = (&'a str, &'a Arc<Scope>)> {
    rt.key_scopes()
        .chain(virtual_keys.iter().map(|(user, scope)| (&**user, scope)))
}

impl Seed {
    fn index(&self, per: BudgetPeriod) -> Option<usize> {
        self.starts.iter().position(|(p, _)| *p == per)
    }

    /// Starts tracking every end user with spend this period when end users have a budget, so
    /// that the fleet's first sync (which sets only tracked scopes' shares) comes before their
    /// seed ([`Seed::apply`]).
    pub(super) fn track_users(&self, rt: &Runtime) {
        if rt.quotas.user_period().is_some() {
            for user in totals(&self.rows, |r| r.user.as_deref()).keys() {
                rt.quotas.track_user(user, self.now_ms);
            }
        }
    }

    /// Seeds every budget of `rt` and of the virtual keys' scopes with the spend read. In
    /// fleet mode, after the first sync (see the module's doc).
    pub(super) fn apply(&self, rt: &Runtime, virtual_keys: &[(Arc<str>, Arc<Scope>)]) {
        let (q, now_ms) = (&rt.quotas, self.now_ms);
        let keys = totals(&self.rows, |r| r.key_user.as_deref());
        let users = totals(&self.rows, |r| r.user.as_deref());
        let teams = totals(&self.rows, |r| r.team.as_deref());
        for (user, scope) in key_scopes(rt, virtual_keys) {
            let spent = scope
                .limits
                .budget
                .and_then(|(_, per)| Some(keys.get(user)?[self.index(per)?]));
            if let Some(usd) = spent {
                q.seed_key(scope, usd, now_ms);
            }
        }
        for (team, sums) in &teams {
            if let Some(i) = q.team_period(team).and_then(|p| self.index(p)) {
                q.seed_team(team, sums[i], now_ms);
            }
        }
        if let Some(i) = q.user_period().and_then(|p| self.index(p)) {
            for (user, sums) in &users {
                q.seed_user(user, sums[i], now_ms);
            }
        }
        tracing::info!(
            rows = self.rows.len(),
            "budgets seeded with this period's spend"
        );
    }
}

/// Sums per name, one per start.
fn totals<'a>(
    rows: &'a [Spent],
    name: impl Fn(&'a Spent) -> Option<&'a str>,
) -> HashMap<&'a str, Vec<f64>> {
    let mut m: HashMap<&str, Vec<f64>> = HashMap::new();
    for r in rows {
        let Some(n) = name(r) else { continue };
        let sums = m.entry(n).or_insert_with(|| vec![0.0; r.usd.len()]);
        for (s, v) in sums.iter_mut().zip(&r.usd) {
            *s += v;
        }
    }
    m
}
