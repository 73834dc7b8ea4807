//! The proxy's side of quotas: which models a key may call, admission against the limits (the
//! `limit` phase, between inspection and forwarding) and the `x-ratelimit-*` headers. The
//! counters and the decision are `crate::quota`'s; this file only asks and answers.
//!
//! Admission comes after inspection so that the token estimate reads the texts the detector
//! read (`Exchange::prompt_chars`), and so that a request the detector blocks never counts
//! against anyone's limits: limits are about what reaches the upstream.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};

use super::error::ProxyError;
use super::record::Recorder;
use super::runtime::{Identity, Runtime, Target};
use super::Proxy;
use crate::event::Limited;
use crate::quota::{go_duration, Ask, Figure, RateHeaders};

/// Characters per token in the prompt estimate (OpenAI's rule of thumb for English). The
/// estimate is corrected with the answer's usage when the answer ends.
const CHARS_PER_TOKEN: u64 = 4;

/// Unix milliseconds now (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Refuses a model outside the key's allow-list (by the name asked for or the upstream id it
/// resolves to).
///
/// # Errors
/// `ModelNotAllowed`.
pub fn check_model(key: Option<&Identity>, asked: &str, target: &Target) -> Result<(), ProxyError> {
    let Some(allowed) = key.and_then(|k| k.models.as_deref()) else {
        return Ok(());
    };
    if allowed.iter().any(|m| m == asked || **m == *target.model) {
        Ok(())
    } else {
        Err(ProxyError::ModelNotAllowed {
            model: asked.to_owned(),
        })
    }
}

/// Admits the request against every limit that applies, or refuses it. An admitted request's
/// ticket goes into the recorder, which settles it when the record is finished.
///
/// # Errors
/// `RateLimited` or `QuotaExceeded` (429) naming the limit that has no room.
pub fn admit(
    proxy: &Proxy,
    rt: &Runtime,
    rec: &mut Recorder,
    key: Option<&Identity>,
    body_len: usize,
) -> Result<(), ProxyError> {
    let ex = rec.ex();
    let chars = ex.prompt_chars.unwrap_or(body_len as u64);
    let ask = Ask {
        key: key.and_then(|k| k.quota.as_ref()),
        user: ex.user.as_deref().or(ex.key_user.as_deref()),
        team: ex.team.as_deref(),
        model: ex.model.as_deref(),
        upstream_model: ex.upstream_model.as_deref(),
        tokens: chars.div_ceil(CHARS_PER_TOKEN),
        now_ms: now_ms(),
    };
    match rt.quotas.admit(&ask) {
        Ok(None) => Ok(()),
        Ok(Some(ticket)) => {
            rec.hold(ticket, &rt.prices);
            Ok(())
        }
        Err(r) => {
            let (scope, reason) = (r.scope.as_str(), r.reason.as_str());
            proxy.metrics.ratelimit_rejected(scope, reason);
            rec.ex().limited = Some(Limited { scope, reason });
            Err(ProxyError::from(r))
        }
    }
}

/// Sets OpenAI's `x-ratelimit-*` headers for the tightest request and token limits, replacing
/// any the upstream sent (the client's limits here are the gateway's).
pub fn set_headers(h: &mut HeaderMap, rate: &RateHeaders) {
    let rows = [
        (
            rate.requests,
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
        ),
        (
            rate.tokens,
            [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
        ),
    ];
    for (figure, [limit, remaining, reset]) in rows {
        let Some(Figure {
            limit: l,
            remaining: r,
            reset_ms,
        }) = figure
        else {
            continue;
        };
        for (name, value) in [
            (limit, l.to_string()),
            (remaining, r.to_string()),
            (reset, go_duration(reset_ms)),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
    }
}
