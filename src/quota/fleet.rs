//! Rate counters and budgets shared between replicas (fleet mode: several replicas on one
//! PostgreSQL store), as plain data and arithmetic; `app` moves the rows through the store.
//!
//! Each replica keeps counting alone on the hot path (`Window::take`, one compare-and-swap; a
//! budget's `Spend`, a few atomic loads) and admits against its own count plus the rest of the
//! fleet's, as of the last sync, kept beside each counter (`State::fleet`, `Spend`'s share). A
//! sync, every `quotas.sync_ms`, off the request path:
//! 1. [`Ledger::changes`]: this replica's own count in each current window of each shared
//!    scope, and its own spend in each current budget period (a [`Meter`] each), where it
//!    differs from what was last sent ([`Tally`] rows). A budget period's window is its start
//!    in unix ms (local midnight in the report time zone), its row's end the period's end;
//! 2. the store keeps one row per (scope, meter, window, replica) and the replica overwrites
//!    its own rows (an absolute count, not a delta: a sync that fails or is retried cannot
//!    count anything twice);
//! 3. the store sums the *other* replicas' rows for the current windows, and [`apply`] sets
//!    each counter's and budget's fleet share to that sum (0 where no other replica has a
//!    row): this replica's own count is never in it.
//!
//! A replica's row holds only what this process counted: a budget's spend read back from the
//! records at start (`Spend::seed`) is not in it, so replicas started together do not each
//! pass the same records' dollars on to the others.
//!
//! What it can miss: between two syncs a replica does not see what the others admit or spend,
//! so the fleet can overshoot a limit or a budget by what the other replicas admit in that
//! blind time (README, Quotas, gives the bounds). End users' counters and budgets are not
//! shared (each replica counts its own: there can be 100,000 of them, and their ids are the
//! clients'); nor are concurrency caps (per replica). Replicas' clocks must agree (NTP) and
//! their report time zones too: windows are clock minutes and UTC days, budget periods that
//! zone's days, weeks and months.

use std::collections::HashMap;

use jiff::tz::TimeZone;

use super::budget::period_bounds;
use super::scope::{counters, Counter, Scope};
use super::window::window_at;
use crate::config::BudgetPeriod;

/// What a shared row counts: one of a scope's rate counters, or its spend in its budget period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Meter {
    Rate(Counter),
    /// Micro-dollars spent in the period (day, week or month in the report time zone).
    Spend(BudgetPeriod),
}

impl Meter {
    /// Its name in the shared table (`counter`).
    pub fn as_str(self) -> &'static str {
        match self {
            Meter::Rate(c) => c.as_str(),
            Meter::Spend(BudgetPeriod::Day) => "spend_day",
            Meter::Spend(BudgetPeriod::Week) => "spend_week",
            Meter::Spend(BudgetPeriod::Month) => "spend_month",
        }
    }

    /// The meter named `name` in the shared table; `None` for a name this version does not
    /// know (a newer replica's).
    pub fn parse(name: &str) -> Option<Meter> {
        let spend = [BudgetPeriod::Day, BudgetPeriod::Week, BudgetPeriod::Month].map(Meter::Spend);
        Counter::ALL
            .map(Meter::Rate)
            .into_iter()
            .chain(spend)
            .find(|m| m.as_str() == name)
    }
}

/// One replica's count in one window of one meter of one scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    /// The scope's fleet-wide id (`key:<digest>:<user>`, `vkey:<id>`, `team:<name>`,
    /// `model:<name>`, `global`; never a secret nor an end user's id).
    pub scope: String,
    pub meter: Meter,
    /// The window's number: for a rate, unix ms divided by its length; for spend, the unix ms
    /// the budget period starts.
    pub window: i64,
    /// Requests, tokens or micro-dollars.
    pub used: u64,
    /// Unix ms the window ends: its rows are useless after.
    pub ends_ms: i64,
}

/// The current window of `counter` at `now_ms`: its number, its end, and the 24-bit id its
/// `Window` keeps ([`window_at`]'s).
fn current(counter: Counter, now_ms: i64) -> (i64, i64, u64) {
    let len = counter.len_ms();
    let (id, reset_ms) = window_at(now_ms, len);
    (now_ms.div_euclid(len), now_ms + reset_ms, id)
}

/// The budget periods current at one instant, `[start, end)` unix ms, worked out once per sync
/// rather than once per scope (a time zone lookup each).
struct Periods([(BudgetPeriod, Option<(i64, i64)>); 3]);

impl Periods {
    fn at(now_ms: i64, zone: &TimeZone) -> Periods {
        Periods(
            [BudgetPeriod::Day, BudgetPeriod::Week, BudgetPeriod::Month]
                .map(|p| (p, period_bounds(p, now_ms, zone))),
        )
    }

