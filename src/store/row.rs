//! Flattening an `Exchange` into the column values the writer binds, and the rollup keys and
//! sums it accumulates per batch. Pure functions; no IO.

use std::collections::HashMap;

use crate::config::CaptureConfig;
use crate::detect::{Action, RiskLevel, Verdict};
use crate::event::Exchange;

use super::hist::{bucket_of, BUCKETS};
use crate::redact::{cap, redact};

pub(super) const MINUTE_MS: i64 = 60_000;
pub(super) const HOUR_MS: i64 = 3_600_000;
pub(super) const DAY_MS: i64 = 86_400_000;

/// The model a record is accounted under (rollups, live analytics): the upstream id after alias
/// resolution, else what the client asked for; `unknown` for requests rejected before a model
/// was read. A name is only a key when it is vouched for — a configured alias or a priced model
/// (`Exchange::model_known`), or one the upstream answered for (a success, or an error of the
/// upstream's own) — else `other`, so clients cannot grow the rollups with made-up names. The
/// record itself keeps the name sent.
pub fn model_key(ex: &Exchange) -> &str {
    let Some(name) = ex.upstream_model.as_deref().or(ex.model.as_deref()) else {
        return "unknown";
    };
    let served = (200..300).contains(&ex.status) || ex.blame == Some(crate::event::Blame::Upstream);
    if ex.model_known || served {
        name
    } else {
        "other"
    }
}

pub(super) fn action_str(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Flag => "flag",
        Action::Block => "block",
        Action::Alert => "alert",
    }
}

/// True when the request was blocked (by the detector's verdict or as the outcome).
pub fn is_blocked(ex: &Exchange) -> bool {
    matches!(ex.outcome, crate::event::Outcome::Blocked)
        || ex.verdict.as_ref().is_some_and(|v| v.blocked)
}

/// The verdict's level when it found something (level above `none`).
pub fn threat_level(ex: &Exchange) -> Option<RiskLevel> {
    ex.verdict
        .as_ref()
        .map(|v| v.level)
        .filter(|l| *l > RiskLevel::None)
}

/// Index of a threat level in the `threats_*` columns (low, medium, high, critical).
pub(super) fn level_index(level: RiskLevel) -> Option<usize> {
    match level {
        RiskLevel::None => None,
        RiskLevel::Low => Some(0),
        RiskLevel::Medium => Some(1),
        RiskLevel::High => Some(2),
        RiskLevel::Critical => Some(3),
    }
}

