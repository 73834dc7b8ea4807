//! Read-only views of the limits and their counters: what `GET /api/quotas` answers, what the
//! budget gauges on `/metrics` show and what the budget alert rule reads.
//!
//! Every figure is read from the same atomics admission uses, with plain loads: a view never
//! takes a lock on a scope, never starts a new window or budget period (a window or period that
//! has ended reads as empty), and so never changes what the next request sees. The end users'
//! cache is walked shard by shard (each shard's read lock held briefly), on the admin's time,
//! not the proxy's.
//!
//! Trade-off: the figures of one scope are several loads, not one snapshot, so a view taken
//! while requests are admitted can be one request apart between two figures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use jiff::tz::TimeZone;
use serde::Serialize;

use super::scope::Scope;
use super::window::{window_at, Window, DAY_MS, MINUTE_MS};
use super::{Quotas, Reason, ScopeKind};
use crate::config::BudgetPeriod;

const KINDS: [ScopeKind; 5] = [
    ScopeKind::Key,
    ScopeKind::User,
    ScopeKind::Team,
    ScopeKind::Model,
    ScopeKind::Global,
];
const REASONS: [Reason; 4] = [
    Reason::Requests,
    Reason::Tokens,
    Reason::Concurrent,
    Reason::Budget,
];

/// Refusals by scope kind and reason since start (kept across reloads).
#[derive(Debug, Default)]
pub struct Rejected([AtomicU64; 20]);

impl Rejected {
    fn slot(kind: ScopeKind, reason: Reason) -> usize {
        let k = KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        let r = REASONS.iter().position(|r| *r == reason).unwrap_or(0);
        k * REASONS.len() + r
    }

    pub(super) fn count(&self, kind: ScopeKind, reason: Reason) {
        self.0[Rejected::slot(kind, reason)].fetch_add(1, Ordering::Relaxed);
    }

    /// Every (scope, reason) that refused at least once.
    fn counts(&self) -> Vec<RejectedCount> {
        let mut v = Vec::new();
        for kind in KINDS {
            for reason in REASONS {
                let n = self.0[Rejected::slot(kind, reason)].load(Ordering::Relaxed);
                if n > 0 {
                    v.push(RejectedCount {
                        scope: kind.as_str(),
                        reason: reason.as_str(),
                        count: n,
                    });
                }
            }
        }
        v
    }
}

/// Requests refused by one kind of scope for one reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RejectedCount {
    /// `key`, `user`, `team`, `model` or `global`.
    pub scope: &'static str,
    /// `requests`, `tokens`, `concurrent` or `budget`.
    pub reason: &'static str,
    pub count: u64,
}

/// One rate limit's window now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Rate {
    pub limit: u64,
    pub used: u64,
    pub remaining: u64,
    /// Seconds until the window resets (rounded up).
    pub reset_secs: u64,
}

/// Requests in flight against a concurrency cap (in fleet mode the fleet's: this replica's now
/// and the others' at the last sync).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InFlight {
    pub limit: u64,
    pub in_flight: u64,
}

/// A spend budget's current period.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BudgetView {
    pub budget_usd: f64,
    pub spent_usd: f64,
    /// `budget_usd - spent_usd`, at least 0.
    pub remaining_usd: f64,
    /// `spent_usd / budget_usd` (1 or more once spent).
    pub used_ratio: f64,
    /// `day`, `week` or `month`, in the report time zone.
    pub period: &'static str,
    /// When the period ends (RFC 3339, UTC).
    pub period_end: String,
    /// The same instant, unix milliseconds.
    pub period_end_ms: i64,
}

/// One scope's limits and where it stands.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ScopeView {
    /// `key`, `user`, `team`, `model` or `global`.
    pub scope: &'static str,
    /// A key's user (never its secret), the end user, team or model name; `global`.
    pub name: String,
    pub requests_per_minute: Option<Rate>,
    pub requests_per_day: Option<Rate>,
    pub tokens_per_minute: Option<Rate>,
    pub tokens_per_day: Option<Rate>,
    pub concurrent: Option<InFlight>,
    pub budget: Option<BudgetView>,
    /// Requests this scope refused since it was created (start, or the reload that added it).
    pub rejected: u64,
}

