//! Rate counters shared between replicas (fleet mode: several replicas on one PostgreSQL
//! store), as plain data and arithmetic; `app` moves the rows through the store.
//!
//! Each replica keeps counting alone on the hot path (`Window::take`, one compare-and-swap) and
//! admits against its own count plus the rest of the fleet's, as of the last sync, kept beside
//! each counter (`State::fleet`). A sync, every `quotas.sync_ms`, off the request path:
//! 1. [`Ledger::changes`]: this replica's own count in each current window of each shared
//!    scope, where it differs from what was last sent ([`Tally`] rows);
//! 2. the store keeps one row per (scope, counter, window, replica) and the replica overwrites
//!    its own rows (an absolute count, not a delta: a sync that fails or is retried cannot
//!    count anything twice);
//! 3. the store sums the *other* replicas' rows for the current windows, and [`apply`] sets
//!    each counter's fleet share to that sum (0 where no other replica has a row): this
//!    replica's own count is never in it.
//!
//! What it can miss: between two syncs a replica does not see what the others admit, so the
//! fleet can overshoot a limit by what the other replicas admit in that blind time (README,
//! Quotas, gives the bound). End users' counters are not shared (each replica counts its own:
//! there can be 100,000 of them, and their ids are the clients'); nor are concurrency caps
//! (per replica) nor budgets (per replica, each seeded with the fleet's spend at start).
//! Replicas' clocks must agree (NTP): windows are clock minutes and UTC days.

use std::collections::HashMap;

use super::scope::{counters, Counter, Scope};
use super::window::window_at;

/// One replica's count in one window of one counter of one scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    /// The scope's fleet-wide id (`key:<n>:<user>`, `vkey:<id>`, `team:<name>`,
    /// `model:<name>`, `global`; never a secret nor an end user's id).
    pub scope: String,
    pub counter: Counter,
    /// The window's number: unix ms divided by its length.
    pub window: i64,
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

/// What this replica last sent per (scope, counter), so a sync sends only what changed.
#[derive(Debug, Default)]
pub struct Ledger {
    sent: HashMap<(String, Counter), (i64, u64)>,
}

