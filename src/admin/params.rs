//! Query-parameter parsing with messages that say what is wrong ("days must be an integer
//! between 1 and 365, got \"0\""). Times are RFC 3339 or unix seconds.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::store::Cursor;

use super::AdminError;

fn bad(msg: String) -> AdminError {
    AdminError::BadRequest(msg)
}

/// An integer parameter in `min..=max`, `default` when absent.
pub fn int_in(
    name: &str,
    v: Option<&str>,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, AdminError> {
    let Some(raw) = v else {
        return Ok(default);
    };
    match raw.trim().parse::<i64>() {
        Ok(n) if n >= i64::from(min) && n <= i64::from(max) => Ok(n as u32),
        _ => Err(bad(format!(
            "{name} must be an integer between {min} and {max}, got {raw:?}"
        ))),
    }
}

/// A time parameter as unix ms: RFC 3339 (`2026-01-05T00:00:00Z`) or unix seconds.
pub fn time_ms(name: &str, v: Option<&str>) -> Result<Option<i64>, AdminError> {
    let Some(raw) = v.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if let Ok(secs) = raw.parse::<i64>() {
        if (0..=253_402_300_799).contains(&secs) {
            return Ok(Some(secs * 1000));
        }
    } else if let Ok(t) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Ok(Some((t.unix_timestamp_nanos() / 1_000_000) as i64));
    }
    Err(bad(format!(
        "{name} must be an RFC 3339 time (2026-01-05T00:00:00Z) or unix seconds, got {raw:?}"
    )))
}

/// Checks that `since < until` when both are given.
pub fn range(
    since: Option<i64>,
    until: Option<i64>,
    names: (&str, &str),
) -> Result<(), AdminError> {
    match (since, until) {
        (Some(s), Some(u)) if s >= u => {
            Err(bad(format!("{} must be earlier than {}", names.0, names.1)))
        }
        _ => Ok(()),
    }
}

/// One of a closed set of values, or absent.
pub fn one_of(name: &str, v: Option<&str>, allowed: &[&str]) -> Result<Option<String>, AdminError> {
    match v {
        None => Ok(None),
        Some(raw) if allowed.contains(&raw) => Ok(Some(raw.to_owned())),
        Some(raw) => Err(bad(format!(
            "{name} must be one of {}, got {raw:?}",
            allowed.join(", ")
        ))),
    }
}

/// A page cursor from a previous response's `next_cursor`.
pub fn cursor(v: Option<&str>) -> Result<Option<Cursor>, AdminError> {
    v.map(|raw| {
        Cursor::parse(raw).ok_or_else(|| {
            bad(format!(
                "cursor must be a next_cursor from a previous page, got {raw:?}"
            ))
        })
    })
    .transpose()
}

/// A free-text filter (user id, model), bounded in length.
pub fn text(name: &str, v: Option<&str>) -> Result<Option<String>, AdminError> {
    match v {
        Some(raw) if raw.len() > 256 => Err(bad(format!("{name} is longer than 256 bytes"))),
        Some(raw) if !raw.is_empty() => Ok(Some(raw.to_owned())),
        _ => Ok(None),
    }
}

pub const LEVELS: &[&str] = &["none", "low", "medium", "high", "critical"];
pub const CATEGORIES: &[&str] = &[
    "prompt_injection",
    "jailbreak",
    "data_extraction",
    "code_injection",
    "suspicious_keywords",
    "obfuscation",
    "secrets_in_prompt",
    "pii_in_prompt",
];
pub const OUTCOMES: &[&str] = &[
    "ok",
    "upstream_error",
    "stream_error",
    "failed",
    "rejected",
    "blocked",
    "cancelled",
    "unknown",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_accept_rfc3339_and_unix_seconds() {
        assert_eq!(
            time_ms("from", Some("1767571200")).ok(),
            Some(Some(1_767_571_200_000))
        );
        assert_eq!(
            time_ms("from", Some("2026-01-05T01:00:00+01:00")).ok(),
            Some(Some(1_767_571_200_000))
        );
        assert!(time_ms("from", Some("yesterday")).is_err());
        assert!(time_ms("from", Some("-5")).is_err());
    }

    #[test]
    fn days_are_bounded() {
        assert_eq!(int_in("days", None, 7, 1, 365).ok(), Some(7));
        for raw in ["0", "-1", "366", "x", "1e3"] {
            let err = int_in("days", Some(raw), 7, 1, 365)
                .expect_err(raw)
                .to_string();
            assert!(err.contains("between 1 and 365"), "{err}");
        }
    }
}
