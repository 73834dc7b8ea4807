//! Schedules: when the next daily, weekly or monthly report is due (pure), and the loop `app`
//! spawns that sleeps until then and fires.
//!
//! Local time is UTC plus a fixed offset (`report.schedule.utc_offset`); there are no
//! daylight-saving rules. The loop keeps its wall clock as "wall time at start + tokio time
//! elapsed", so tests drive it with paused time, and re-reads the schedule at least hourly so a
//! reload takes effect without a restart.

use std::future::Future;
use std::time::Duration;

use crate::config::{parse_offset, At, ScheduleConfig};

use super::Period;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// Longest sleep before the schedule is read again.
const RECHECK: Duration = Duration::from_secs(3600);

/// The first time strictly after `now_ms` (unix ms) at which `at` fires, local time being UTC
/// plus `offset_min` minutes.
pub fn next_fire(now_ms: i64, at: At, offset_min: i32) -> i64 {
    let off = i64::from(offset_min) * MINUTE_MS;
    let local = now_ms + off;
    let day = local.div_euclid(DAY_MS);
    let next = match at {
        At::Daily { minute } => {
            let c = day * DAY_MS + i64::from(minute) * MINUTE_MS;
            if c > local {
                c
            } else {
                c + DAY_MS
            }
        }
        At::Weekly { weekday, minute } => {
            // 1970-01-01 was a Thursday (weekday 3 with Monday = 0).
            let today = (day + 3).rem_euclid(7);
            let c = (day - today + i64::from(weekday)) * DAY_MS + i64::from(minute) * MINUTE_MS;
            if c > local {
                c
            } else {
                c + 7 * DAY_MS
            }
        }
        At::Monthly { day: dom, minute } => {
            let (y, m, _) = civil_from_days(day);
            let at = |y: i64, m: u32| {
                days_from_civil(y, m, dom) * DAY_MS + i64::from(minute) * MINUTE_MS
            };
            let c = at(y, m);
            if c > local {
                c
            } else if m == 12 {
                at(y + 1, 1)
            } else {
                at(y, m + 1)
            }
        }
    };
    next - off
}

/// The next firing of any entry of `s` after `now_ms`, with every period due at that time.
pub fn next_due(s: &ScheduleConfig, now_ms: i64) -> Option<(i64, Vec<Period>)> {
    let off = parse_offset(&s.utc_offset)?;
    let fires: Vec<(i64, Period)> = s
        .entries()
        .into_iter()
        .filter_map(|(k, at)| Some((next_fire(now_ms, at, off), Period::parse(k)?)))
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

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Day count since 1970-01-01 of a civil date (Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-01T00:00:00Z, a Thursday.
    const JAN1: i64 = 1_767_225_600_000;
    const H: i64 = 3_600_000;

    #[test]
    fn calendar_round_trips() {
        for z in [-1, 0, 59, 10_957, 20_454, 20_513] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(JAN1 / DAY_MS), (2026, 1, 1));
    }

    #[test]
    fn next_firings() {
        let daily = At::Daily { minute: 6 * 60 };
        let cases = [
            (
                "daily later today, UTC",
                next_fire(JAN1, daily, 0),
                JAN1 + 6 * H,
            ),
            (
                "daily at +01:00 is 05:00Z",
                next_fire(JAN1, daily, 60),
                JAN1 + 5 * H,
            ),
            (
                "daily just after is tomorrow",
                next_fire(JAN1 + 6 * H, daily, 0),
                JAN1 + 30 * H,
            ),
            (
                "weekly mon from a thursday",
                next_fire(
                    JAN1,
                    At::Weekly {
                        weekday: 0,
                        minute: 360,
                    },
                    0,
                ),
                JAN1 + 4 * DAY_MS + 6 * H,
            ),
            (
                "weekly thu after its time is next week",
                next_fire(
                    JAN1 + 7 * H,
                    At::Weekly {
                        weekday: 3,
                        minute: 360,
                    },
                    0,
                ),
                JAN1 + 7 * DAY_MS + 6 * H,
            ),
            (
                "monthly on the 1st later today",
                next_fire(
                    JAN1,
                    At::Monthly {
                        day: 1,
                        minute: 360,
                    },
                    0,
                ),
                JAN1 + 6 * H,
            ),
            (
                "monthly after it is february",
                next_fire(
                    JAN1 + 7 * H,
                    At::Monthly {
                        day: 1,
                        minute: 360,
                    },
                    0,
                ),
                JAN1 + 31 * DAY_MS + 6 * H,
            ),
            (
                "local new year at -05:00 is still december 31 in local time",
                next_fire(JAN1, At::Monthly { day: 1, minute: 0 }, -300),
                JAN1 + 5 * H,
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{name}");
        }
    }
}
