//! Spend budgets: dollars spent in the current day, week or month, in micro-dollars in an
//! atomic, with the period's end beside it. Periods are calendar periods in the report time
//! zone, between local midnights (a day is 23 or 25 hours across a daylight-saving change; a
//! week runs Monday to Monday), as in `report::period`, whose arithmetic this repeats because
//! `quota` sits below `report`.
//!
//! A period's spend has three parts, each one atomic, read together by admission: this
//! replica's own charges since it started (what it shares with the fleet), a base read back at
//! start from the stored records that no replica's shared count covers (spend before fleet
//! sharing, or on one replica the whole period's), and the rest of the fleet's spend as of the
//! last sync (0 on one replica; `fleet.rs` moves it). The base is never sent to the fleet, so
//! replicas started together count the records' spend once each, never once per replica.
//!
//! Trade-off: the period rolls over with a compare-and-swap on its end, then the spend is set
//! to zero; a charge that lands between the two is lost (and a fleet sync that reads the own
//! spend between them sends the old period's figure once, until the next sync). That is one
//! request's cost at most, once a period, in exchange for no lock.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::config::BudgetPeriod;

/// Dollars to micro-dollars (rounded; negative and non-finite amounts count as 0).
pub fn micros(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e6).round() as u64
    } else {
        0
    }
}

/// The `[start, end)` unix milliseconds of the period of kind `per` containing `now_ms`, in
/// `tz`. `None` only for instants outside jiff's range (years beyond ±9999).
pub fn period_bounds(per: BudgetPeriod, now_ms: i64, tz: &TimeZone) -> Option<(i64, i64)> {
    let today = Timestamp::from_millisecond(now_ms)
        .ok()?
        .to_zoned_datetime(tz.clone())
        .date();
    let (first, next) = match per {
        BudgetPeriod::Day => (today, today.tomorrow().ok()?),
        BudgetPeriod::Week => {
            let back = i64::from(today.weekday().to_monday_zero_offset());
            let monday = today.checked_sub(back.days()).ok()?;
            (monday, monday.checked_add(7.days()).ok()?)
        }
        BudgetPeriod::Month => {
            let first = today.first_of_month();
            (first, first.checked_add(1.month()).ok()?)
        }
    };
    Some((midnight(first, tz)?, midnight(next, tz)?))
}

/// The first instant of local day `d` (after the gap, where a zone skips midnight).
fn midnight(d: Date, tz: &TimeZone) -> Option<i64> {
    Some(
        d.to_zoned_datetime(tz.clone())
            .ok()?
            .timestamp()
            .as_millisecond(),
    )
}

/// Spend in the current period.
#[derive(Debug, Default)]
pub struct Spend {
    /// Unix ms the current period ends; 0 before first use.
    end_ms: AtomicI64,
    /// Micro-dollars this replica charged in the period since it started.
    own: AtomicU64,
    /// Micro-dollars the stored records count in the period beyond the fleet's shared counts,
    /// as of the start ([`Spend::seed`]).
    base: AtomicU64,
    /// The rest of the fleet's spend in the period, as of the last sync.
    fleet: Share,
}

impl Spend {
    /// Micro-dollars spent in the period containing `now_ms` (base, own and the fleet's), and
    /// when that period ends.
    pub fn current(&self, now_ms: i64, per: BudgetPeriod, tz: &TimeZone) -> (u64, i64) {
        let end = self.roll(now_ms, per, tz);
        (self.total(end), end)
    }

    /// As [`Spend::current`], without starting a new period (a reader's view: a period that
    /// has ended reads as 0 spent, until the next request rolls it over; the fleet's share of
    /// the new period counts all the same).
    pub fn peek(&self, now_ms: i64, per: BudgetPeriod, tz: &TimeZone) -> (u64, i64) {
        let end = self.end_ms.load(Ordering::Acquire);
        if now_ms < end {
            return (self.total(end), end);
        }
        let next = period_bounds(per, now_ms, tz).map_or(now_ms + 3_600_000, |(_, e)| e);
        (self.fleet.get(next), next)
    }

    fn total(&self, end_ms: i64) -> u64 {
        self.own
            .load(Ordering::Acquire)
            .saturating_add(self.base.load(Ordering::Acquire))
            .saturating_add(self.fleet.get(end_ms))
    }

    /// Adds `micros` to this replica's spend in the period containing `now_ms`.
    pub fn charge(&self, micros: u64, now_ms: i64, per: BudgetPeriod, tz: &TimeZone) {
        if micros == 0 {
            return;
        }
        self.roll(now_ms, per, tz);
        self.own.fetch_add(micros, Ordering::AcqRel);
    }

    /// Sets the spend of the period containing `now_ms` to `micros`, the stored records' spend
    /// this period (at start). In fleet mode, call it after the first sync: the fleet's share
    /// (every shared count in the store, earlier runs of this replica's included) is what the
    /// records already hold, so only what it lacks becomes the base and nothing counts twice.
    pub fn seed(&self, micros: u64, now_ms: i64, per: BudgetPeriod, tz: &TimeZone) {
        let end = self.roll(now_ms, per, tz);
        let base = micros.saturating_sub(self.fleet.get(end));
        self.base.store(base, Ordering::Release);
    }

