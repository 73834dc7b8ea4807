//! Config section for the analysis agent (`report`): schedules and their time zone, the model
//! asked for advice, the rule engine's thresholds, threshold auto-tuning, retention and the
//! digest sent through the alert channels. Serde shapes plus the pure parsing of the schedule
//! strings and the zone (so `validate`, the scheduler and the period arithmetic agree on one
//! grammar).

use jiff::tz::{Offset, TimeZone};
use serde::{Deserialize, Serialize};

/// The analysis agent: daily, weekly and monthly reports with recommendations.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    /// Generate reports on the schedules below. Default true (the rule engine costs nothing).
    pub enabled: bool,
    /// Model asked for recommendations, routed like a client request (alias, prefix route or
    /// default upstream) but never scanned or recorded as traffic. Default none: the
    /// deterministic rule engine writes every report.
    pub model: Option<String>,
    /// Seconds one LLM call may take, answer included. Default 60.
    pub timeout_secs: f64,
    pub schedule: ScheduleConfig,
    pub rules: RuleThresholds,
    /// Apply the threshold proposal of each scheduled report by itself (within
    /// `auto_tune_max_step`, logged, kept in the threshold history). Default false.
    pub auto_tune: bool,
    /// Largest relative change of one threshold per auto-tune step (0.25 = ±25 %). Default 0.25.
    pub auto_tune_max_step: f32,
    /// Days a stored report is kept (by its creation time); 0 keeps every report. Default 365.
    pub retention_days: u32,
    pub digest: DigestConfig,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            enabled: true,
            model: None,
            timeout_secs: 60.0,
            schedule: ScheduleConfig::default(),
            rules: RuleThresholds::default(),
            auto_tune: false,
            auto_tune_max_step: 0.25,
            retention_days: 365,
            digest: DigestConfig::default(),
        }
    }
}

/// When reports are written, in local time of `time_zone` (daylight-saving changes
/// included). `null` switches one schedule off.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// `HH:MM` every day. Default `06:00`.
    pub daily: Option<String>,
    /// `ddd HH:MM` (mon … sun) every week. Default `mon 06:00`.
    pub weekly: Option<String>,
    /// `D HH:MM` (day 1 … 28) every month. Default `1 06:00`.
    pub monthly: Option<String>,
    /// Time zone of the times above and of the report periods (local calendar days, ISO weeks
    /// and months): an IANA name (`Europe/Paris`, `America/New_York`), `UTC`, or a fixed
    /// offset `+HH:MM` / `-HH:MM` (no daylight saving). Default `UTC`.
    pub time_zone: String,
    /// Deprecated: a fixed offset `+HH:MM` / `-HH:MM`, read as `time_zone` when that is left
    /// at its default. Default none.
    pub utc_offset: Option<String>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            daily: Some("06:00".into()),
            weekly: Some("mon 06:00".into()),
            monthly: Some("1 06:00".into()),
            time_zone: DEFAULT_ZONE.into(),
            utc_offset: None,
        }
    }
}

const DEFAULT_ZONE: &str = "UTC";

/// A short digest of each scheduled report, sent through the alert channels (`alerts.channels`,
/// with `alerts.delivery`'s retries).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DigestConfig {
    /// Send a digest when a scheduled report is stored. Needs `alerts.enabled`. Default false.
    pub enabled: bool,
    /// Channel kinds the digest goes to: `email`, `slack`, `teams`, `webhook`. Empty means
    /// every enabled channel of these kinds (Alertmanager takes alerts only). Default empty.
    pub channels: Vec<String>,
    /// Recommendations listed in the digest, highest priority first (1 … 20). Default 5.
    pub top: usize,
    /// Base URL of the admin API as the readers reach it, e.g.
    /// `https://gatehouse-admin.example.com`; the digest links
    /// `<admin_url>/api/reports/<id>?format=html`. Default none: the digest gives the path.
    pub admin_url: Option<String>,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            enabled: false,
            channels: Vec::new(),
            top: 5,
            admin_url: None,
        }
    }
}

/// Channel kinds a digest can go to.
pub const DIGEST_CHANNELS: [&str; 4] = ["email", "slack", "teams", "webhook"];

/// When the rule engine speaks up.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuleThresholds {
    /// Error rate (0..1) of one upstream above which it is reported. Default 0.05.
    pub error_rate: f64,
    /// Relative rise of p95 latency over the previous period that is reported. Default 0.2.
    pub p95_rise: f64,
    /// Cost per request of a model, as a multiple of the median of the others, that is
    /// reported. Default 3.
    pub cost_ratio: f64,
    /// High or critical requests of one user in the period that are reported. Default 5.
    pub high_risk_requests: u64,
    /// Share (0..1) of scanned requests blocked above which thresholds look too tight.
    /// Default 0.05.
    pub blocked_share: f64,
    /// p95 time to first token of a model's streamed requests, seconds, above which it is
    /// reported (whatever the period before). Greater than 0. Default 2.0.
    pub ttft_p95_secs: f64,
}

impl Default for RuleThresholds {
    fn default() -> Self {
        RuleThresholds {
            error_rate: 0.05,
            p95_rise: 0.2,
            cost_ratio: 3.0,
            high_risk_requests: 5,
            blocked_share: 0.05,
            ttft_p95_secs: 2.0,
        }
    }
}

