//! Config section for the analysis agent (`report`): schedules, the model asked for advice,
//! the rule engine's thresholds and threshold auto-tuning. Serde shapes plus the pure parsing of
//! the schedule strings (so `validate` and the scheduler agree on one grammar).

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
        }
    }
}

/// When reports are written, in local time at a fixed UTC offset (no daylight-saving rules:
/// change `utc_offset` when the clocks change). `null` switches one schedule off.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// `HH:MM` every day. Default `06:00`.
    pub daily: Option<String>,
    /// `ddd HH:MM` (mon … sun) every week. Default `mon 06:00`.
    pub weekly: Option<String>,
    /// `D HH:MM` (day 1 … 28) every month. Default `1 06:00`.
    pub monthly: Option<String>,
    /// Offset of local time from UTC, `+HH:MM` or `-HH:MM`. Default `+00:00`.
    pub utc_offset: String,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            daily: Some("06:00".into()),
            weekly: Some("mon 06:00".into()),
            monthly: Some("1 06:00".into()),
            utc_offset: "+00:00".into(),
        }
    }
}

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
}

impl Default for RuleThresholds {
    fn default() -> Self {
        RuleThresholds {
            error_rate: 0.05,
            p95_rise: 0.2,
            cost_ratio: 3.0,
            high_risk_requests: 5,
            blocked_share: 0.05,
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

impl ScheduleConfig {
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
        if parse_offset(&self.utc_offset).is_none() {
            p.push(format!(
                "report.schedule.utc_offset: {:?} is not +HH:MM or -HH:MM",
                self.utc_offset
            ));
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
}
