//! What this replica knows of the other replicas' counts (fleet mode): each one's rows as read
//! so far, and their sums per scope, moved by each read (the change of every row read) rather
//! than summed again, so a sync's work on them follows the rows written since the last one,
//! not how many scopes have open windows. The sums are shared with the end users' cache: a user
//! first seen here starts from them (`Users::scope` takes their read lock then, and only then).

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use jiff::tz::TimeZone;

use super::fleet::{set_shares, Meter, Periods, Tally};
use super::Scope;

/// How far before its last read a replica reads again: rows are stamped with their writer's
/// clock before their transaction commits, so a row committed just after a read can carry an
/// earlier stamp. Covers a commit that takes up to this long, less the clocks' skew (NTP keeps
/// that to milliseconds). A row read twice replaces itself, never adds.
pub const READ_MARGIN_MS: i64 = 10_000;

/// The other replicas' sum of one meter of one scope in one window.
#[derive(Clone, Copy, Debug)]
struct Sum {
    meter: Meter,
    window: i64,
    used: u64,
    /// The latest end of the rows summed.
    ends_ms: i64,
}

/// The other replicas' counts summed per scope, meter and window.
#[derive(Debug, Default)]
pub struct Sums {
    by_scope: HashMap<String, Vec<Sum>>,
    /// When the requests in flight read so far stop counting (the last read and a lease).
    until_ms: i64,
}

/// One scope's sums ([`Sums::of`]).
#[derive(Clone, Copy, Debug)]
pub struct ScopeSums<'a>(&'a [Sum]);

impl ScopeSums<'_> {
    /// The other replicas' sum of `meter` in `window` (0 when none has a row).
    pub fn get(self, meter: Meter, window: i64) -> u64 {
        self.0
            .iter()
            .find(|s| s.meter == meter && s.window == window)
            .map_or(0, |s| s.used)
    }
}

impl Sums {
    /// The sums of `scope` (looked up once for all its meters).
    pub fn of(&self, scope: &str) -> ScopeSums<'_> {
        ScopeSums(self.by_scope.get(scope).map_or(&[][..], Vec::as_slice))
    }

    /// The other replicas' sum of `meter` of `scope` in `window` (0 when none has a row).
    pub fn get(&self, scope: &str, meter: Meter, window: i64) -> u64 {
        self.of(scope).get(meter, window)
    }

    /// When the requests in flight read so far stop counting.
    pub fn until_ms(&self) -> i64 {
        self.until_ms
    }

    /// Sets the fleet shares of end user `id`'s new `scope` at `now_ms` (budget periods in
    /// `zone`); nothing when no other replica has a row of theirs.
    pub fn share(&self, id: &str, scope: &Scope, now_ms: i64, zone: &TimeZone) {
        let mine = self.of(id);
        if !mine.0.is_empty() {
            let periods = Periods::at(now_ms, zone);
            set_shares(
                scope,
                |m, w| mine.get(m, w),
                now_ms,
                &periods,
                self.until_ms,
            );
        }
    }

    /// Moves the sum of `t`'s scope, meter and window by `used - before`.
    fn add(&mut self, t: &Tally, before: u64) {
        let sums = match self.by_scope.get_mut(t.scope.as_str()) {
            Some(s) => s,
            None => self.by_scope.entry(t.scope.clone()).or_default(),
        };
        match sums
            .iter_mut()
            .find(|s| s.meter == t.meter && s.window == t.window)
        {
            Some(s) => {
                s.used = s.used.saturating_sub(before).saturating_add(t.used);
                s.ends_ms = s.ends_ms.max(t.ends_ms);
            }
            None => sums.push(Sum {
                meter: t.meter,
                window: t.window,
                used: t.used,
                ends_ms: t.ends_ms,
            }),
        }
    }

    /// Takes `used` off the sum of `scope`, `meter`, `window` (a row that has ended).
    fn remove(&mut self, scope: &str, meter: Meter, window: i64, used: u64) {
        if let Some(sums) = self.by_scope.get_mut(scope) {
            if let Some(s) = sums
                .iter_mut()
                .find(|s| s.meter == meter && s.window == window)
            {
                s.used = s.used.saturating_sub(used);
            }
        }
    }

    /// Forgets the sums of windows ended by `now_ms`, and scopes left with none.
    fn prune(&mut self, now_ms: i64) {
        self.by_scope.retain(|_, sums| {
            sums.retain(|s| s.ends_ms > now_ms);
            !sums.is_empty()
        });
    }
}

/// One other replica's row, as last read.
#[derive(Clone, Copy, Debug)]
struct Row {
    used: u64,
    ends_ms: i64,
}

/// The other replicas' rows as read so far, one per (replica, scope, meter, window), and their
/// sums ([`Sums`], shared).
#[derive(Debug, Default)]
pub struct Others {
    /// Rate and spend rows: their windows end on clock minutes, so they are pruned once a
    /// minute.
    rows: HashMap<(String, String, Meter, i64), Row>,
    /// Requests in flight (window 0), by (replica, scope): few (scopes with requests in flight
    /// now), pruned at every read, so a dead replica's stop counting when their lease ends.
    held: HashMap<(String, String), Row>,
    sums: Arc<RwLock<Sums>>,
    /// Unix ms the last read started; `None` before the first (which reads everything).
    read_ms: Option<i64>,
    /// The clock minute rows were last pruned in.
    pruned: i64,
}

impl Others {
    /// Rows written after this instant are the next read's.
    pub fn since(&self) -> i64 {
        self.read_ms.map_or(i64::MIN, |r| r - READ_MARGIN_MS)
    }