/// `GET /api/quotas`: every configured scope, the busiest end users, and refusals.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct QuotaView {
    /// The zone budget periods follow.
    pub time_zone: String,
    /// Keys with limits, teams, models and the gateway, in that order.
    pub scopes: Vec<ScopeView>,
    /// The end users most used now (spend, then requests today), at most the number asked for.
    pub users: Vec<ScopeView>,
    /// End users whose counters are kept now (`quotas.users.max_tracked` at most).
    pub users_tracked: usize,
    /// Refusals since start, per scope kind and reason (only those that happened).
    pub rejected: Vec<RejectedCount>,
}

/// A budget's state, for the gauges and the alert rule.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetUse {
    pub scope: ScopeKind,
    /// As in [`ScopeView::name`].
    pub name: String,
    /// Whether `/metrics` may name it: teams, models, the gateway, labelled keys.
    pub labelled: bool,
    /// Micro-dollars spent this period, and the budget.
    pub spent_micros: u64,
    pub budget_micros: u64,
    pub period: BudgetPeriod,
    pub period_end_ms: i64,
}

impl BudgetUse {
    pub fn spent_usd(&self) -> f64 {
        usd(self.spent_micros)
    }

    pub fn budget_usd(&self) -> f64 {
        usd(self.budget_micros)
    }

    /// Spent over budget (a budget is never 0: validation refuses it).
    pub fn used_ratio(&self) -> f64 {
        self.spent_micros as f64 / self.budget_micros.max(1) as f64
    }

    pub fn remaining_usd(&self) -> f64 {
        usd(self.budget_micros.saturating_sub(self.spent_micros))
    }
}