    fn get(&self, per: BudgetPeriod) -> Option<(i64, i64)> {
        self.0.iter().find(|(p, _)| *p == per)?.1
    }

    /// The current window of `meter` (number and end); `None` for an instant out of range.
    fn window(&self, meter: Meter, now_ms: i64) -> Option<(i64, i64)> {
        match meter {
            Meter::Rate(c) => {
                let (window, ends_ms, _) = current(c, now_ms);
                Some((window, ends_ms))
            }
            Meter::Spend(per) => self.get(per),
        }
    }
}

/// What this replica last sent per (scope, meter), so a sync sends only what changed.
#[derive(Debug, Default)]
pub struct Ledger {
    sent: HashMap<(String, Meter), (i64, u64)>,
}

impl Ledger {
    /// This replica's own counts and spend, in the current windows and budget periods (in
    /// `zone`) at `now_ms` of every limited counter and budget of `scopes` (id, scope), that
    /// differ from what was last sent. A window not sent yet counts as sent at 0, so an idle
    /// scope sends nothing.
    pub fn changes<'a>(
        &self,
        scopes: impl IntoIterator<Item = (&'a str, &'a Scope)>,
        now_ms: i64,
        zone: &TimeZone,
    ) -> Vec<Tally> {
        let periods = Periods::at(now_ms, zone);
        let mut out = Vec::new();
        for (id, scope) in scopes {
            for (meter, window, used, ends_ms) in own(scope, now_ms, &periods) {
                let before = match self.sent.get(&(id.to_owned(), meter)) {
                    Some(&(w, n)) if w == window => n,
                    _ => 0,
                };
                if used != before {
                    out.push(Tally {
                        scope: id.to_owned(),
                        meter,
                        window,
                        used,
                        ends_ms,
                    });
                }
            }
        }
        out
    }

    /// Records `tallies` as sent (once the store has them), and forgets what was sent for
    /// windows and periods that have ended by `now_ms`.
    pub fn commit(&mut self, tallies: &[Tally], now_ms: i64, zone: &TimeZone) {
        for t in tallies {
            self.sent
                .insert((t.scope.clone(), t.meter), (t.window, t.used));
        }
        let periods = Periods::at(now_ms, zone);
        self.sent.retain(|(_, m), (window, _)| {
            periods
                .window(*m, now_ms)
                .is_some_and(|(now, _)| now <= *window)
        });
    }
}

/// `scope`'s own count in the current window of each limited counter, and its own spend in
/// the current budget period: (meter, window, used, ends).
fn own(scope: &Scope, now_ms: i64, periods: &Periods) -> Vec<(Meter, i64, u64, i64)> {
    let mut out = Vec::new();
    for (c, (limit, own, _)) in Counter::ALL.into_iter().zip(counters(scope)) {
        if limit.is_some() {
            let (window, ends_ms, packed) = current(c, now_ms);
            out.push((Meter::Rate(c), window, own.used(packed), ends_ms));
        }
    }
    let budget = scope.limits.budget.map(|(_, per)| per);
    if let Some((per, (start, end))) = budget.and_then(|per| Some((per, periods.get(per)?))) {
        out.push((Meter::Spend(per), start, scope.state.spend.own(end), end));
    }
    out
}