pub(super) fn us(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

pub(super) fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

pub(super) fn categories(v: &Verdict) -> String {
    let names: Vec<&str> = v.categories.iter().map(|c| c.as_str()).collect();
    names.join(",")
}

/// The captured text to store for one side, capped and optionally redacted.
pub(super) fn captured(text: Option<&String>, on: bool, cfg: &CaptureConfig) -> Option<String> {
    let text = text.filter(|_| on)?;
    if !cfg.redact {
        return Some(cap(text, cfg.max_bytes).to_owned());
    }
    // Redact before the final cut, so a secret cut in half is still recognised; the first cut
    // bounds the regex work while leaving room for any secret that starts inside the cap.
    let window = cap(text, cfg.max_bytes.saturating_mul(2).saturating_add(256));
    Some(cap(&redact(window), cfg.max_bytes).to_owned())
}

/// Sums for one rollup key (bucket, model, outcome).
#[derive(Clone, Debug, Default)]
pub(super) struct Agg {
    pub requests: i64,
    pub errors: i64,
    pub blocked: i64,
    /// Requests with a threat, by level low, medium, high, critical.
    pub threats: [i64; 4],
    pub latency_sum_us: i64,
    pub latency_max_us: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost: f64,
    pub prompt_chars: i64,
    pub response_chars: i64,
    /// Requests whose cost is unknown (`Exchange::cost_unknown`), not in `cost`.
    pub unpriced: i64,
    pub hist: [i64; BUCKETS],
}

impl Agg {
    fn add(&mut self, ex: &Exchange) {
        let lat = us(ex.latency);
        self.requests += 1;
        self.errors += i64::from(ex.counts_as_error());
        self.blocked += i64::from(is_blocked(ex));
        if let Some(i) = threat_level(ex).and_then(level_index) {
            self.threats[i] += 1;
        }
        self.latency_sum_us += lat;
        self.latency_max_us = self.latency_max_us.max(lat);
        self.prompt_tokens += opt_i64(ex.usage.prompt_tokens).unwrap_or(0);
        self.completion_tokens += opt_i64(ex.usage.completion_tokens).unwrap_or(0);
        self.cost += ex.cost.unwrap_or(0.0);
        self.prompt_chars += opt_i64(ex.prompt_chars).unwrap_or(0);
        self.response_chars += opt_i64(ex.response_chars).unwrap_or(0);
        self.unpriced += i64::from(ex.cost_unknown());
        self.hist[bucket_of(lat.max(0) as u64)] += 1;
    }
}

/// Sums for one user-hour.
#[derive(Clone, Debug, Default)]
pub(super) struct UserAgg {
    pub requests: i64,
    pub errors: i64,
    pub blocked: i64,
    pub threats: i64,
    pub tokens: i64,
    pub cost: f64,
    pub latency_sum_us: i64,
}

/// All rollup deltas of one batch.
#[derive(Debug, Default)]
pub(super) struct Rollups {
    pub minute: HashMap<(i64, String, &'static str), Agg>,
    pub hour: HashMap<(i64, String, &'static str), Agg>,
    pub user_hour: HashMap<(i64, String), UserAgg>,
    pub user_day: HashMap<(i64, String), UserAgg>,
}

impl Rollups {
    pub fn add(&mut self, ex: &Exchange) {
        let ts = ex.started_unix_ms();
        let model = model_key(ex);
        let outcome = ex.outcome.as_str();
        for (map, width) in [(&mut self.minute, MINUTE_MS), (&mut self.hour, HOUR_MS)] {
            let key = (ts - ts.rem_euclid(width), model.to_owned(), outcome);
            map.entry(key).or_default().add(ex);
        }
        if let Some(user) = ex.user.as_deref() {
            for (map, width) in [(&mut self.user_hour, HOUR_MS), (&mut self.user_day, DAY_MS)] {
                let u = map
                    .entry((ts - ts.rem_euclid(width), user.to_owned()))
                    .or_default();
                u.requests += 1;
                u.errors += i64::from(ex.counts_as_error());
                u.blocked += i64::from(is_blocked(ex));
                u.threats += i64::from(threat_level(ex).is_some());
                u.tokens += opt_i64(ex.usage.total()).unwrap_or(0);
                u.cost += ex.cost.unwrap_or(0.0);
                u.latency_sum_us += us(ex.latency);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::model_key;
    use crate::event::{Blame, Exchange};

    #[test]
    fn only_vouched_for_model_names_become_keys() {
        let ex = |model: Option<&str>, status: u16, blame: Option<Blame>, known: bool| {
            let mut e = Exchange::new("r".into(), "POST", "/v1/chat/completions");
            e.model = model.map(str::to_owned);
            e.status = status;
            e.blame = blame;
            e.model_known = known;
            e
        };
        assert_eq!(
            model_key(&ex(None, 401, Some(Blame::Client), false)),
            "unknown"
        );
        assert_eq!(
            model_key(&ex(Some("openai/gpt-4o"), 200, None, false)),
            "openai/gpt-4o"
        );
        assert_eq!(
            model_key(&ex(
                Some("openai/gpt-4o"),
                503,
                Some(Blame::Upstream),
                false
            )),
            "openai/gpt-4o"
        );
        assert_eq!(
            model_key(&ex(Some("made-up-7"), 404, Some(Blame::Client), false)),
            "other"
        );
        assert_eq!(
            model_key(&ex(Some("made-up-8"), 403, Some(Blame::Client), false)),
            "other",
            "blocked, never served"
        );
        assert_eq!(
            model_key(&ex(Some("qwendeepseek"), 403, Some(Blame::Client), true)),
            "qwendeepseek"
        );
    }
}
