//! Schedules: when the next daily, weekly or monthly report is due (pure), and the loop `app`
//! spawns that sleeps until then and fires.
//!
//! Times are local times of `report.schedule.time_zone`, daylight saving included: a daily
//! report at 06:00 Europe/Paris fires at 06:00 local on both sides of a change, 23 or 25 hours
//! after the one before. A time the clocks skip fires just after the gap (02:30 on a
//! spring-forward night fires at 03:30); a time that happens twice fires the first time. The
//! loop keeps its wall clock as "wall time at start + tokio time elapsed", so tests drive it
//! with paused time, and re-reads the schedule at least hourly so a reload takes effect without
//! a restart.

use std::future::Future;
use std::time::Duration;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ToSpan};

use crate::config::{At, ScheduleConfig};

use super::Period;

/// Longest sleep before the schedule is read again.
const RECHECK: Duration = Duration::from_secs(3600);

/// The first time (unix ms) strictly after `now_ms` at which `at` fires in zone `tz`; `None`
/// only outside the calendar's range.
pub fn next_fire(now_ms: i64, at: At, tz: &TimeZone) -> Option<i64> {
    let today = Timestamp::from_millisecond(now_ms)
        .ok()?
        .to_zoned_datetime(tz.clone())
        .date();
    let (first, step, minute): (Date, Span, u32) = match at {
        At::Daily { minute } => (today, 1.day(), minute),
        At::Weekly { weekday, minute } => {
            let back = i64::from(today.weekday().to_monday_zero_offset()) - i64::from(weekday);
            (today.checked_sub(back.days()).ok()?, 7.days(), minute)
        }
        At::Monthly { day, minute } => {
            let d = Date::new(today.year(), today.month(), i8::try_from(day).ok()?).ok()?;
            (d, 1.month(), minute)
        }
    };
    // The candidate is in this day, week or month, or the next: two rounds, one spare.
    let mut day = first;
    for _ in 0..3 {
        let t = fire_at(day, minute, tz)?;
        if t > now_ms {
            return Some(t);
        }
        day = day.checked_add(step).ok()?;
    }
    None
}

/// Unix ms of `minute` past local midnight on `day` ("compatible" disambiguation: after a gap,
/// the first of two).
fn fire_at(day: Date, minute: u32, tz: &TimeZone) -> Option<i64> {
    let (h, m) = (
        i8::try_from(minute / 60).ok()?,
        i8::try_from(minute % 60).ok()?,
    );
    let time = jiff::civil::Time::new(h, m, 0, 0).ok()?;
    let zdt = day.to_datetime(time).to_zoned_datetime(tz.clone()).ok()?;
    Some(zdt.timestamp().as_millisecond())
}

/// The next firing of any entry of `s` after `now_ms`, with every period due at that time.
pub fn next_due(s: &ScheduleConfig, now_ms: i64) -> Option<(i64, Vec<Period>)> {
    let tz = s.zone()?;
    let fires: Vec<(i64, Period)> = s
        .entries()
        .into_iter()
        .filter_map(|(k, at)| Some((next_fire(now_ms, at, &tz)?, Period::parse(k)?)))
        .collect();
    let first = fires.iter().map(|f| f.0).min()?;
    let due = fires.iter().filter(|f| f.0 == first).map(|f| f.1).collect();
    Some((first, due))
}

/// Runs forever: sleeps until the next due time and calls `fire(period, due_ms)` for each
/// period due then. `start_ms` is the wall clock (unix ms) now; `schedule` is read again after
/// each firing and at least hourly.
pub async fn run<S, F, Fut>(start_ms: i64, schedule: S, mut fire: F)
where
    S: Fn() -> ScheduleConfig,
    F: FnMut(Period, i64) -> Fut,
    Fut: Future<Output = ()>,
{
    let start = tokio::time::Instant::now();
    let now = || start_ms + i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX);
    let mut current = schedule();
    let mut next = next_due(&current, now());
    loop {
        let wait = next.as_ref().map_or(RECHECK, |(t, _)| {
            Duration::from_millis((t - now()).max(0) as u64)
        });
        tokio::time::sleep(wait.min(RECHECK)).await;
        let latest = schedule();
        if latest != current {
            current = latest;
            next = next_due(&current, now());
            continue;
        }
        match next.take() {
            Some((t, periods)) if now() >= t => {
                for p in periods {
                    fire(p, t).await;
                }
                next = next_due(&current, t);
            }
            other => next = other,
        }
    }
}

#[cfg(test)]
mod tests;