    /// This replica's own spend in the period ending at `end_ms` (0 if that is not the current
    /// period): what it shares with the fleet.
    pub fn own(&self, end_ms: i64) -> u64 {
        if self.end_ms.load(Ordering::Acquire) == end_ms {
            self.own.load(Ordering::Acquire)
        } else {
            0
        }
    }

    /// Sets the rest of the fleet's spend in the period ending at `end_ms` (the sync only).
    pub fn set_fleet(&self, end_ms: i64, micros: u64) {
        self.fleet.set(end_ms, micros);
    }

    /// Starts a new period when `now_ms` is past the current one; returns its end.
    fn roll(&self, now_ms: i64, per: BudgetPeriod, tz: &TimeZone) -> i64 {
        loop {
            let end = self.end_ms.load(Ordering::Acquire);
            if now_ms < end {
                return end;
            }
            // Out of jiff's range: an hour from now, so the check still terminates.
            let next = period_bounds(per, now_ms, tz).map_or(now_ms + 3_600_000, |(_, e)| e);
            if self
                .end_ms
                .compare_exchange(end, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.own.store(0, Ordering::Release);
                self.base.store(0, Ordering::Release);
                return next;
            }
        }
    }
}

/// Bits of a [`Share`] that hold micro-dollars: up to $1.1 billion, above the largest budget
/// validation accepts.
const SHARE_BITS: u32 = 50;
const SHARE_MASK: u64 = (1 << SHARE_BITS) - 1;
const HOUR_MS: i64 = 3_600_000;

/// The rest of the fleet's spend in one period, in one atomic with a tag of the period it is
/// for (its end in hours, low 14 bits): admission never pairs a share with another period, and
/// a share left from the period before reads as 0. Period ends are local midnights, at least 23
/// hours apart, so two periods a sync could confuse never have the same tag (the tag repeats
/// every 1.9 years).
#[derive(Debug, Default)]
struct Share(AtomicU64);

impl Share {
    fn tag(end_ms: i64) -> u64 {
        (end_ms.div_euclid(HOUR_MS) as u64) & ((1 << (64 - SHARE_BITS)) - 1)
    }

    /// The share for the period ending at `end_ms` (0 when it holds another period's, or
    /// none was ever set).
    fn get(&self, end_ms: i64) -> u64 {
        let v = self.0.load(Ordering::Acquire);
        if v >> SHARE_BITS == Self::tag(end_ms) {
            v & SHARE_MASK
        } else {
            0
        }
    }

