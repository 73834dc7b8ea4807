//! Quotas: requests and tokens per minute and per day, requests in flight, and
//! spend budgets per day, week or month, for a gateway key, an end user, a team, a model and
//! the whole gateway.
//!
//! Owns the counters, the admission decision and read-only views of both (`view.rs`: what
//! `/api/quotas`, the budget gauges and the budget alert rule read); knows nothing of HTTP (the proxy turns a
//! [`Rejection`] into a 429 and [`RateHeaders`] into `x-ratelimit-*` headers) nor of the store
//! (`app` seeds budgets from it at start).
//!
//! How a request is counted:
//! - **admission** ([`Quotas::admit`]): every scope that applies takes one request, the
//!   estimated prompt tokens and a concurrency slot, all or nothing; a scope whose budget is
//!   spent refuses. No lock: fixed windows and gauges are single atomics (`window.rs`), scopes
//!   from config sit in maps built once per config load, and end users live in a bounded,
//!   sharded cache created on first sight.
//! - **settlement** ([`Ticket::settle`]): when the record is finished (the answer has ended, or
//!   the client went away), the token estimate is corrected with the answer's usage and the
//!   request's cost is added to the budgets; dropping the ticket frees the concurrency slots.
//!
//! What this can miss: a fixed window admits up to twice its limit across a window boundary;
//! tokens are counted against a limit only once the answer ends, so requests in flight together
//! may overshoot a token limit by their completions; a request's cost is only known at its end,
//! so the request that crosses a budget completes and the next one is refused. With several
//! replicas on one PostgreSQL store, rate counters, budgets and concurrency caps of keys, end
//! users, teams, models and the gateway are shared through it every `quotas.sync_ms`, with a
//! bounded overshoot (`fleet.rs`).

mod budget;
mod fleet;
mod scope;
mod shares;
mod users;
mod view;
mod window;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use jiff::tz::TimeZone;

pub use budget::{micros, period_bounds};
pub use fleet::{apply as apply_fleet, lease_ms, Ledger, Meter, Tally};
pub use scope::{Counter, Limits, Scope};
pub use shares::{Others, Sums, READ_MARGIN_MS};
pub use view::{BudgetUse, BudgetView, InFlight, QuotaView, Rate, RejectedCount, ScopeView};

use crate::config::Config;
use scope::{Refusal, Taken};
use users::Users;

/// Reads every spend budget now (`app` wires it to the proxy's quota counters for the alert
/// rule and the reports).
pub type BudgetsFn = Arc<dyn Fn() -> Vec<BudgetUse> + Send + Sync>;

/// Which kind of scope a limit belongs to; a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeKind {
    Key,
    User,
    Team,
    Model,
    Global,
}

impl ScopeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Key => "key",
            ScopeKind::User => "user",
            ScopeKind::Team => "team",
            ScopeKind::Model => "model",
            ScopeKind::Global => "global",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            ScopeKind::Key => "this key",
            ScopeKind::User => "this user",
            ScopeKind::Team => "this team",
            ScopeKind::Model => "this model",
            ScopeKind::Global => "this gateway",
        }
    }
}

/// Which limit refused a request; a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Requests,
    Tokens,
    Concurrent,
    Budget,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Requests => "requests",
            Reason::Tokens => "tokens",
            Reason::Concurrent => "concurrent",
            Reason::Budget => "budget",
        }
    }
}

/// One limit's state for the `x-ratelimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Figure {
    pub limit: u64,
    pub remaining: u64,
    /// Milliseconds until the window resets.
    pub reset_ms: i64,
}

/// The tightest request limit and the tightest token limit that apply to a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Figure>,
    pub tokens: Option<Figure>,
}

/// A request refused by a limit.
#[derive(Debug)]
pub struct Rejection {
    pub scope: ScopeKind,
    pub reason: Reason,
    /// What to tell the client (names no key or user).
    pub message: String,
    /// Seconds until the limit has room again (at least 1).
    pub retry_after_secs: u64,
    /// Whether waiting can help: not for a budget (money does not come back within a retry
    /// window) nor for a request larger than its limit.
    pub retryable: bool,
    pub headers: RateHeaders,
}