/// Sets the fleet's share of every limited counter and budget of `scopes` (id, scope) to the
/// sum of the other replicas' rows in `others` for the current window or period (in `zone`) at
/// `now_ms`; 0 where they have none. Rows for other windows or unknown scopes are ignored.
pub fn apply<'a>(
    scopes: impl IntoIterator<Item = (&'a str, &'a Scope)>,
    others: &[Tally],
    now_ms: i64,
    zone: &TimeZone,
) {
    let periods = Periods::at(now_ms, zone);
    let mut sums: HashMap<(&str, Meter, i64), u64> = HashMap::new();
    for t in others {
        let sum = sums
            .entry((t.scope.as_str(), t.meter, t.window))
            .or_default();
        *sum = sum.saturating_add(t.used);
    }
    for (id, scope) in scopes {
        let sum = |m: Meter, window: i64| sums.get(&(id, m, window)).copied().unwrap_or(0);
        for (c, (limit, _, fleet)) in Counter::ALL.into_iter().zip(counters(scope)) {
            if limit.is_none() {
                continue;
            }
            let (window, _, packed) = current(c, now_ms);
            fleet.set(packed, sum(Meter::Rate(c), window));
        }
        let budget = scope.limits.budget.map(|(_, per)| per);
        if let Some((per, (start, end))) = budget.and_then(|per| Some((per, periods.get(per)?))) {
            scope
                .state
                .spend
                .set_fleet(end, sum(Meter::Spend(per), start));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{BudgetPeriod, Config, LimitsConfig};
    use crate::quota::{Ask, Limits, Quotas, ScopeKind};

    /// 2026-01-15T12:00:00Z, at the start of a minute.
    const NOW: i64 = 1_768_478_400_000;
    const MINUTE: i64 = NOW / 60_000;
    const DAY: i64 = NOW / 86_400_000;

    fn key(per_minute: u64, per_day: Option<u64>) -> Arc<Scope> {
        let c = LimitsConfig {
            requests_per_minute: Some(per_minute),
            requests_per_day: per_day,
            ..LimitsConfig::default()
        };
        let limits = Limits::from_config(&c).expect("limits");
        Arc::new(Scope::new(ScopeKind::Key, limits, None))
    }

    /// Admits `n` requests on `k` at `now_ms`; how many got in.
    fn admit(q: &Quotas, k: &Arc<Scope>, n: u64, now_ms: i64) -> u64 {
        let ask = Ask::key_only(k, now_ms);
        (0..n).filter(|_| q.admit(&ask).is_ok()).count() as u64
    }

    fn row(scope: &str, counter: Counter, window: i64, used: u64) -> Tally {
        let len = counter.len_ms();
        Tally {
            scope: scope.into(),
            meter: Meter::Rate(counter),
            window,
            used,
            ends_ms: (window + 1) * len,
        }
    }

    #[test]
    fn admission_counts_the_fleet_share_once_and_reports_only_its_own() {
        let q = Quotas::build(&Config::default(), None);
        let k = key(10, Some(100));
        let mut ledger = Ledger::default();
        assert_eq!(admit(&q, &k, 3, NOW), 3);
        let sent = ledger.changes([("key:0:a", &*k)], NOW, &TimeZone::UTC);
        assert_eq!(
            sent,
            vec![
                row("key:0:a", Counter::RequestsMinute, MINUTE, 3),
                row("key:0:a", Counter::RequestsDay, DAY, 3),
            ],
            "its own counts, in the current windows"
        );
        ledger.commit(&sent, NOW, &TimeZone::UTC);
        assert!(ledger
            .changes([("key:0:a", &*k)], NOW, &TimeZone::UTC)
            .is_empty());
        // Two other replicas have 2 and 3 this minute; this one's own row (if the store sent
        // it back) is not in `others`: 3 own + 5 others leaves 2.
        let others = [
            row("key:0:a", Counter::RequestsMinute, MINUTE, 2),
            row("key:0:a", Counter::RequestsMinute, MINUTE, 3),
        ];
        apply([("key:0:a", &*k)], &others, NOW, &TimeZone::UTC);
        assert_eq!(admit(&q, &k, 5, NOW + 10), 2, "10 - 3 own - 5 others");
        let ask = Ask::key_only(&k, NOW + 10);
        let r = q.admit(&ask).expect_err("full");
        assert!(r.message.contains("used 10"), "{}", r.message);
        assert_eq!(r.headers.requests.expect("figure").remaining, 0);
        let view = k.view("a", NOW + 10, q.zone());
        let rpm = view.requests_per_minute.expect("limit");
        assert_eq!((rpm.used, rpm.remaining), (10, 0), "the fleet's count");
        assert_eq!(
            ledger.changes([("key:0:a", &*k)], NOW + 10, &TimeZone::UTC),
            vec![
                row("key:0:a", Counter::RequestsMinute, MINUTE, 5),
                row("key:0:a", Counter::RequestsDay, DAY, 5),
            ],
            "only its own 5 go out, never the others' share"
        );
    }

    #[test]
    fn a_new_window_drops_the_fleet_share_and_the_ledger_forgets_the_old_one() {
        let q = Quotas::build(&Config::default(), None);
        let k = key(4, None);
        let mut ledger = Ledger::default();
        apply(
            [("team:red", &*k)],
            &[row("team:red", Counter::RequestsMinute, MINUTE, 4)],
            NOW,
            &TimeZone::UTC,
        );
        assert_eq!(admit(&q, &k, 1, NOW), 0, "the fleet used the minute");
        let next = NOW + 60_000;
        assert_eq!(admit(&q, &k, 5, next), 4, "the next minute starts at 0");
        let sent = ledger.changes([("team:red", &*k)], next, &TimeZone::UTC);
        assert_eq!(
            sent,
            vec![row("team:red", Counter::RequestsMinute, MINUTE + 1, 4)]
        );
        ledger.commit(&sent, next, &TimeZone::UTC);
        let later = next + 60_000;
        assert!(
            ledger
                .changes([("team:red", &*k)], later, &TimeZone::UTC)
                .is_empty(),
            "an idle new window sends nothing"
        );
        ledger.commit(&[], later, &TimeZone::UTC);
        assert!(ledger.sent.is_empty(), "ended windows are forgotten");
    }

    #[test]
    fn apply_takes_only_current_rows_of_known_scopes_and_clears_the_rest() {
        let q = Quotas::build(&Config::default(), None);
        let k = key(5, None);
        apply(
            [("vkey:1", &*k)],
            &[row("vkey:1", Counter::RequestsMinute, MINUTE, 5)],
            NOW,
            &TimeZone::UTC,
        );
        assert_eq!(admit(&q, &k, 1, NOW), 0);
        // The other replica's row is gone: its share is 0 again. Rows of other windows, other
        // scopes and unlimited counters do not count.
        let stray = [
            row("vkey:1", Counter::RequestsMinute, MINUTE - 1, 5),
            row("vkey:2", Counter::RequestsMinute, MINUTE, 5),
            row("vkey:1", Counter::RequestsDay, DAY, 5),
        ];
        apply([("vkey:1", &*k)], &stray, NOW, &TimeZone::UTC);
        assert_eq!(admit(&q, &k, 6, NOW), 5);
    }

    /// A key with `usd` a day and no rate limit.
    fn budget(usd: f64) -> Arc<Scope> {
        let c = LimitsConfig {
            budget_usd: Some(usd),
            per: Some(BudgetPeriod::Day),
            ..LimitsConfig::default()
        };
        let limits = Limits::from_config(&c).expect("limits");
        Arc::new(Scope::new(ScopeKind::Key, limits, None))
    }

    /// Admits and settles `n` requests costing `usd` each on `k` at `now_ms`; how many got in.
    fn spend(q: &Quotas, k: &Arc<Scope>, n: u64, usd: f64, now_ms: i64) -> u64 {
        let ask = Ask::key_only(k, now_ms);
        let mut admitted = 0;
        for _ in 0..n {
            if let Ok(ticket) = q.admit(&ask) {
                ticket
                    .expect("a limit applies")
                    .settle(None, Some(usd), now_ms);
                admitted += 1;
            }
        }
        admitted
    }

    fn spent(scope: &str, window: i64, used: u64) -> Tally {
        Tally {
            scope: scope.into(),
            meter: Meter::Spend(BudgetPeriod::Day),
            window,
            used,
            ends_ms: window + 86_400_000,
        }
    }

    #[test]
    fn a_budget_admits_against_its_own_spend_and_the_fleets_and_shares_only_its_own() {
        let q = Quotas::build(&Config::default(), None);
        let utc = TimeZone::UTC;
        let k = budget(0.01);
        let today = DAY * 86_400_000;
        let mut ledger = Ledger::default();
        assert_eq!(spend(&q, &k, 3, 0.002, NOW), 3);
        let sent = ledger.changes([("vkey:7", &*k)], NOW, &utc);
        assert_eq!(
            sent,
            vec![spent("vkey:7", today, 6_000)],
            "micro-dollars, in the window of the day's start"
        );
        ledger.commit(&sent, NOW, &utc);
        // Another replica spent $0.003 today; yesterday's row, a week's row and another
        // scope's do not count.
        let others = [
            spent("vkey:7", today, 3_000),
            spent("vkey:7", today - 86_400_000, 9_000),
            Tally {
                meter: Meter::Spend(BudgetPeriod::Week),
                ..spent("vkey:7", today, 9_000)
            },
            spent("vkey:8", today, 9_000),
        ];
        apply([("vkey:7", &*k)], &others, NOW, &utc);
        let view = k.view("a", NOW, &utc).budget.expect("a budget");
        assert_eq!(view.spent_usd, 0.009, "own 0.006 + the fleet's 0.003");
        assert_eq!(
            spend(&q, &k, 3, 0.002, NOW + 10),
            1,
            "the request that crosses the budget completes, the next is refused"
        );
        assert_eq!(
            ledger.changes([("vkey:7", &*k)], NOW + 10, &utc),
            vec![spent("vkey:7", today, 8_000)],
            "only its own spend goes out, never the fleet's share"
        );
        // The next day starts at zero: yesterday's share and spend are gone.
        let tomorrow = NOW + 86_400_000;
        assert_eq!(spend(&q, &k, 2, 0.002, tomorrow), 2);
        ledger.commit(&[], tomorrow, &utc);
        assert!(ledger.sent.is_empty(), "ended periods are forgotten");
    }

    #[test]
    fn meters_read_back_from_their_names() {
        for m in Counter::ALL
            .map(Meter::Rate)
            .into_iter()
            .chain([BudgetPeriod::Day, BudgetPeriod::Week, BudgetPeriod::Month].map(Meter::Spend))
        {
            assert_eq!(Meter::parse(m.as_str()), Some(m));
        }
        assert_eq!(Meter::parse("spend_year"), None, "a newer replica's meter");
    }
}
