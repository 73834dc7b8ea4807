use super::*;

/// Unix ms of an RFC 3339 time.
fn ms(s: &str) -> i64 {
    s.parse::<Timestamp>().expect("rfc 3339").as_millisecond()
}

fn zone(name: &str) -> TimeZone {
    crate::config::parse_zone(name).expect("a known zone")
}

const DAILY_6: At = At::Daily { minute: 6 * 60 };

#[test]
fn next_firings() {
    let weekly = |weekday, minute| At::Weekly { weekday, minute };
    let monthly = |day, minute| At::Monthly { day, minute };
    // (name, zone, entry, now, next firing)
    let cases = [
        (
            "daily later today, UTC",
            "UTC",
            DAILY_6,
            "2026-01-01T00:00:00Z",
            "2026-01-01T06:00:00Z",
        ),
        (
            "daily at +01:00 is 05:00Z",
            "+01:00",
            DAILY_6,
            "2026-01-01T00:00:00Z",
            "2026-01-01T05:00:00Z",
        ),
        (
            "daily just after is tomorrow",
            "UTC",
            DAILY_6,
            "2026-01-01T06:00:00Z",
            "2026-01-02T06:00:00Z",
        ),
        (
            "weekly mon from a thursday",
            "UTC",
            weekly(0, 360),
            "2026-01-01T00:00:00Z",
            "2026-01-05T06:00:00Z",
        ),
        (
            "weekly thu after its time is next week",
            "UTC",
            weekly(3, 360),
            "2026-01-01T07:00:00Z",
            "2026-01-08T06:00:00Z",
        ),
        (
            "monthly on the 1st later today",
            "UTC",
            monthly(1, 360),
            "2026-01-01T00:00:00Z",
            "2026-01-01T06:00:00Z",
        ),
        (
            "monthly after it is february",
            "UTC",
            monthly(1, 360),
            "2026-01-01T07:00:00Z",
            "2026-02-01T06:00:00Z",
        ),
        (
            "monthly on the 28th of february",
            "UTC",
            monthly(28, 0),
            "2026-02-01T00:00:00Z",
            "2026-02-28T00:00:00Z",
        ),
        (
            "local new year at -05:00 is still december 31",
            "-05:00",
            monthly(1, 0),
            "2026-01-01T00:00:00Z",
            "2026-01-01T05:00:00Z",
        ),
        (
            "paris daily 06:00 before spring forward is 05:00Z",
            "Europe/Paris",
            DAILY_6,
            "2026-03-27T05:00:00Z",
            "2026-03-28T05:00:00Z",
        ),
        (
            "paris daily 06:00 after spring forward is 04:00Z: 23 h later",
            "Europe/Paris",
            DAILY_6,
            "2026-03-28T05:00:00Z",
            "2026-03-29T04:00:00Z",
        ),
        (
            "paris daily 06:00 after fall back is 05:00Z: 25 h later",
            "Europe/Paris",
            DAILY_6,
            "2026-10-24T04:00:00Z",
            "2026-10-25T05:00:00Z",
        ),
        (
            "a skipped time fires just after the gap",
            "Europe/Paris",
            At::Daily { minute: 150 },
            "2026-03-28T12:00:00Z",
            "2026-03-29T01:30:00Z",
        ),
        (
            "a repeated time fires the first time",
            "Europe/Paris",
            At::Daily { minute: 150 },
            "2026-10-24T12:00:00Z",
            "2026-10-25T00:30:00Z",
        ),
        (
            "and only once",
            "Europe/Paris",
            At::Daily { minute: 150 },
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:30:00Z",
        ),
        (
            "new york weekly sunday across spring forward",
            "America/New_York",
            weekly(6, 360),
            "2026-03-02T00:00:00Z",
            "2026-03-08T10:00:00Z",
        ),
        (
            "new york monthly in summer time",
            "America/New_York",
            monthly(1, 360),
            "2026-06-15T00:00:00Z",
            "2026-07-01T10:00:00Z",
        ),
    ];
    for (name, z, at, now, want) in cases {
        assert_eq!(next_fire(ms(now), at, &zone(z)), Some(ms(want)), "{name}");
    }
}

#[test]
fn due_periods_share_a_firing() {
    let s = ScheduleConfig {
        time_zone: "Europe/Paris".into(),
        ..ScheduleConfig::default()
    };
    // Monday 2026-06-01: daily, weekly (mon 06:00) and monthly (1 06:00) all fire at 04:00Z.
    let (at, due) = next_due(&s, ms("2026-06-01T00:00:00Z")).expect("due");
    assert_eq!(at, ms("2026-06-01T04:00:00Z"));
    assert_eq!(due, [Period::Daily, Period::Weekly, Period::Monthly]);
    let unknown = ScheduleConfig {
        time_zone: "Europe/Atlantis".into(),
        ..ScheduleConfig::default()
    };
    assert_eq!(next_due(&unknown, 0), None, "validation refuses it first");
}
