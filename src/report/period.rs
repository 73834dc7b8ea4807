//! Report periods: the calendar day, ISO week or month a report covers, in the configured time
//! zone. Scheduled reports, `POST /api/reports/generate` and `gatehouse report` all take their
//! bounds from here, so they always agree.
//!
//! A period is `[start, end)` between two local midnights: a day runs 00:00 to 00:00 (24 h,
//! or 23 h / 25 h across a daylight-saving change), a week Monday 00:00 to Monday 00:00, a month
//! the 1st 00:00 to the next 1st 00:00. Where a zone skips midnight (some spring forward at
//! 00:00) the day starts at the first local instant after the gap; where midnight repeats, at
//! its first occurrence. By default a report covers the *previous* complete period; given a
//! date, the period that contains it (which may still be running).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, ZonedDateTime};
use serde::Serialize;

use crate::config::{parse_zone, ScheduleConfig};

use super::Period;

/// A date or instant the calendar arithmetic cannot represent (years outside -9999 … 9999).
#[derive(Debug, thiserror::Error)]
#[error("date out of range")]
pub struct OutOfRange(#[source] jiff::Error);

/// A time zone with the name it was configured by (`Europe/Paris`, `+02:00`, `UTC`).
#[derive(Clone, Debug)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Zone {
    /// Parses an IANA name, `UTC` or a fixed offset (the grammar of `report.schedule.time_zone`).
    ///
    /// # Errors
    /// A message naming the value when it is not a zone.
    pub fn parse(name: &str) -> Result<Zone, String> {
        Ok(Zone {
            tz: parse_zone(name)?,
            name: name.trim().to_owned(),
        })
    }

    /// The zone of a validated schedule; UTC if it does not parse (validation reports that).
    pub fn of(s: &ScheduleConfig) -> Zone {
        Zone::parse(s.zone_name()).unwrap_or_else(|_| Zone::utc())
    }

    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            tz: TimeZone::UTC,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// The local date at `ms` (unix ms).
    ///
    /// # Errors
    /// `ms` is outside the representable range.
    pub fn date_of(&self, ms: i64) -> Result<Date, OutOfRange> {
        let ts = Timestamp::from_millisecond(ms).map_err(OutOfRange)?;
        Ok(ts.to_zoned_datetime(self.tz.clone()).date())
    }

    /// Unix ms of the start of local day `d`.
    ///
    /// # Errors
    /// `d` is outside the representable range.
    pub fn midnight(&self, d: Date) -> Result<i64, OutOfRange> {
        Ok(self.start_of(d)?.timestamp().as_millisecond())
    }

    fn start_of(&self, d: Date) -> Result<ZonedDateTime, OutOfRange> {
        d.to_zoned_datetime(self.tz.clone()).map_err(OutOfRange)
    }
}

/// The bounds of one report period.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bounds {
    pub period: Period,
    /// Unix ms of the start (inclusive) and the end (exclusive).
    pub from_ms: i64,
    pub to_ms: i64,
    /// The same instants in RFC 3339 with the local offset of each, e.g.
    /// `2026-03-29T00:00:00+01:00`.
    pub from: String,
    pub to: String,
    /// The zone as configured.
    pub zone: String,
    /// First and last local date of the period.
    #[serde(skip)]
    pub first_day: Date,
    #[serde(skip)]
    pub last_day: Date,
}

/// The period of kind `period` that contains local date `day`.
///
/// # Errors
/// A date outside the representable range.
pub fn containing(period: Period, day: Date, zone: &Zone) -> Result<Bounds, OutOfRange> {
    let first = match period {
        Period::Daily => day,
        Period::Weekly => day
            .checked_sub(i64::from(day.weekday().to_monday_zero_offset()).days())
            .map_err(OutOfRange)?,
        Period::Monthly => day.first_of_month(),
    };
    let step = match period {
        Period::Daily => 1.day(),
        Period::Weekly => 7.days(),
        Period::Monthly => 1.month(),
    };
    let next = first.checked_add(step).map_err(OutOfRange)?;
    let (from, to) = (zone.start_of(first)?, zone.start_of(next)?);
    Ok(Bounds {
        period,
        from_ms: from.timestamp().as_millisecond(),
        to_ms: to.timestamp().as_millisecond(),
        from: rfc3339(&from),
        to: rfc3339(&to),
        zone: zone.name.clone(),
        first_day: first,
        last_day: next.yesterday().map_err(OutOfRange)?,
    })
}

/// The last complete period of kind `period` before `now_ms`: yesterday, last ISO week or last
/// month, in local time.
///
/// # Errors
/// `now_ms` is outside the representable range.
pub fn previous(period: Period, now_ms: i64, zone: &Zone) -> Result<Bounds, OutOfRange> {
    let today = zone.date_of(now_ms)?;
    let inside = match period {
        Period::Daily => today.yesterday(),
        Period::Weekly => today.checked_sub(7.days()),
        Period::Monthly => today.first_of_month().yesterday(),
    };
    containing(period, inside.map_err(OutOfRange)?, zone)
}

/// The period a report on `period` covers: the one containing local date `date`, or the
/// previous complete one at `now_ms`. Scheduled reports, the admin API and the CLI all call
/// this.
///
/// # Errors
/// A date or time outside the representable range.
pub fn of(
    period: Period,
    date: Option<Date>,
    now_ms: i64,
    zone: &Zone,
) -> Result<Bounds, OutOfRange> {
    match date {
        Some(d) => containing(period, d, zone),
        None => previous(period, now_ms, zone),
    }
}

impl Bounds {
    /// The period of the same kind just before this one (for "week on week" figures).
    ///
    /// # Errors
    /// A date outside the representable range.
    pub fn before(&self, zone: &Zone) -> Result<Bounds, OutOfRange> {
        containing(
            self.period,
            self.first_day.yesterday().map_err(OutOfRange)?,
            zone,
        )
    }

    /// Hours the period lasts (23, 24 or 25 for a day across a daylight-saving change).
    pub fn hours(&self) -> i64 {
        (self.to_ms - self.from_ms) / 3_600_000
    }
}

/// Starts (unix ms) of `days` local days ending with `last`, oldest first, followed by the end
/// of `last`: `days + 1` boundaries.
///
/// # Errors
/// A date outside the representable range.
pub fn day_starts(last: Date, days: usize, zone: &Zone) -> Result<Vec<i64>, OutOfRange> {
    let back = i64::try_from(days).unwrap_or(i64::MAX) - 1;
    let mut d = last.checked_sub(back.days()).map_err(OutOfRange)?;
    let mut out = Vec::with_capacity(days + 1);
    for _ in 0..=days {
        out.push(zone.midnight(d)?);
        d = d.tomorrow().map_err(OutOfRange)?;
    }
    Ok(out)
}

fn rfc3339(z: &ZonedDateTime) -> String {
    z.timestamp().display_with_offset(z.offset()).to_string()
}

#[cfg(test)]
mod tests;
