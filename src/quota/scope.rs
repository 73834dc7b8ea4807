//! One scope's limits and counters, and taking a request's share of them all-or-nothing.

use std::sync::Arc;

use jiff::tz::TimeZone;

use super::budget::{micros, Spend};
use super::window::{window_at, Gauge, Held, Window, DAY_MS, MINUTE_MS};
use super::{Figure, RateHeaders, Reason, ScopeKind};
use crate::config::{BudgetPeriod, LimitsConfig};

/// A scope's limits, built from its `LimitsConfig`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub requests_per_minute: Option<u64>,
    pub requests_per_day: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub tokens_per_day: Option<u64>,
    pub concurrent: Option<u64>,
    /// Micro-dollars per period.
    pub budget: Option<(u64, BudgetPeriod)>,
}

impl Limits {
    /// The limits a validated config sets; `None` when it sets none.
    pub fn from_config(c: &LimitsConfig) -> Option<Limits> {
        let l = Limits {
            requests_per_minute: c.requests_per_minute,
            requests_per_day: c.requests_per_day,
            tokens_per_minute: c.tokens_per_minute,
            tokens_per_day: c.tokens_per_day,
            concurrent: c.concurrent,
            budget: c.budget_usd.zip(c.per).map(|(usd, per)| (micros(usd), per)),
        };
        let none = Limits {
            requests_per_minute: None,
            requests_per_day: None,
            tokens_per_minute: None,
            tokens_per_day: None,
            concurrent: None,
            budget: None,
        };
        (l != none).then_some(l)
    }

    fn counts_tokens(&self) -> bool {
        self.tokens_per_minute.is_some() || self.tokens_per_day.is_some()
    }
}

/// One of a scope's four rate counters, in the order of [`Taken`]'s windows and
/// [`State::fleet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    RequestsMinute,
    RequestsDay,
    TokensMinute,
    TokensDay,
}

impl Counter {
    pub const ALL: [Counter; 4] = [
        Counter::RequestsMinute,
        Counter::RequestsDay,
        Counter::TokensMinute,
        Counter::TokensDay,
    ];