    fn set(&self, end_ms: i64, micros: u64) {
        let v = (Self::tag(end_ms) << SHARE_BITS) | micros.min(SHARE_MASK);
        self.0.store(v, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().expect("timestamp").as_millisecond()
    }

    fn ny() -> TimeZone {
        TimeZone::get("America/New_York").expect("zone")
    }

    /// Named rows: (what, period, now, start, end), instants in UTC.
    #[test]
    fn periods_follow_local_midnights_across_daylight_saving() {
        let rows = [
            (
                "a plain day is 24 h from local midnight (EST, -05:00)",
                BudgetPeriod::Day,
                "2026-01-15T12:00:00Z",
                "2026-01-15T05:00:00Z",
                "2026-01-16T05:00:00Z",
            ),
            (
                "just before local midnight is still the same day",
                BudgetPeriod::Day,
                "2026-01-16T04:59:59.999Z",
                "2026-01-15T05:00:00Z",
                "2026-01-16T05:00:00Z",
            ),
            (
                "the spring-forward day (2026-03-08) lasts 23 h",
                BudgetPeriod::Day,
                "2026-03-08T15:00:00Z",
                "2026-03-08T05:00:00Z",
                "2026-03-09T04:00:00Z",
            ),
            (
                "the fall-back day (2026-11-01) lasts 25 h",
                BudgetPeriod::Day,
                "2026-11-01T15:00:00Z",
                "2026-11-01T04:00:00Z",
                "2026-11-02T05:00:00Z",
            ),
            (
                "the week across spring-forward runs Monday to Monday, 167 h",
                BudgetPeriod::Week,
                "2026-03-08T15:00:00Z",
                "2026-03-02T05:00:00Z",
                "2026-03-09T04:00:00Z",
            ),
            (
                "Monday 03:00 UTC is Sunday 23:00 local: still the old week",
                BudgetPeriod::Week,
                "2026-03-09T03:00:00Z",
                "2026-03-02T05:00:00Z",
                "2026-03-09T04:00:00Z",
            ),
            (
                "March starts in EST and ends in EDT",
                BudgetPeriod::Month,
                "2026-03-20T00:00:00Z",
                "2026-03-01T05:00:00Z",
                "2026-04-01T04:00:00Z",
            ),
            (
                "the first hours of 1 November UTC are still October locally",
                BudgetPeriod::Month,
                "2026-11-01T02:00:00Z",
                "2026-10-01T04:00:00Z",
                "2026-11-01T04:00:00Z",
            ),
        ];
        for (what, per, now, start, end) in rows {
            assert_eq!(
                period_bounds(per, ms(now), &ny()),
                Some((ms(start), ms(end))),
                "{what}"
            );
        }
    }

    #[test]
    fn spend_starts_again_at_the_boundary() {
        let tz = ny();
        let s = Spend::default();
        let day = BudgetPeriod::Day;
        let before = ms("2026-03-08T03:59:00Z"); // 22:59 local on 7 March
        let after = ms("2026-03-08T05:00:00Z"); // 00:00 local on 8 March
        s.charge(4_000_000, before, day, &tz);
        assert_eq!(
            s.current(before, day, &tz),
            (4_000_000, after),
            "spent before local midnight"
        );
        assert_eq!(
            s.current(after - 1, day, &tz).0,
            4_000_000,
            "one ms before local midnight"
        );
        assert_eq!(
            s.current(after, day, &tz),
            (0, ms("2026-03-09T04:00:00Z")),
            "a new day, 23 h long"
        );
    }

    /// Spend in the day of `now` as one replica sees it.
    fn seen(s: &Spend, now: i64) -> u64 {
        s.current(now, BudgetPeriod::Day, &TimeZone::UTC).0
    }

    #[test]
    fn a_seed_counts_what_the_records_hold_beyond_the_fleet_rows_once() {
        let (day, utc) = (BudgetPeriod::Day, TimeZone::UTC);
        let now = ms("2026-01-15T12:00:00Z");
        let end = ms("2026-01-16T00:00:00Z");
        // One replica: no shared rows, the records are the whole spend.
        let alone = Spend::default();
        alone.seed(4, now, day, &utc);
        assert_eq!(seen(&alone, now), 4);
        assert_eq!(alone.own(end), 0, "the seed is not this replica's to share");

        // A first run with $2 of records from before fleet sharing (no rows) charges 3: its
        // row says 3, the records 5. The restarted process reads that row as the fleet's.
        let first = Spend::default();
        first.seed(2, now, day, &utc);
        first.charge(3, now, day, &utc);
        assert_eq!((seen(&first, now), first.own(end)), (5, 3));
        let second = Spend::default();
        second.set_fleet(end, first.own(end));
        second.seed(5, now, day, &utc);
        assert_eq!(
            seen(&second, now),
            5,
            "5, not the records' 5 plus the row's 3"
        );
        second.charge(1, now, day, &utc);
        assert_eq!((seen(&second, now), second.own(end)), (6, 1));

        // Two replicas started together over the same $2 of records: the base is never
        // shared, so each counts it once and the other's charges on top.
        let (a, b) = (Spend::default(), Spend::default());
        a.seed(2, now, day, &utc);
        b.seed(2, now, day, &utc);
        a.charge(1, now, day, &utc);
        b.set_fleet(end, a.own(end));
        assert_eq!(
            seen(&b, now),
            3,
            "2 from the records + a's 1, not 2 + 2 + 1"
        );

        // Rows ahead of the records (a replica's last requests not written yet): the rows.
        let ahead = Spend::default();
        ahead.set_fleet(end, 7);
        ahead.seed(5, now, day, &utc);
        assert_eq!(seen(&ahead, now), 7);
    }

    #[test]
    fn a_fleet_share_counts_only_in_its_period() {
        let (day, utc) = (BudgetPeriod::Day, TimeZone::UTC);
        let now = ms("2026-01-15T12:00:00Z");
        let s = Spend::default();
        s.set_fleet(ms("2026-01-15T00:00:00Z"), 9);
        assert_eq!(seen(&s, now), 0, "yesterday's share");
        s.set_fleet(ms("2026-01-16T00:00:00Z"), 9);
        s.charge(1, now, day, &utc);
        assert_eq!(seen(&s, now), 10);
        assert_eq!(s.peek(now, day, &utc).0, 10);
        let tomorrow = ms("2026-01-16T00:00:00Z");
        assert_eq!(
            s.peek(tomorrow, day, &utc).0,
            0,
            "a new day, before any request rolls it"
        );
        assert_eq!(
            seen(&s, tomorrow),
            0,
            "the share and the base go with the day"
        );
        s.set_fleet(ms("2026-01-17T00:00:00Z"), u64::MAX);
        assert_eq!(
            seen(&s, tomorrow),
            SHARE_MASK,
            "a share saturates, never wraps"
        );
    }

    #[test]
    fn dollars_round_to_micro_dollars() {
        assert_eq!(micros(0.000_001_4), 1);
        assert_eq!(micros(5.0), 5_000_000);
        assert_eq!(micros(-1.0), 0);
        assert_eq!(micros(f64::NAN), 0);
    }
}