impl Ledger {
    /// This replica's own counts, in the current windows at `now_ms` of every limited counter
    /// of `scopes` (id, scope), that differ from what was last sent. A window not sent yet
    /// counts as sent at 0, so an idle scope sends nothing.
    pub fn changes<'a>(
        &self,
        scopes: impl IntoIterator<Item = (&'a str, &'a Scope)>,
        now_ms: i64,
    ) -> Vec<Tally> {
        let mut out = Vec::new();
        for (id, scope) in scopes {
            for (c, (limit, own, _)) in Counter::ALL.into_iter().zip(counters(scope)) {
                if limit.is_none() {
                    continue;
                }
                let (window, ends_ms, packed) = current(c, now_ms);
                let used = own.used(packed);
                let before = match self.sent.get(&(id.to_owned(), c)) {
                    Some(&(w, n)) if w == window => n,
                    _ => 0,
                };
                if used != before {
                    out.push(Tally {
                        scope: id.to_owned(),
                        counter: c,
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
    /// windows that have ended by `now_ms`.
    pub fn commit(&mut self, tallies: &[Tally], now_ms: i64) {
        for t in tallies {
            self.sent
                .insert((t.scope.clone(), t.counter), (t.window, t.used));
        }
        self.sent
            .retain(|(_, c), (window, _)| current(*c, now_ms).0 <= *window);
    }
}

/// Sets the fleet's share of every limited counter of `scopes` (id, scope) to the sum of the
/// other replicas' rows in `others` for the current window at `now_ms`; 0 where they have
/// none. Rows for other windows or unknown scopes are ignored.
pub fn apply<'a>(
    scopes: impl IntoIterator<Item = (&'a str, &'a Scope)>,
    others: &[Tally],
    now_ms: i64,
) {
    let mut sums: HashMap<(&str, Counter, i64), u64> = HashMap::new();
    for t in others {
        *sums
            .entry((t.scope.as_str(), t.counter, t.window))
            .or_default() += t.used;
    }
    for (id, scope) in scopes {
        for (c, (limit, _, fleet)) in Counter::ALL.into_iter().zip(counters(scope)) {
            if limit.is_none() {
                continue;
            }
            let (window, _, packed) = current(c, now_ms);
            let sum = sums.get(&(id, c, window)).copied().unwrap_or(0);
            fleet.set(packed, sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{Config, LimitsConfig};
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
        let ask = Ask {
            key: Some(k),
            user: None,
            team: None,
            model: None,
            upstream_model: None,
            tokens: 1,
            now_ms,
        };
        (0..n).filter(|_| q.admit(&ask).is_ok()).count() as u64
    }

    fn row(scope: &str, counter: Counter, window: i64, used: u64) -> Tally {
        let len = counter.len_ms();
        Tally {
            scope: scope.into(),
            counter,
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
        let sent = ledger.changes([("key:0:a", &*k)], NOW);
        assert_eq!(
            sent,
            vec![
                row("key:0:a", Counter::RequestsMinute, MINUTE, 3),
                row("key:0:a", Counter::RequestsDay, DAY, 3),
            ],
            "its own counts, in the current windows"
        );
        ledger.commit(&sent, NOW);
        assert!(ledger.changes([("key:0:a", &*k)], NOW).is_empty());
        // Two other replicas have 2 and 3 this minute; this one's own row (if the store sent
        // it back) is not in `others`: 3 own + 5 others leaves 2.
        let others = [
            row("key:0:a", Counter::RequestsMinute, MINUTE, 2),
            row("key:0:a", Counter::RequestsMinute, MINUTE, 3),
        ];
        apply([("key:0:a", &*k)], &others, NOW);
        assert_eq!(admit(&q, &k, 5, NOW + 10), 2, "10 - 3 own - 5 others");
        let ask = Ask {
            key: Some(&k),
            user: None,
            team: None,
            model: None,
            upstream_model: None,
            tokens: 1,
            now_ms: NOW + 10,
        };
        let r = q.admit(&ask).expect_err("full");
        assert!(r.message.contains("used 10"), "{}", r.message);
        assert_eq!(r.headers.requests.expect("figure").remaining, 0);
        let view = k.view("a", NOW + 10, q.zone());
        let rpm = view.requests_per_minute.expect("limit");
        assert_eq!((rpm.used, rpm.remaining), (10, 0), "the fleet's count");
        assert_eq!(
            ledger.changes([("key:0:a", &*k)], NOW + 10),
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
        );
        assert_eq!(admit(&q, &k, 1, NOW), 0, "the fleet used the minute");
        let next = NOW + 60_000;
        assert_eq!(admit(&q, &k, 5, next), 4, "the next minute starts at 0");
        let sent = ledger.changes([("team:red", &*k)], next);
        assert_eq!(
            sent,
            vec![row("team:red", Counter::RequestsMinute, MINUTE + 1, 4)]
        );
        ledger.commit(&sent, next);
        let later = next + 60_000;
        assert!(
            ledger.changes([("team:red", &*k)], later).is_empty(),
            "an idle new window sends nothing"
        );
        ledger.commit(&[], later);
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
        );
        assert_eq!(admit(&q, &k, 1, NOW), 0);
        // The other replica's row is gone: its share is 0 again. Rows of other windows, other
        // scopes and unlimited counters do not count.
        let stray = [
            row("vkey:1", Counter::RequestsMinute, MINUTE - 1, 5),
            row("vkey:2", Counter::RequestsMinute, MINUTE, 5),
            row("vkey:1", Counter::RequestsDay, DAY, 5),
        ];
        apply([("vkey:1", &*k)], &stray, NOW);
        assert_eq!(admit(&q, &k, 6, NOW), 5);
    }
}