fn usd(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// A rate limit's figures: this replica's count plus the fleet's share at the last sync.
fn rate(
    (limit, w, fleet): (Option<u64>, &Window, &Window),
    now_ms: i64,
    len_ms: i64,
) -> Option<Rate> {
    let limit = limit?;
    let (id, reset_ms) = window_at(now_ms, len_ms);
    let used = w.used(id) + fleet.used(id);
    Some(Rate {
        limit,
        used,
        remaining: limit.saturating_sub(used),
        reset_secs: (reset_ms.max(0) as u64).div_ceil(1000),
    })
}

impl Scope {
    /// This scope's limits and counters at `now_ms`, shown as `name`.
    pub fn view(&self, name: &str, now_ms: i64, zone: &TimeZone) -> ScopeView {
        let (l, s) = (&self.limits, &self.state);
        let c = super::scope::counters(self);
        ScopeView {
            scope: self.kind.as_str(),
            name: name.to_owned(),
            requests_per_minute: rate(c[0], now_ms, MINUTE_MS),
            requests_per_day: rate(c[1], now_ms, DAY_MS),
            tokens_per_minute: rate(c[2], now_ms, MINUTE_MS),
            tokens_per_day: rate(c[3], now_ms, DAY_MS),
            concurrent: l.concurrent.map(|limit| InFlight {
                limit,
                in_flight: s.in_flight.get() + s.fleet_in_flight.get(now_ms),
            }),
            budget: self.budget_use(name, now_ms, zone).map(|b| BudgetView {
                budget_usd: b.budget_usd(),
                spent_usd: b.spent_usd(),
                remaining_usd: b.remaining_usd(),
                used_ratio: b.used_ratio(),
                period: b.period.as_str(),
                period_end: rfc3339(b.period_end_ms),
                period_end_ms: b.period_end_ms,
            }),
            rejected: s.rejected.load(Ordering::Relaxed),
        }
    }

    /// This scope's budget at `now_ms`, when it has one.
    pub fn budget_use(&self, name: &str, now_ms: i64, zone: &TimeZone) -> Option<BudgetUse> {
        let (budget, per) = self.limits.budget?;
        let (spent, end) = self.state.spend.peek(now_ms, per, zone);
        Some(BudgetUse {
            scope: self.kind,
            name: name.to_owned(),
            labelled: self.label || !matches!(self.kind, ScopeKind::Key | ScopeKind::User),
            spent_micros: spent,
            budget_micros: budget,
            period: per,
            period_end_ms: end,
        })
    }

    /// How much this scope is used now, to rank end users: spend, then requests and tokens.
    fn use_rank(&self, now_ms: i64, zone: &TimeZone) -> (u64, u64, u64, u64) {
        let s = &self.state;
        let spent = self
            .limits
            .budget
            .map_or(0, |(_, per)| s.spend.peek(now_ms, per, zone).0);
        let (day, _) = window_at(now_ms, DAY_MS);
        let (minute, _) = window_at(now_ms, MINUTE_MS);
        (
            spent,
            s.requests_day.used(day).max(s.requests_minute.used(minute)),
            s.tokens_day.used(day).max(s.tokens_minute.used(minute)),
            s.in_flight.get() + s.fleet_in_flight.get(now_ms),
        )
    }
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

impl Quotas {
    /// Every scope at `now_ms`: `keys` (a key's user and its scope), then teams, models and the
    /// gateway, by name; the `top_users` end users most used now.
    pub fn view<'a>(
        &self,
        keys: impl Iterator<Item = (&'a str, &'a Scope)>,
        top_users: usize,
        now_ms: i64,
    ) -> QuotaView {
        let zone = &self.zone;
        let mut scopes: Vec<ScopeView> = keys.map(|(n, s)| s.view(n, now_ms, zone)).collect();
        scopes.sort_by(|a, b| a.name.cmp(&b.name));
        scopes.extend(self.named().map(|(n, s)| s.view(n, now_ms, zone)));
        let (users, users_tracked) = match &self.users {
            Some(u) => {
                let mut all: Vec<_> = u
                    .iter()
                    .map(|(name, s)| (s.use_rank(now_ms, zone), name, s))
                    .collect();
                let tracked = all.len();
                let order = |a: &Ranked, b: &Ranked| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1));
                // The top N in linear time, then only those sorted: the cache may hold 100,000
                // users and the dashboard asks every 2 s.
                if top_users > 0 && top_users < tracked {
                    all.select_nth_unstable_by(top_users - 1, order);
                    all.truncate(top_users);
                }
                all.sort_by(order);
                let top = all.iter().take(top_users);
                let top = top.map(|(_, n, s)| s.view(n, now_ms, zone)).collect();
                (top, tracked)
            }
            None => (Vec::new(), 0),
        };
        QuotaView {
            time_zone: zone.iana_name().unwrap_or("UTC").to_owned(),
            scopes,
            users,
            users_tracked,
            rejected: self.rejected.counts(),
        }
    }

    /// Every budget at `now_ms`: `keys`' (as in [`Quotas::view`]), teams', models', the
    /// gateway's and, with `users`, each tracked end user's.
    pub fn budgets<'a>(
        &self,
        keys: impl Iterator<Item = (&'a str, &'a Scope)>,
        users: bool,
        now_ms: i64,
    ) -> Vec<BudgetUse> {
        let zone = &self.zone;
        let mut v: Vec<BudgetUse> = keys
            .filter_map(|(n, s)| s.budget_use(n, now_ms, zone))
            .collect();
        v.extend(
            self.named()
                .filter_map(|(n, s)| s.budget_use(n, now_ms, zone)),
        );
        if let Some(u) = self.users.as_ref().filter(|_| users) {
            v.extend(u.iter().filter_map(|(n, s)| s.budget_use(&n, now_ms, zone)));
        }
        v
    }

    /// Teams, models (each by name) and the gateway (`global`).
    fn named(&self) -> impl Iterator<Item = (&str, &Scope)> {
        let mut v = sorted(&self.teams);
        v.extend(sorted(&self.models));
        v.extend(self.global.as_deref().map(|s| ("global", s)));
        v.into_iter()
    }
}

/// An end user's use rank, id and scope.
type Ranked = ((u64, u64, u64, u64), String, Arc<Scope>);

fn sorted(m: &HashMap<String, Arc<Scope>>) -> Vec<(&str, &Scope)> {
    let mut v: Vec<(&str, &Scope)> = m.iter().map(|(n, s)| (n.as_str(), &**s)).collect();
    v.sort_by_key(|(n, _)| *n);
    v
}