/// One parsed schedule entry: weekday (0 = Monday) or day of month, and minute of the day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    Daily { minute: u32 },
    Weekly { weekday: u32, minute: u32 },
    Monthly { day: u32, minute: u32 },
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Parses `HH:MM` into minutes of the day.
pub fn parse_time(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// Parses a daily (`HH:MM`), weekly (`ddd HH:MM`) or monthly (`D HH:MM`) entry.
pub fn parse_at(kind: &str, s: &str) -> Option<At> {
    match kind {
        "daily" => Some(At::Daily {
            minute: parse_time(s)?,
        }),
        "weekly" => {
            let (d, t) = s.trim().split_once(' ')?;
            let weekday = WEEKDAYS.iter().position(|w| w.eq_ignore_ascii_case(d))? as u32;
            Some(At::Weekly {
                weekday,
                minute: parse_time(t)?,
            })
        }
        "monthly" => {
            let (d, t) = s.trim().split_once(' ')?;
            let day: u32 = d.parse().ok()?;
            (1..=28).contains(&day).then_some(())?;
            Some(At::Monthly {
                day,
                minute: parse_time(t)?,
            })
        }
        _ => None,
    }
}

/// Parses `+HH:MM` / `-HH:MM` into minutes east of UTC.
pub fn parse_offset(s: &str) -> Option<i32> {
    let s = s.trim();
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let m = parse_time(rest)? as i32;
    (m <= 14 * 60).then_some(sign * m)
}

/// Parses a time zone: an IANA name, `UTC`, or a fixed offset `+HH:MM` / `-HH:MM`.
///
/// # Errors
/// A message naming the value when it is none of these (or the name is not in the time-zone
/// database: the system's `/usr/share/zoneinfo`, else the copy built into the binary).
pub fn parse_zone(s: &str) -> Result<TimeZone, String> {
    let s = s.trim();
    if s.starts_with(['+', '-']) {
        return parse_offset(s)
            .and_then(|m| Offset::from_seconds(m * 60).ok())
            .map(TimeZone::fixed)
            .ok_or_else(|| format!("{s:?} is not a fixed offset +HH:MM or -HH:MM"));
    }
    if s.eq_ignore_ascii_case("utc") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(s).map_err(|_| {
        format!("{s:?} is not a known time zone: use an IANA name such as Europe/Paris, UTC, or a fixed offset such as +02:00")
    })
}

impl ScheduleConfig {
    /// The zone in force as written: `time_zone`, or the deprecated `utc_offset` when
    /// `time_zone` is left at its default.
    pub fn zone_name(&self) -> &str {
        match &self.utc_offset {
            Some(off) if self.time_zone == DEFAULT_ZONE => off,
            _ => &self.time_zone,
        }
    }

    /// The zone in force; `None` when it does not parse (`validate` reports it).
    pub fn zone(&self) -> Option<TimeZone> {
        parse_zone(self.zone_name()).ok()
    }

    /// The configured entries, parsed; bad entries are left out (`validate` reports them).
    pub fn entries(&self) -> Vec<(&'static str, At)> {
        [
            ("daily", &self.daily),
            ("weekly", &self.weekly),
            ("monthly", &self.monthly),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, parse_at(k, v.as_deref()?)?)))
        .collect()
    }

    /// Problems with the entries and the offset, for `validate`.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (kind, v) in [
            ("daily", &self.daily),
            ("weekly", &self.weekly),
            ("monthly", &self.monthly),
        ] {
            if let Some(v) = v {
                if parse_at(kind, v).is_none() {
                    p.push(format!("report.schedule.{kind}: cannot parse {v:?}"));
                }
            }
        }
        match &self.utc_offset {
            Some(_) if self.time_zone != DEFAULT_ZONE => p.push(
                "report.schedule: set time_zone or the deprecated utc_offset, not both".into(),
            ),
            Some(off) if parse_offset(off).is_none() => p.push(format!(
                "report.schedule.utc_offset: {off:?} is not +HH:MM or -HH:MM"
            )),
            Some(_) => {}
            None => {
                if let Err(e) = parse_zone(&self.time_zone) {
                    p.push(format!("report.schedule.time_zone: {e}"));
                }
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_strings() {
        assert_eq!(parse_at("daily", "06:30"), Some(At::Daily { minute: 390 }));
        assert_eq!(
            parse_at("weekly", "Mon 06:00"),
            Some(At::Weekly {
                weekday: 0,
                minute: 360
            })
        );
        assert_eq!(
            parse_at("monthly", "1 00:05"),
            Some(At::Monthly { day: 1, minute: 5 })
        );
        assert_eq!(
            parse_at("monthly", "31 06:00"),
            None,
            "day 29+ skips months"
        );
        assert_eq!(parse_at("daily", "24:00"), None);
        assert_eq!(parse_offset("+01:00"), Some(60));
        assert_eq!(parse_offset("-05:30"), Some(-330));
        assert_eq!(parse_offset("01:00"), None);
        assert!(ScheduleConfig::default().problems().is_empty());
    }

    #[test]
    fn zones_are_iana_names_utc_or_fixed_offsets() {
        for ok in [
            "Europe/Paris",
            "America/New_York",
            "UTC",
            "utc",
            "+02:00",
            "-05:30",
        ] {
            assert!(parse_zone(ok).is_ok(), "{ok}");
        }
        for bad in ["Europe/Pariss", "Mars/Olympus", "", "+25:00", "CEST+1"] {
            assert!(parse_zone(bad).is_err(), "{bad}");
        }
        let mut s = ScheduleConfig {
            time_zone: "Europe/Nowhere".into(),
            ..ScheduleConfig::default()
        };
        let p = s.problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("report.schedule.time_zone: \"Europe/Nowhere\""),
            "{p:?}"
        );
        s.time_zone = "UTC".into();
        s.utc_offset = Some("+01:00".into());
        assert!(s.problems().is_empty(), "the old fixed offset still loads");
        assert_eq!(s.zone_name(), "+01:00");
        s.time_zone = "Europe/Paris".into();
        assert_eq!(s.problems().len(), 1, "not both");
    }
}
