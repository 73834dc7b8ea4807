use jiff::civil::{date, Date};

use super::*;

fn zone(name: &str) -> Zone {
    Zone::parse(name).expect("a known zone")
}

/// Unix ms of an RFC 3339 time.
fn ms(s: &str) -> i64 {
    s.parse::<Timestamp>().expect("rfc 3339").as_millisecond()
}

enum At {
    /// The period containing this local date.
    Day(Date),
    /// The period before this instant.
    Now(&'static str),
}

/// (name, zone, period, anchor, from, to, hours)
type Case = (
    &'static str,
    &'static str,
    Period,
    At,
    &'static str,
    &'static str,
    i64,
);

#[test]
fn period_bounds() {
    use Period::*;
    let cases: &[Case] = &[
        (
            "daily utc, previous",
            "UTC",
            Daily,
            At::Now("2026-01-01T06:00:00Z"),
            "2025-12-31T00:00:00+00:00",
            "2026-01-01T00:00:00+00:00",
            24,
        ),
        (
            "daily at local midnight is the day that just ended",
            "Europe/Paris",
            Daily,
            At::Now("2026-03-29T22:00:00Z"),
            "2026-03-29T00:00:00+01:00",
            "2026-03-30T00:00:00+02:00",
            23,
        ),
        (
            "daily a millisecond before local midnight",
            "Europe/Paris",
            Daily,
            At::Now("2026-03-29T21:59:59.999Z"),
            "2026-03-28T00:00:00+01:00",
            "2026-03-29T00:00:00+01:00",
            24,
        ),
        (
            "paris spring forward: 23 h",
            "Europe/Paris",
            Daily,
            At::Day(date(2026, 3, 29)),
            "2026-03-29T00:00:00+01:00",
            "2026-03-30T00:00:00+02:00",
            23,
        ),
        (
            "paris fall back: 25 h",
            "Europe/Paris",
            Daily,
            At::Day(date(2026, 10, 25)),
            "2026-10-25T00:00:00+02:00",
            "2026-10-26T00:00:00+01:00",
            25,
        ),
        (
            "new york spring forward: 23 h",
            "America/New_York",
            Daily,
            At::Day(date(2026, 3, 8)),
            "2026-03-08T00:00:00-05:00",
            "2026-03-09T00:00:00-04:00",
            23,
        ),
        (
            "new york fall back: 25 h",
            "America/New_York",
            Daily,
            At::Day(date(2026, 11, 1)),
            "2026-11-01T00:00:00-04:00",
            "2026-11-02T00:00:00-05:00",
            25,
        ),
        (
            "midnight skipped: the day starts after the gap",
            "America/Sao_Paulo",
            Daily,
            At::Day(date(2018, 11, 4)),
            "2018-11-04T01:00:00-02:00",
            "2018-11-05T00:00:00-02:00",
            23,
        ),
        (
            "fixed half-hour offset",
            "+05:30",
            Daily,
            At::Day(date(2026, 1, 1)),
            "2026-01-01T00:00:00+05:30",
            "2026-01-02T00:00:00+05:30",
            24,
        ),
        (
            "weekly containing a sunday: monday to monday",
            "Europe/Paris",
            Weekly,
            At::Day(date(2026, 3, 29)),
            "2026-03-23T00:00:00+01:00",
            "2026-03-30T00:00:00+02:00",
            167,
        ),
        (
            "weekly previous, on the monday after the dst week",
            "Europe/Paris",
            Weekly,
            At::Now("2026-03-30T04:00:00Z"),
            "2026-03-23T00:00:00+01:00",
            "2026-03-30T00:00:00+02:00",
            167,
        ),
        (
            "weekly after fall back: 168 h again",
            "Europe/Paris",
            Weekly,
            At::Day(date(2026, 10, 26)),
            "2026-10-26T00:00:00+01:00",
            "2026-11-02T00:00:00+01:00",
            168,
        ),
        (
            "weekly fall-back week: 169 h",
            "Europe/Paris",
            Weekly,
            At::Day(date(2026, 10, 25)),
            "2026-10-19T00:00:00+02:00",
            "2026-10-26T00:00:00+01:00",
            169,
        ),
        (
            "weekly containing a monday starts that day",
            "UTC",
            Weekly,
            At::Day(date(2026, 1, 5)),
            "2026-01-05T00:00:00+00:00",
            "2026-01-12T00:00:00+00:00",
            168,
        ),
        (
            "iso week 1 of 2026 starts in 2025",
            "UTC",
            Weekly,
            At::Day(date(2026, 1, 1)),
            "2025-12-29T00:00:00+00:00",
            "2026-01-05T00:00:00+00:00",
            168,
        ),
        (
            "monthly previous: a 29-day february",
            "UTC",
            Monthly,
            At::Now("2024-03-01T06:00:00Z"),
            "2024-02-01T00:00:00+00:00",
            "2024-03-01T00:00:00+00:00",
            29 * 24,
        ),
        (
            "monthly 28-day february",
            "UTC",
            Monthly,
            At::Day(date(2026, 2, 14)),
            "2026-02-01T00:00:00+00:00",
            "2026-03-01T00:00:00+00:00",
            28 * 24,
        ),
        (
            "monthly across spring forward: 743 h",
            "Europe/Paris",
            Monthly,
            At::Now("2026-04-01T04:00:00Z"),
            "2026-03-01T00:00:00+01:00",
            "2026-04-01T00:00:00+02:00",
            31 * 24 - 1,
        ),
        (
            "monthly previous in january is last december",
            "America/New_York",
            Monthly,
            At::Now("2026-01-01T11:00:00Z"),
            "2025-12-01T00:00:00-05:00",
            "2026-01-01T00:00:00-05:00",
            31 * 24,
        ),
        (
            "monthly previous on new year's day in utc is still december 31 in new york",
            "America/New_York",
            Monthly,
            At::Now("2026-01-01T03:00:00Z"),
            "2025-11-01T00:00:00-04:00",
            "2025-12-01T00:00:00-05:00",
            30 * 24 + 1,
        ),
    ];
    for (name, z, period, at, from, to, hours) in cases {
        let z = zone(z);
        let b = match at {
            At::Day(d) => of(*period, Some(*d), 0, &z),
            At::Now(now) => of(*period, None, ms(now), &z),
        }
        .expect(name);
        assert_eq!((b.from.as_str(), b.to.as_str()), (*from, *to), "{name}");
        assert_eq!((b.from_ms, b.to_ms), (ms(from), ms(to)), "{name}");
        assert_eq!(b.hours(), *hours, "{name}");
        assert_eq!(b.period, *period, "{name}");
        assert_eq!(b.zone, z.name(), "{name}");
    }
}

#[test]
fn the_period_before_is_the_same_kind_back_to_back() {
    let z = zone("Europe/Paris");
    let march = containing(Period::Monthly, date(2026, 3, 10), &z).expect("march");
    let feb = march.before(&z).expect("february");
    assert_eq!(feb.from, "2026-02-01T00:00:00+01:00");
    assert_eq!(feb.to_ms, march.from_ms, "back to back");
    assert_eq!(
        (feb.first_day, feb.last_day),
        (date(2026, 2, 1), date(2026, 2, 28))
    );
    let week = containing(Period::Weekly, date(2026, 3, 29), &z).expect("week");
    assert_eq!(week.before(&z).expect("week before").to_ms, week.from_ms);
    assert_eq!(week.last_day, date(2026, 3, 29));
}

#[test]
fn local_day_starts_follow_daylight_saving() {
    let z = zone("Europe/Paris");
    let starts = day_starts(date(2026, 3, 30), 3, &z).expect("starts");
    let hours: Vec<i64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]) / 3_600_000)
        .collect();
    assert_eq!(
        starts[0],
        ms("2026-03-27T23:00:00Z"),
        "march 28, local midnight"
    );
    assert_eq!(hours, [24, 23, 24]);
}
