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
//! Requests in flight, where a scope caps them, are a gauge rather than a window: one row per
//! replica (window 0) holding its count now, written when it changes and rewritten every sync
//! while above 0 with a lease ([`lease_ms`]) as its end, so the rows of a replica that died
//! mid-request lapse; the share read back lapses the same way if the sync stops.
//!
//! End users are shared like the rest, by a digest of their id (`user:<digest>`, never the id
//! the client sent), as long as this replica tracks them (its bounded user cache). A sync
//! sends only what changed, but reads every other replica's open rows: one per end user,
//! meter and open window or period, so its cost grows with the fleet's active users (README,
//! Quotas, gives the figures).
//!
//! What it can miss: between two syncs a replica does not see what the others admit or spend,
//! so the fleet can overshoot a limit or a budget by what the other replicas admit in that
//! blind time (README, Quotas, gives the bounds); an end user new to this replica counts from
//! 0 until the next sync brings the fleet's share. Replicas' clocks must agree (NTP) and their
//! report time zones too: windows are clock minutes and UTC days, budget periods that zone's
//! days, weeks and months.

use std::collections::HashMap;

use jiff::tz::TimeZone;

use super::budget::period_bounds;
use super::scope::{counters, Counter, Scope};
use super::shares::Sums;
use super::window::window_at;
use crate::config::BudgetPeriod;

/// What a shared row counts: one of a scope's rate counters, or its spend in its budget period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Meter {
    Rate(Counter),
    /// Micro-dollars spent in the period (day, week or month in the report time zone).
    Spend(BudgetPeriod),
    /// Requests in flight now: a gauge, not a window. Its row (window 0) holds a lease, renewed
    /// by every sync while the count is above 0, so a replica that dies mid-request stops
    /// holding the fleet's slots when the lease ends ([`lease_ms`]).
    InFlight,
}

/// How long a replica's requests in flight count for the fleet without a sync renewing them,
/// with `sync_ms` between syncs: three syncs (two may fail or run late) and 5 s for a loaded
/// store. A replica that dies mid-request holds its slots that long at most.
pub fn lease_ms(sync_ms: u64) -> i64 {
    3 * i64::try_from(sync_ms).unwrap_or(i64::MAX / 4) + 5_000
}

impl Meter {
    /// Its name in the shared table (`counter`).
    pub fn as_str(self) -> &'static str {
        match self {
            Meter::Rate(c) => c.as_str(),
            Meter::Spend(BudgetPeriod::Day) => "spend_day",
            Meter::Spend(BudgetPeriod::Week) => "spend_week",
            Meter::Spend(BudgetPeriod::Month) => "spend_month",
            Meter::InFlight => "in_flight",
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
            .chain([Meter::InFlight])
            .find(|m| m.as_str() == name)
    }
}

/// One replica's count in one window of one meter of one scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    /// The scope's fleet-wide id (`key:<digest>:<user>`, `vkey:<id>`, `user:<digest>`,
    /// `team:<name>`, `model:<name>`, `global`; never a secret nor an end user's id).
    pub scope: String,
    pub meter: Meter,
    /// The window's number: for a rate, unix ms divided by its length; for spend, the unix ms
    /// the budget period starts; 0 for requests in flight.
    pub window: i64,
    /// Requests, tokens or micro-dollars.
    pub used: u64,
    /// Unix ms the window ends (for requests in flight, the lease): its rows are useless after.
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
pub(super) struct Periods([(BudgetPeriod, Option<(i64, i64)>); 3]);

impl Periods {
    pub(super) fn at(now_ms: i64, zone: &TimeZone) -> Periods {
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
            Meter::InFlight => Some((0, i64::MAX)),
        }
    }
}

/// What this replica last sent of one meter of one scope.
#[derive(Clone, Copy, Debug)]
struct Sent {
    meter: Meter,
    window: i64,
    used: u64,
}

/// What this replica last sent per scope and meter, so a sync sends only what changed. Keyed
/// by scope, so a sync over 100,000 end users looks each up by its borrowed name.
#[derive(Debug, Default)]
pub struct Ledger {
    sent: HashMap<String, Vec<Sent>>,
}