/// What a request is, as far as its limits go.
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    /// The gateway key's own scope, when it has limits.
    pub key: Option<&'a Arc<Scope>>,
    /// The end user the request is recorded under.
    pub user: Option<&'a str>,
    pub team: Option<&'a str>,
    /// The model as requested, and the upstream model id it resolves to.
    pub model: Option<&'a str>,
    pub upstream_model: Option<&'a str>,
    /// Estimated prompt tokens.
    pub tokens: u64,
    /// Unix milliseconds.
    pub now_ms: i64,
}

impl<'a> Ask<'a> {
    /// A request of one prompt token that only `key`'s limits see (no user, team or model), at
    /// `now_ms`: what tests and benches of a key's counters ask.
    pub fn key_only(key: &'a Arc<Scope>, now_ms: i64) -> Ask<'a> {
        Ask {
            key: Some(key),
            user: None,
            team: None,
            model: None,
            upstream_model: None,
            tokens: 1,
            now_ms,
        }
    }

    /// A request of one prompt token that only end user `user`'s limits (and the gateway's)
    /// see, at `now_ms`: what tests and benches of an end user's counters ask.
    pub fn user_only(user: &'a str, now_ms: i64) -> Ask<'a> {
        Ask {
            key: None,
            user: Some(user),
            team: None,
            model: None,
            upstream_model: None,
            tokens: 1,
            now_ms,
        }
    }
}

/// Every limit from config, built once per config load.
pub struct Quotas {
    users: Option<Users>,
    teams: HashMap<String, Arc<Scope>>,
    models: HashMap<String, Arc<Scope>>,
    global: Option<Arc<Scope>>,
    zone: TimeZone,
    /// Refusals since start, by scope kind and reason; carried across reloads.
    rejected: Arc<view::Rejected>,
}

impl Quotas {
    /// Builds the limits of `config`'s `quotas:` section, keeping the counters of `previous`
    /// (the runtime being replaced) for every scope still there.
    pub fn build(config: &Config, previous: Option<&Quotas>) -> Quotas {
        let q = &config.quotas;
        let named = |map: &std::collections::BTreeMap<String, crate::config::LimitsConfig>,
                     kind: ScopeKind,
                     prev: Option<&HashMap<String, Arc<Scope>>>| {
            map.iter()
                .filter_map(|(name, c)| {
                    let limits = Limits::from_config(c)?;
                    let old = prev.and_then(|p| p.get(name)).map(|s| &**s);
                    Some((name.clone(), Arc::new(Scope::new(kind, limits, old))))
                })
                .collect::<HashMap<_, _>>()
        };
        let global = Limits::from_config(&q.global).map(|l| {
            let old = previous.and_then(|p| p.global.as_deref());
            Arc::new(Scope::new(ScopeKind::Global, l, old))
        });
        let users = Limits::from_config(&q.users.default).map(|l| {
            match previous.and_then(|p| p.users.as_ref()) {
                Some(old) if old.fits(l, q.users.max_tracked) => old.clone(),
                _ => Users::new(l, q.users.max_tracked),
            }
        });
        Quotas {
            users,
            teams: named(&q.teams, ScopeKind::Team, previous.map(|p| &p.teams)),
            models: named(&q.models, ScopeKind::Model, previous.map(|p| &p.models)),
            global,
            zone: config.report.schedule.zone().unwrap_or(TimeZone::UTC),
            rejected: previous.map_or_else(Arc::default, |p| p.rejected.clone()),
        }
    }

    /// The time zone budget periods follow.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// Admits a request or refuses it. `Ok(None)`: no limit applies.
    ///
    /// # Errors
    /// The first limit with no room, in the order key, user, team, model, gateway.
    pub fn admit(&self, ask: &Ask<'_>) -> Result<Option<Ticket>, Rejection> {
        let scopes = self.scopes(ask);
        let n = scopes.iter().flatten().count();
        if n == 0 {
            return Ok(None);
        }
        // The one allocation of an admission: the ticket outlives the request's phases.
        let mut taken = Vec::with_capacity(n);
        for scope in scopes.iter().flatten() {
            match Taken::take(scope, ask.tokens, ask.now_ms, &self.zone) {
                Ok(t) => taken.push(t),
                Err(r) => {
                    taken.iter().for_each(Taken::rollback);
                    drop(taken);
                    scope.state.rejected.fetch_add(1, Ordering::Relaxed);
                    self.rejected.count(scope.kind, r.reason);
                    return Err(self.reject(scope.kind, r, &scopes, ask.now_ms));
                }
            }
        }
        let headers = headers(&scopes, ask.now_ms);
        Ok(Some(Ticket {
            taken,
            zone: self.zone.clone(),
            headers,
        }))
    }

    /// The scopes with limits that apply to `ask`, most specific first, in an array on the
    /// stack (no allocation to list them).
    fn scopes(&self, ask: &Ask<'_>) -> Scopes {
        let by_name = ask.model.and_then(|m| self.models.get(m));
        let by_id = ask
            .upstream_model
            .and_then(|m| self.models.get(m))
            .filter(|s| by_name.is_none_or(|n| !Arc::ptr_eq(n, s)));
        [
            ask.key.cloned(),
            self.users
                .as_ref()
                .zip(ask.user)
                .map(|(u, id)| u.scope(id, ask.now_ms, &self.zone)),
            ask.team.and_then(|t| self.teams.get(t)).cloned(),
            by_name.cloned(),
            by_id.cloned(),
            self.global.clone(),
        ]
    }

    fn reject(&self, kind: ScopeKind, r: Refusal, scopes: &Scopes, now_ms: i64) -> Rejection {
        let wait = go_duration(r.reset_ms);
        let too_large = r.requested > r.limit;
        let message = match r.reason {
            Reason::Tokens if too_large => format!(
                "Request too large for tokens {} on {}: limit {}, requested {}. Make the request smaller.",
                r.per,
                kind.noun(),
                r.limit,
                r.requested,
            ),
            Reason::Requests | Reason::Tokens => format!(
                "Rate limit reached for {} {} on {}: limit {}, used {}, requested {}. Please try again in {wait}.",
                r.reason.as_str(),
                r.per,
                kind.noun(),
                r.limit,
                r.used,
                r.requested,
            ),
            Reason::Concurrent => format!(
                "Too many requests in flight on {}: limit {}. Please try again when one has finished.",
                kind.noun(),
                r.limit
            ),
            Reason::Budget => format!(
                "Budget exceeded on {}: spent ${} of ${} this {}; it resets in {wait}.",
                kind.noun(),
                dollars(r.used),
                dollars(r.limit),
                r.per
            ),
        };
        Rejection {
            scope: kind,
            reason: r.reason,
            message,
            retry_after_secs: (r.reset_ms.max(1) as u64).div_ceil(1000),
            retryable: r.reason != Reason::Budget && !too_large,
            headers: headers(scopes, now_ms),
        }
    }

    /// The budget period of team `team`, when it has a budget.
    pub fn team_period(&self, team: &str) -> Option<crate::config::BudgetPeriod> {
        Some(self.teams.get(team)?.limits.budget?.1)
    }

    /// The budget period of end users, when they have a budget.
    pub fn user_period(&self) -> Option<crate::config::BudgetPeriod> {
        Some(self.users.as_ref()?.limits().budget?.1)
    }

    /// Sets the spend of the current period of team `team` (at start, from the store).
    pub fn seed_team(&self, team: &str, usd: f64, now_ms: i64) {
        if let Some(s) = self.teams.get(team) {
            seed(s, usd, now_ms, &self.zone);
        }
    }

    /// Sets the spend of the current period of end user `user` (at start, from the store).
    pub fn seed_user(&self, user: &str, usd: f64, now_ms: i64) {
        if let Some(users) = self.users.as_ref().filter(|u| u.limits().budget.is_some()) {
            seed(
                &users.scope(user, now_ms, &self.zone),
                usd,
                now_ms,
                &self.zone,
            );
        }
    }

    /// Starts tracking end user `user` at `now_ms` (at start, before the fleet's first sync).
    pub fn track_user(&self, user: &str, now_ms: i64) {
        if let Some(users) = &self.users {
            users.scope(user, now_ms, &self.zone);
        }
    }

    /// Starts end users first seen from now on from `others` (the fleet sync's sums of the
    /// other replicas' counts), not from 0.
    pub fn set_fleet_users(&self, others: Arc<std::sync::RwLock<Sums>>) {
        if let Some(users) = &self.users {
            users.set_others(others);
        }
    }

    /// Sets the spend of the current period of a key's scope (at start, from the store).
    pub fn seed_key(&self, key: &Scope, usd: f64, now_ms: i64) {
        seed(key, usd, now_ms, &self.zone);
    }

    /// The scopes whose rate counters, budgets and concurrency caps the fleet shares, by their
    /// fleet-wide id: every tracked end user (`user:<digest>`, `users::fleet_id`), team, model
    /// and the gateway (`team:<name>`, `model:<name>`, `global`). Keys are named where they are
    /// kept.
    pub fn shared(&self) -> impl Iterator<Item = (String, Arc<Scope>)> + '_ {
        let users = self.users.iter().flat_map(Users::shared);
        let users = users.map(|(id, s)| (String::from(&*id), s));
        let teams = self
            .teams
            .iter()
            .map(|(n, s)| (format!("team:{n}"), s.clone()));
        let models = self
            .models
            .iter()
            .map(|(n, s)| (format!("model:{n}"), s.clone()));
        let global = self.global.iter().map(|s| ("global".to_owned(), s.clone()));
        users.chain(teams).chain(models).chain(global)
    }

    /// The budget periods any scope uses (what the seeding query must cover).
    pub fn budget_periods(&self) -> Vec<crate::config::BudgetPeriod> {
        let mut v: Vec<_> = self
            .teams
            .values()
            .map(|s| s.limits)
            .chain(self.users.as_ref().map(Users::limits))
            .filter_map(|l| l.budget.map(|(_, per)| per))
            .collect();
        v.sort_by_key(|p| p.as_str());
        v.dedup();
        v
    }
}

fn seed(s: &Scope, usd: f64, now_ms: i64, zone: &TimeZone) {
    if let Some((_, per)) = s.limits.budget {
        s.state.spend.seed(micros(usd), now_ms, per, zone);
    }
}

/// The most scopes a request can count against: key, user, team, model by name, model by
/// upstream id, gateway.
const MAX_SCOPES: usize = 6;

/// The scopes a request counts against, in [`Quotas::scopes`]' order.
type Scopes = [Option<Arc<Scope>>; MAX_SCOPES];

/// The tightest figures over `scopes`.
fn headers(scopes: &Scopes, now_ms: i64) -> RateHeaders {
    let mut h = RateHeaders::default();
    for s in scopes.iter().flatten() {
        s.figures(now_ms, &mut h);
    }
    h
}

/// An admitted request's hold on its limits. Settle it when the request's record is finished;
/// dropping it (settled or not) frees its concurrency slots.
#[derive(Debug)]
pub struct Ticket {
    taken: Vec<Taken>,
    zone: TimeZone,
    /// The tightest limits after this request was counted.
    pub headers: RateHeaders,
}

impl Ticket {
    /// Whether a limit needs the request's cost (a budget applies).
    pub fn wants_cost(&self) -> bool {
        self.taken.iter().any(|t| t.scope.limits.budget.is_some())
    }

    /// Corrects the token estimate with the `tokens` the answer reported (prompt and
    /// completion; `None`: unknown, the estimate stands) and adds `cost_usd` to the budgets.
    pub fn settle(self, tokens: Option<u64>, cost_usd: Option<f64>, now_ms: i64) {
        let cost = cost_usd.map_or(0, micros);
        for t in &self.taken {
            t.settle(tokens, cost, now_ms, &self.zone);
        }
    }
}

/// Micro-dollars as dollars: cents from $1 up, else as many digits as it takes (`$0.0012`).
pub fn dollars(micros: u64) -> String {
    let usd = micros as f64 / 1e6;
    if usd >= 1.0 {
        format!("{usd:.2}")
    } else {
        let s = format!("{usd:.6}");
        let s = s.trim_end_matches('0');
        s.strip_suffix('.')
            .map_or_else(|| s.to_owned(), |s| format!("{s}.00"))
    }
}

/// A duration in Go's format, as OpenAI writes `x-ratelimit-reset-*`: `12ms`, `1s`, `6m0s`,
/// `1h2m3.5s`.
pub fn go_duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:03}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests;
