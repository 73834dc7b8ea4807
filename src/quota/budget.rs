//! Spend budgets: dollars spent in the current day, week or month, in micro-dollars in an
//! atomic, with the period's end beside it. Periods are calendar periods in the report time
//! zone, between local midnights (a day is 23 or 25 hours across a daylight-saving change; a
//! week runs Monday to Monday), as in `report::period`, whose arithmetic this repeats because
//! `quota` sits below `report`.
//!
//! Trade-off: the period rolls over with a compare-and-swap on its end, then the spend is set
//! to zero; a charge that lands between the two is lost. That is one request's cost at most,
//! once a period, in exchange for no lock.

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
    micros: AtomicU64,
}

impl Spend {
    /// Micro-dollars spent in the period containing `now_ms`, and when that period ends.
    pub fn current(&self, now_ms: i64, per: BudgetPeriod, tz: &TimeZone) -> (u64, i64) {
        let end = self.roll(now_ms, per, tz);
        (self.micros.load(Ordering::Acquire), end)
    }

    /// As [`Spend::current`], without starting a new period (a reader's view: a period that
    /// has ended reads as 0 spent, until the next request rolls it over).
    pub fn peek(&self, now_ms: i64, per: BudgetPeriod, tz: &TimeZone) -> (u64, i64) {
        let end = self.end_ms.load(Ordering::Acquire);
        if now_ms < end {
            return (self.micros.load(Ordering::Acquire), end);
        }
        let next = period_bounds(per, now_ms, tz).map_or(now_ms + 3_600_000, |(_, e)| e);
        (0, next)
    }

    /// Adds `micros` to the period containing `now_ms`.
    pub fn charge(&self, micros: u64, now_ms: i64, per: BudgetPeriod, tz: &TimeZone) {
        if micros == 0 {
            return;
        }
        self.roll(now_ms, per, tz);
        self.micros.fetch_add(micros, Ordering::AcqRel);
    }

    /// Sets the spend of the period containing `now_ms` (at start, from the store).
    pub fn seed(&self, micros: u64, now_ms: i64, per: BudgetPeriod, tz: &TimeZone) {
        self.roll(now_ms, per, tz);
        self.micros.store(micros, Ordering::Release);
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
                self.micros.store(0, Ordering::Release);
                return next;
            }
        }
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

    #[test]
    fn dollars_round_to_micro_dollars() {
        assert_eq!(micros(0.000_001_4), 1);
        assert_eq!(micros(5.0), 5_000_000);
        assert_eq!(micros(-1.0), 0);
        assert_eq!(micros(f64::NAN), 0);
    }
}