impl Ledger {
    /// This replica's own counts and spend, in the current windows and budget periods (in
    /// `zone`) at `now_ms` of every limited counter and budget of `scopes` (id, scope), that
    /// differ from what was last sent, and its requests in flight where the scope caps them,
    /// when they changed or are above 0 (renewing their lease, `lease_ms` from now). A window
    /// not sent yet counts as sent at 0, so an idle scope sends nothing.
    pub fn changes<'a>(
        &self,
        scopes: impl IntoIterator<Item = (&'a str, &'a Scope)>,
        now_ms: i64,
        zone: &TimeZone,
        lease_ms: i64,
    ) -> Vec<Tally> {
        let periods = Periods::at(now_ms, zone);
        let mut out = Vec::new();
        for (id, scope) in scopes {
            let sent = self.sent.get(id).map_or(&[][..], Vec::as_slice);
            for (meter, window, used, ends_ms) in own(scope, now_ms, &periods, lease_ms) {
                let before = sent
                    .iter()
                    .find(|s| s.meter == meter && s.window == window)
                    .map_or(0, |s| s.used);
                let renew = meter == Meter::InFlight && used > 0;
                if used != before || renew {
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
    /// windows and periods that have ended by `now_ms`, and requests in flight sent as 0 (not
    /// sent counts as 0).
    pub fn commit(&mut self, tallies: &[Tally], now_ms: i64, zone: &TimeZone) {
        for t in tallies {
            let sent = self.sent.entry(t.scope.clone()).or_default();
            let new = Sent {
                meter: t.meter,
                window: t.window,
                used: t.used,
            };
            match sent.iter_mut().find(|s| s.meter == t.meter) {
                Some(s) => *s = new,
                None => sent.push(new),
            }
        }
        let periods = Periods::at(now_ms, zone);
        self.sent.retain(|_, sent| {
            sent.retain(|s| {
                let open = periods
                    .window(s.meter, now_ms)
                    .is_some_and(|(now, _)| now <= s.window);
                open && !(s.meter == Meter::InFlight && s.used == 0)
            });
            !sent.is_empty()
        });
    }
}

/// `scope`'s own count in the current window of each limited counter, its own spend in the
/// current budget period, and its requests in flight when capped: (meter, window, used, ends).
/// On the stack: a sync walks every tracked scope, 100,000 end users among them.
fn own(
    scope: &Scope,
    now_ms: i64,
    periods: &Periods,
    lease_ms: i64,
) -> impl Iterator<Item = (Meter, i64, u64, i64)> {
    let mut out = [None; 6];
    for (slot, (c, (limit, own, _))) in out
        .iter_mut()
        .zip(Counter::ALL.into_iter().zip(counters(scope)))
    {
        if limit.is_some() {
            let (window, ends_ms, packed) = current(c, now_ms);
            *slot = Some((Meter::Rate(c), window, own.used(packed), ends_ms));
        }
    }
    let budget = scope.limits.budget.map(|(_, per)| per);
    if let Some((per, (start, end))) = budget.and_then(|per| Some((per, periods.get(per)?))) {
        out[4] = Some((Meter::Spend(per), start, scope.state.spend.own(end), end));
    }
    if scope.limits.concurrent.is_some() {
        let n = scope.state.in_flight.get();
        out[5] = Some((Meter::InFlight, 0, n, now_ms.saturating_add(lease_ms)));
    }
    out.into_iter().flatten()
}

/// Sets the fleet's share of every limited counter and budget of `scopes` (id, scope) to the
/// other replicas' sum in `sums` for the current window or period (in `zone`) at `now_ms`; 0
/// where they have none. A concurrency cap's share (the others' requests in flight) holds
/// until the sums' lease ends, unless a later sync sets it again.
pub fn apply<'a>(
    scopes: impl IntoIterator<Item = (&'a str, &'a Scope)>,
    sums: &Sums,
    now_ms: i64,
    zone: &TimeZone,
) {
    let periods = Periods::at(now_ms, zone);
    for (id, scope) in scopes {
        let mine = sums.of(id);
        set_shares(
            scope,
            |m, w| mine.get(m, w),
            now_ms,
            &periods,
            sums.until_ms(),
        );
    }
}

/// Sets each limited counter's, the budget's and the concurrency cap's fleet share of `scope`
/// to `sum(meter, window)` for the window or period current at `now_ms`; the share of requests
/// in flight holds until `until_ms`.
pub(super) fn set_shares(
    scope: &Scope,
    sum: impl Fn(Meter, i64) -> u64,
    now_ms: i64,
    periods: &Periods,
    until_ms: i64,
) {
    for (c, (limit, _, fleet)) in Counter::ALL.into_iter().zip(counters(scope)) {
        if limit.is_some() {
            let (window, _, packed) = current(c, now_ms);
            fleet.set(packed, sum(Meter::Rate(c), window));
        }
    }
    let budget = scope.limits.budget.map(|(_, per)| per);
    if let Some((per, (start, end))) = budget.and_then(|per| Some((per, periods.get(per)?))) {
        scope
            .state
            .spend
            .set_fleet(end, sum(Meter::Spend(per), start));
    }
    if scope.limits.concurrent.is_some() {
        scope
            .state
            .fleet_in_flight
            .set(sum(Meter::InFlight, 0), until_ms);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{BudgetPeriod, Config, LimitsConfig};
    use crate::quota::{Ask, Limits, Others, Quotas, ScopeKind, Sums};

    /// 2026-01-15T12:00:00Z, at the start of a minute.
    const NOW: i64 = 1_768_478_400_000;
    const MINUTE: i64 = NOW / 60_000;
    const DAY: i64 = NOW / 86_400_000;
    /// The lease of requests in flight (`quotas.sync_ms` 1000).
    const LEASE: i64 = 8_000;

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
        let sent = ledger.changes([("key:0:a", &*k)], NOW, &TimeZone::UTC, LEASE);
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
            .changes([("key:0:a", &*k)], NOW, &TimeZone::UTC, LEASE)
            .is_empty());
        // Two other replicas have 2 and 3 this minute; this one's own row (if the store sent
        // it back) is not in `others`: 3 own + 5 others leaves 2.
        let others = [
            row("key:0:a", Counter::RequestsMinute, MINUTE, 2),
            row("key:0:a", Counter::RequestsMinute, MINUTE, 3),
        ];
        apply_rows([("key:0:a", &*k)], &others, NOW, &TimeZone::UTC);
        assert_eq!(admit(&q, &k, 5, NOW + 10), 2, "10 - 3 own - 5 others");
        let ask = Ask::key_only(&k, NOW + 10);
        let r = q.admit(&ask).expect_err("full");
        assert!(r.message.contains("used 10"), "{}", r.message);
        assert_eq!(r.headers.requests.expect("figure").remaining, 0);
        let view = k.view("a", NOW + 10, q.zone());
        let rpm = view.requests_per_minute.expect("limit");
        assert_eq!((rpm.used, rpm.remaining), (10, 0), "the fleet's count");
        assert_eq!(
            ledger.changes([("key:0:a", &*k)], NOW + 10, &TimeZone::UTC, LEASE),
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
        apply_rows(
            [("team:red", &*k)],
            &[row("team:red", Counter::RequestsMinute, MINUTE, 4)],
            NOW,
            &TimeZone::UTC,
        );
        assert_eq!(admit(&q, &k, 1, NOW), 0, "the fleet used the minute");
        let next = NOW + 60_000;
        assert_eq!(admit(&q, &k, 5, next), 4, "the next minute starts at 0");
        let sent = ledger.changes([("team:red", &*k)], next, &TimeZone::UTC, LEASE);
        assert_eq!(
            sent,
            vec![row("team:red", Counter::RequestsMinute, MINUTE + 1, 4)]
        );
        ledger.commit(&sent, next, &TimeZone::UTC);
        let later = next + 60_000;
        assert!(
            ledger
                .changes([("team:red", &*k)], later, &TimeZone::UTC, LEASE)
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
        apply_rows(
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
        apply_rows([("vkey:1", &*k)], &stray, NOW, &TimeZone::UTC);
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
        let sent = ledger.changes([("vkey:7", &*k)], NOW, &utc, LEASE);
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
        apply_rows([("vkey:7", &*k)], &others, NOW, &utc);
        let view = k.view("a", NOW, &utc).budget.expect("a budget");
        assert_eq!(view.spent_usd, 0.009, "own 0.006 + the fleet's 0.003");
        assert_eq!(
            spend(&q, &k, 3, 0.002, NOW + 10),
            1,
            "the request that crosses the budget completes, the next is refused"
        );
        assert_eq!(
            ledger.changes([("vkey:7", &*k)], NOW + 10, &utc, LEASE),
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
            .chain([Meter::InFlight])
        {
            assert_eq!(Meter::parse(m.as_str()), Some(m));
        }
        assert_eq!(Meter::parse("spend_year"), None, "a newer replica's meter");
    }

    /// `rows` as read from other replicas (each its own) at `now_ms`, applied to `scopes`;
    /// the sums, as the sync keeps them.
    fn apply_rows<'a>(
        scopes: impl IntoIterator<Item = (&'a str, &'a Scope)>,
        rows: &[Tally],
        now_ms: i64,
        zone: &TimeZone,
    ) -> Arc<std::sync::RwLock<Sums>> {
        let mut others = Others::default();
        let read = rows
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("replica-{i}"), t.clone()));
        others.merge(read, now_ms, LEASE);
        apply(scopes, &others.read(), now_ms, zone);
        others.sums()
    }

    fn in_flight(scope: &str, used: u64, ends_ms: i64) -> Tally {
        Tally {
            scope: scope.into(),
            meter: Meter::InFlight,
            window: 0,
            used,
            ends_ms,
        }
    }

    #[test]
    fn requests_in_flight_are_shared_under_a_lease_renewed_while_any_are() {
        let q = Quotas::build(&Config::default(), None);
        let c = LimitsConfig {
            concurrent: Some(3),
            ..LimitsConfig::default()
        };
        let k = Arc::new(Scope::new(
            ScopeKind::Key,
            Limits::from_config(&c).expect("limits"),
            None,
        ));
        let mut ledger = Ledger::default();
        let utc = TimeZone::UTC;
        let ask = Ask::key_only(&k, NOW);
        let mut held: Vec<_> = (0..2).map(|_| q.admit(&ask).expect("room")).collect();
        let sent = ledger.changes([("vkey:3", &*k)], NOW, &utc, LEASE);
        assert_eq!(sent, vec![in_flight("vkey:3", 2, NOW + LEASE)]);
        ledger.commit(&sent, NOW, &utc);
        assert_eq!(
            ledger.changes([("vkey:3", &*k)], NOW + 1000, &utc, LEASE),
            vec![in_flight("vkey:3", 2, NOW + 1000 + LEASE)],
            "unchanged but above 0: sent again, renewing the lease"
        );
        held.clear();
        let sent = ledger.changes([("vkey:3", &*k)], NOW + 2000, &utc, LEASE);
        assert_eq!(
            sent,
            vec![in_flight("vkey:3", 0, NOW + 2000 + LEASE)],
            "back to 0: sent once"
        );
        ledger.commit(&sent, NOW + 2000, &utc);
        assert!(ledger.sent.is_empty(), "a 0 sent is not remembered");
        assert!(ledger
            .changes([("vkey:3", &*k)], NOW + 3000, &utc, LEASE)
            .is_empty());

        // Two other replicas hold 1 each: one slot left here, and the view counts all three.
        let others = [
            in_flight("vkey:3", 1, NOW + LEASE),
            in_flight("vkey:3", 1, NOW + LEASE),
        ];
        apply_rows([("vkey:3", &*k)], &others, NOW, &utc);
        let one = q.admit(&ask).expect("one slot left");
        let r = q.admit(&ask).expect_err("the fleet holds the rest");
        assert!(r.message.contains("limit 3"), "{}", r.message);
        let seen = k.view("k", NOW, &utc).concurrent.expect("a cap");
        assert_eq!(seen.in_flight, 3, "own 1 + the fleet's 2");
        // The sync stops renewing the share (the store is unreachable): it lapses with its
        // lease rather than holding the fleet's slots for good.
        let after = Ask::key_only(&k, NOW + LEASE);
        let more: Vec<_> = (0..3).filter_map(|_| q.admit(&after).ok()).collect();
        assert_eq!(more.len(), 2, "3 - own 1: the lapsed share counts 0");
        drop(one);
    }

    #[test]
    fn end_users_are_shared_by_digest_never_by_their_ids() {
        let mut config = Config::default();
        config.quotas.users.default = LimitsConfig {
            requests_per_minute: Some(5),
            ..LimitsConfig::default()
        };
        let q = Quotas::build(&config, None);
        let ask = Ask::user_only("alice@example.com", NOW);
        for _ in 0..2 {
            q.admit(&ask).expect("room");
        }
        let shared: Vec<_> = q.shared().collect();
        let ids: Vec<&str> = shared.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["user:ff8d9819fc0e12bf"], "a digest, not the id");
        let by_id = || shared.iter().map(|(id, s)| (id.as_str(), &**s));
        let sent = Ledger::default().changes(by_id(), NOW, &TimeZone::UTC, LEASE);
        assert_eq!(
            sent,
            vec![row(
                "user:ff8d9819fc0e12bf",
                Counter::RequestsMinute,
                MINUTE,
                2
            )]
        );
        // Other replicas admitted 2 for alice and 4 for someone else.
        let others = [
            row("user:ff8d9819fc0e12bf", Counter::RequestsMinute, MINUTE, 2),
            row("user:0000000000000000", Counter::RequestsMinute, MINUTE, 4),
        ];
        q.set_fleet_users(apply_rows(by_id(), &others, NOW, &TimeZone::UTC));
        let admitted = (0..5).filter(|_| q.admit(&ask).is_ok()).count();
        assert_eq!(admitted, 1, "5 - 2 own - 2 the fleet's");
        // Someone only other replicas have seen starts here from the fleet's count of them,
        // not from 0: SHA-256("bob") starts 81b637d8fcd2c6da.
        let bob_rows = [row(
            "user:81b637d8fcd2c6da",
            Counter::RequestsMinute,
            MINUTE,
            4,
        )];
        q.set_fleet_users(apply_rows([], &bob_rows, NOW, &TimeZone::UTC));
        let bob = Ask {
            user: Some("bob"),
            now_ms: NOW + 10,
            ..ask
        };
        let admitted = (0..5).filter(|_| q.admit(&bob).is_ok()).count();
        assert_eq!(admitted, 1, "5 - the fleet's 4");
    }
}