    /// Its name in the shared table.
    pub fn as_str(self) -> &'static str {
        match self {
            Counter::RequestsMinute => "requests_minute",
            Counter::RequestsDay => "requests_day",
            Counter::TokensMinute => "tokens_minute",
            Counter::TokensDay => "tokens_day",
        }
    }

    /// The counter named `name` in the shared table.
    pub fn parse(name: &str) -> Option<Counter> {
        Counter::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The length of its window, in milliseconds.
    pub fn len_ms(self) -> i64 {
        match self {
            Counter::RequestsMinute | Counter::TokensMinute => MINUTE_MS,
            Counter::RequestsDay | Counter::TokensDay => DAY_MS,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A scope's counters. They outlive a reload that keeps the scope's budget period.
#[derive(Debug, Default)]
pub struct State {
    pub(super) requests_minute: Window,
    pub(super) requests_day: Window,
    pub(super) tokens_minute: Window,
    pub(super) tokens_day: Window,
    /// What the rest of the fleet counted in each counter's window, as of the last sync, by
    /// [`Counter`] (fleet mode only: 0 on one replica). Written by the sync, read by admission;
    /// this replica's own counts never go in here, so nothing is counted twice.
    pub(super) fleet: [Window; 4],
    pub(super) in_flight: Gauge,
    /// The rest of the fleet's requests in flight, as of the last sync (fleet mode only).
    pub(super) fleet_in_flight: Held,
    pub(super) spend: Spend,
    /// Requests this scope refused (any reason) since it was created.
    pub(super) rejected: std::sync::atomic::AtomicU64,
}

/// One limited key, user, team, model or the gateway.
#[derive(Debug)]
pub struct Scope {
    pub kind: ScopeKind,
    pub limits: Limits,
    pub state: Arc<State>,
    /// A key the operator marked (`limits.label`): its budget gauges name it by its user.
    pub label: bool,
}

impl Scope {
    /// A scope with fresh counters, or with `previous`'s when the budget period is unchanged
    /// (a reload that changes a rate keeps counting; one that changes the period starts over).
    pub fn new(kind: ScopeKind, limits: Limits, previous: Option<&Scope>) -> Scope {
        let period = |l: &Limits| l.budget.map(|(_, per)| per);
        let state = previous
            .filter(|p| period(&p.limits) == period(&limits))
            .map_or_else(Arc::default, |p| p.state.clone());
        Scope {
            kind,
            limits,
            state,
            label: false,
        }
    }

    /// This scope, marked as one `/metrics` may name (`limits.label` on a key).
    pub fn labelled(self, label: bool) -> Scope {
        Scope { label, ..self }
    }

    /// The figures for the `x-ratelimit-*` headers at `now_ms`: this scope's tightest request
    /// and token limits.
    pub(super) fn figures(&self, now_ms: i64, into: &mut RateHeaders) {
        let (minute, minute_reset) = window_at(now_ms, MINUTE_MS);
        let (day, day_reset) = window_at(now_ms, DAY_MS);
        let rows = [
            (minute, minute_reset, false),
            (day, day_reset, false),
            (minute, minute_reset, true),
            (day, day_reset, true),
        ];
        for ((limit, w, fleet), (id, reset_ms, tokens)) in counters(self).into_iter().zip(rows) {
            let Some(limit) = limit else { continue };
            let f = Figure {
                limit,
                remaining: limit.saturating_sub(w.used(id) + fleet.used(id)),
                reset_ms,
            };
            let slot = if tokens {
                &mut into.tokens
            } else {
                &mut into.requests
            };
            if slot.is_none_or(|old| (f.remaining, f.limit) < (old.remaining, old.limit)) {
                *slot = Some(f);
            }
        }
    }
}

/// Why a scope refused a request, with the figures for the message.
#[derive(Debug)]
pub struct Refusal {
    pub reason: Reason,
    /// `per minute`, `per day`, or the budget period.
    pub per: &'static str,
    pub limit: u64,
    pub used: u64,
    pub requested: u64,
    pub reset_ms: i64,
}

/// What one request took from one scope; given back on rollback, and its concurrency slot
/// when dropped.
#[derive(Debug)]
pub struct Taken {
    pub scope: Arc<Scope>,
    /// The window each of requests per minute, requests per day, tokens per minute and tokens
    /// per day was counted in: the clock's, or a newer one a counter already held (a caller
    /// that read the clock just before a boundary). Give-backs and corrections go there.
    windows: [u64; 4],
    /// Tokens charged at admission (the estimate), 0 when the scope counts none.
    tokens: u64,
    entered: bool,
}

impl Taken {
    /// Takes one request (and `tokens` estimated tokens) from `scope`, or nothing.
    ///
    /// # Errors
    /// The first limit that has no room.
    pub fn take(
        scope: &Arc<Scope>,
        tokens: u64,
        now_ms: i64,
        zone: &TimeZone,
    ) -> Result<Taken, Refusal> {
        let (l, s) = (&scope.limits, &scope.state);
        let (minute, minute_reset) = window_at(now_ms, MINUTE_MS);
        let (day, day_reset) = window_at(now_ms, DAY_MS);
        if let Some((budget, per)) = l.budget {
            let (spent, end) = s.spend.current(now_ms, per, zone);
            if spent >= budget {
                return Err(Refusal {
                    reason: Reason::Budget,
                    per: per.as_str(),
                    limit: budget,
                    used: spent,
                    requested: 0,
                    reset_ms: end - now_ms,
                });
            }
        }
        // From here on, `t` gives back what it took if a later limit refuses.
        let mut t = Taken {
            scope: scope.clone(),
            windows: [minute, day, minute, day],
            tokens: if l.counts_tokens() { tokens } else { 0 },
            entered: false,
        };
        if let Some(limit) = l.concurrent {
            let others = s.fleet_in_flight.get(now_ms);
            let room = limit.saturating_sub(others);
            s.in_flight.enter(room).map_err(|own| Refusal {
                reason: Reason::Concurrent,
                per: "at once",
                limit,
                used: own + others,
                requested: 1,
                reset_ms: 1000,
            })?;
            t.entered = true;
        }
        let rows = [
            (minute_reset, 1, Reason::Requests, "per minute"),
            (day_reset, 1, Reason::Requests, "per day"),
            (minute_reset, tokens, Reason::Tokens, "per minute"),
            (day_reset, tokens, Reason::Tokens, "per day"),
        ];
        let mut took = [false; 4];
        for (i, ((limit, w, fleet), (reset_ms, n, reason, per))) in
            counters(scope).into_iter().zip(rows).enumerate()
        {
            let Some(limit) = limit else { continue };
            match w.take(t.windows[i], n, limit, fleet.used(t.windows[i])) {
                Ok((landed, _)) => {
                    t.windows[i] = landed;
                    took[i] = true;
                }
                Err(used) => {
                    t.give_back(&took);
                    return Err(Refusal {
                        reason,
                        per,
                        limit,
                        used,
                        requested: n,
                        reset_ms,
                    });
                }
            }
        }
        Ok(t)
    }

    /// Gives back the request and tokens of each window marked in `took`, in the window it was
    /// counted in.
    fn give_back(&self, took: &[bool; 4]) {
        let amounts = [1, 1, self.tokens as i64, self.tokens as i64];
        for (i, (_, w, _)) in counters(&self.scope).into_iter().enumerate() {
            if took[i] {
                w.add(self.windows[i], -amounts[i]);
            }
        }
    }

    /// Gives back the request and tokens taken (another scope refused the request).
    pub fn rollback(&self) {
        let limited = counters(&self.scope).map(|(limit, _, _)| limit.is_some());
        self.give_back(&limited);
    }

    /// Corrects the token estimate with the answer's `actual` tokens, and charges `cost`
    /// micro-dollars to the budget, at `now_ms`.
    pub fn settle(&self, actual: Option<u64>, cost: u64, now_ms: i64, zone: &TimeZone) {
        let (l, s) = (&self.scope.limits, &self.scope.state);
        if let Some(actual) = actual.filter(|_| l.counts_tokens()) {
            let delta = actual as i64 - self.tokens as i64;
            let (minute, _) = window_at(now_ms, MINUTE_MS);
            let (day, _) = window_at(now_ms, DAY_MS);
            for (limit, w, then, now) in [
                (
                    l.tokens_per_minute,
                    &s.tokens_minute,
                    self.windows[2],
                    minute,
                ),
                (l.tokens_per_day, &s.tokens_day, self.windows[3], day),
            ] {
                // A window that has passed keeps the estimate; the rest of the usage counts
                // in the window it is learnt in.
                let delta = if then == now { delta } else { delta.max(0) };
                if limit.is_some() && delta != 0 {
                    w.add(now, delta);
                }
            }
        }
        if let Some((_, per)) = l.budget {
            s.spend.charge(cost, now_ms, per, zone);
        }
    }
}

/// A scope's four rate limits, their counters and the fleet's share of each, in the order of
/// [`Counter`] (and of [`Taken`]'s `windows`).
pub(super) fn counters(scope: &Scope) -> [(Option<u64>, &Window, &Window); 4] {
    let (l, s) = (&scope.limits, &scope.state);
    let f = |c: Counter| &s.fleet[c.index()];
    [
        (
            l.requests_per_minute,
            &s.requests_minute,
            f(Counter::RequestsMinute),
        ),
        (l.requests_per_day, &s.requests_day, f(Counter::RequestsDay)),
        (
            l.tokens_per_minute,
            &s.tokens_minute,
            f(Counter::TokensMinute),
        ),
        (l.tokens_per_day, &s.tokens_day, f(Counter::TokensDay)),
    ]
}

impl Drop for Taken {
    fn drop(&mut self) {
        if self.entered {
            self.scope.state.in_flight.leave();
        }
    }
}