    /// Takes in `rows` (instance, tally) of a read started at `read_ms`, each replacing what
    /// was known of its replica's row, with the requests in flight read counting for
    /// `lease_ms`. Forgets requests in flight whose lease has ended, and once a clock minute
    /// the rows and sums of windows ended by then (their shares read as 0 whatever is kept:
    /// each is tagged with its window).
    pub fn merge(
        &mut self,
        rows: impl IntoIterator<Item = (String, Tally)>,
        read_ms: i64,
        lease_ms: i64,
    ) {
        let mut sums = write(&self.sums);
        for (instance, t) in rows {
            let row = Row {
                used: t.used,
                ends_ms: t.ends_ms,
            };
            let before = if t.meter == Meter::InFlight {
                self.held.insert((instance, t.scope.clone()), row)
            } else {
                let key = (instance, t.scope.clone(), t.meter, t.window);
                self.rows.insert(key, row)
            };
            sums.add(&t, before.map_or(0, |r| r.used));
        }
        sums.until_ms = read_ms.saturating_add(lease_ms);
        self.held.retain(|(_, scope), r| {
            let open = r.ends_ms > read_ms;
            if !open {
                sums.remove(scope, Meter::InFlight, 0, r.used);
            }
            open
        });
        let minute = read_ms.div_euclid(60_000);
        if minute != self.pruned {
            self.pruned = minute;
            self.rows.retain(|(_, scope, meter, window), r| {
                let open = r.ends_ms > read_ms;
                if !open {
                    sums.remove(scope, *meter, *window, r.used);
                }
                open
            });
            sums.prune(read_ms);
        }
        self.read_ms = Some(read_ms);
    }

    /// The sums, shared.
    pub fn sums(&self) -> Arc<RwLock<Sums>> {
        self.sums.clone()
    }

    /// The sums, to read.
    pub fn read(&self) -> RwLockReadGuard<'_, Sums> {
        read(&self.sums)
    }

    /// Rows known now.
    pub fn len(&self) -> usize {
        self.rows.len() + self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads `sums` (a writer that panicked left them consistent: each change is one row's).
pub fn read(sums: &RwLock<Sums>) -> RwLockReadGuard<'_, Sums> {
    sums.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(sums: &RwLock<Sums>) -> RwLockWriteGuard<'_, Sums> {
    sums.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Counter;

    /// 2026-01-15T12:00:00Z, at the start of a minute.
    const NOW: i64 = 1_768_478_400_000;
    const MINUTE: i64 = NOW / 60_000;
    const LEASE: i64 = 8_000;

    fn minute(window: i64, used: u64) -> Tally {
        Tally {
            scope: "team:red".into(),
            meter: Meter::Rate(Counter::RequestsMinute),
            window,
            used,
            ends_ms: (window + 1) * 60_000,
        }
    }

    fn held(used: u64, ends_ms: i64) -> Tally {
        Tally {
            scope: "team:red".into(),
            meter: Meter::InFlight,
            window: 0,
            used,
            ends_ms,
        }
    }

    fn read(rows: &[(&str, Tally)]) -> Vec<(String, Tally)> {
        rows.iter()
            .map(|(i, t)| ((*i).to_owned(), t.clone()))
            .collect()
    }

    #[test]
    fn each_replicas_latest_row_is_summed_once_and_ended_ones_are_forgotten() {
        let mut o = Others::default();
        let requests = Meter::Rate(Counter::RequestsMinute);
        assert_eq!(o.since(), i64::MIN, "the first read reads everything");
        o.merge(
            read(&[
                ("b", minute(MINUTE, 2)),
                ("c", minute(MINUTE, 3)),
                ("b", minute(MINUTE - 1, 9)),
            ]),
            NOW,
            LEASE,
        );
        assert_eq!(
            o.since(),
            NOW - READ_MARGIN_MS,
            "then from the last read, less the margin"
        );
        assert_eq!(o.len(), 2, "the ended minute's row is forgotten");
        assert_eq!(o.read().get("team:red", requests, MINUTE), 5);
        assert_eq!(o.read().get("team:red", requests, MINUTE - 1), 0);
        // The next read brings only what b rewrote: c's row stands as read before, and a row
        // read twice replaces itself.
        o.merge(
            read(&[("b", minute(MINUTE, 4)), ("b", minute(MINUTE, 4))]),
            NOW + 1000,
            LEASE,
        );
        assert_eq!(
            o.read().get("team:red", requests, MINUTE),
            7,
            "b's 4 and c's 3"
        );
        // The next minute: nothing of the last one is left.
        o.merge([], NOW + 60_000, LEASE);
        assert!(o.is_empty());
        assert_eq!(o.read().get("team:red", requests, MINUTE), 0);
        assert!(o.read().by_scope.is_empty());
    }

    #[test]
    fn requests_in_flight_stop_counting_when_their_lease_ends_not_a_minute_later() {
        let mut o = Others::default();
        o.merge(
            read(&[("b", held(2, NOW + 5_000)), ("c", held(1, NOW + 9_000))]),
            NOW,
            LEASE,
        );
        assert_eq!(o.read().get("team:red", Meter::InFlight, 0), 3);
        assert_eq!(o.read().until_ms(), NOW + LEASE);
        // b died: its lease ends; c renewed its own.
        o.merge(read(&[("c", held(1, NOW + 15_000))]), NOW + 6_000, LEASE);
        assert_eq!(o.read().get("team:red", Meter::InFlight, 0), 1, "c's only");
        assert_eq!(o.len(), 1);
    }
}
