//! Absolute rules: latency and errors against the operator's own alert thresholds
//! (`Figures::limits`), and time to first token against `report.rules.ttft_p95_secs`,
//! whatever the period before looked like. The relative rule (`p95_rising`) only sees change,
//! so a model that was slow last week and is as slow this week would never be named; these
//! rules name it.
//!
//! Trade-off: the alert rules judge a few minutes at a time and these judge a whole period, so
//! a period's p95 can sit above the threshold while no alert fired (short bursts averaged
//! out), or below it while one did.

use super::super::figures::Figures;
use super::super::{Group, Priority, Recommendation};
use super::{pct, rec, MIN_REQUESTS};

/// How far over a limit a figure must be for high priority.
const FAR_OVER: f64 = 2.0;

fn priority(figure: f64, limit: f64) -> Priority {
    if figure > FAR_OVER * limit {
        Priority::High
    } else {
        Priority::Medium
    }
}

/// Models (and, when no model is named, the whole period) with a p95 latency above the
/// `latency_p95` alert threshold. Returns the models named.
pub(super) fn p95_above_limit(f: &Figures) -> (Vec<Recommendation>, Vec<&str>) {
    let limit = f.limits.p95_latency_secs;
    let mut out = Vec::new();
    let mut named = Vec::new();
    for m in f.models.iter().filter(|m| m.requests >= MIN_REQUESTS) {
        if m.p95_latency <= limit {
            continue;
        }
        let mut evidence = vec![format!(
            "p95 {:.2} s over {} requests of {}, above the {limit:.2} s alert threshold \
             (`alerts.thresholds.latency_secs`)",
            m.p95_latency, m.requests, m.model
        )];
        if let Some(b) = m.previous_p95_latency {
            evidence.push(format!(
                "p95 {b:.2} s in the previous {} period",
                f.period.as_str()
            ));
        }
        out.push(rec(
            Group::Performance,
            priority(m.p95_latency, limit),
            format!("p95 latency of {} is above the alert threshold", m.model),
            evidence,
            format!(
                "route latency-sensitive callers of {} to a faster model with an alias under \
                 `models.aliases`, or lower `upstreams.<name>.timeouts.first_byte_secs` and add \
                 `upstreams.<name>.fallbacks` so slow attempts fail over sooner",
                m.model
            ),
        ));
        named.push(m.model.as_str());
    }
    if out.is_empty() && f.requests >= MIN_REQUESTS && f.p95_latency > limit {
        out.push(rec(
            Group::Performance,
            priority(f.p95_latency, limit),
            "p95 latency is above the alert threshold".into(),
            vec![format!(
                "p95 {:.2} s over {} requests, above the {limit:.2} s alert threshold \
                 (`alerts.thresholds.latency_secs`)",
                f.p95_latency, f.requests
            )],
            "find the slowest model in `GET /api/usage/analytics` (by_model p95) and move its \
             latency-sensitive callers to a faster alias under `models.aliases`"
                .into(),
        ));
    }
    (out, named)
}

/// Models (and, when no model is named, the whole period) whose error rate is above the
/// `error_rate` alert threshold: the error budget burns faster than the operator allows.
pub(super) fn error_budget(f: &Figures) -> Vec<Recommendation> {
    let limit = f.limits.error_rate;
    let burn = |rate: f64| {
        format!(
            "{} errors against the {} alert threshold (`alerts.thresholds.error_rate`): the \
             error budget burns {:.1}× as fast as allowed",
            pct(rate),
            pct(limit),
            rate / limit
        )
    };
    let mut out: Vec<Recommendation> = f
        .models
        .iter()
        .filter(|m| m.requests >= MIN_REQUESTS && limit > 0.0 && m.error_rate > limit)
        .map(|m| {
            rec(
                Group::Performance,
                priority(m.error_rate, limit),
                format!("Error budget of {} is burning", m.model),
                vec![format!(
                    "{} requests of {}: {}",
                    m.requests,
                    m.model,
                    burn(m.error_rate)
                )],
                format!(
                    "see the failures in `GET /api/requests?model={}&outcome=upstream_error`; \
                     give the upstream serving {} a healthy one under \
                     `upstreams.<name>.fallbacks`, or raise `upstreams.<name>.retries`",
                    m.model, m.model
                ),
            )
        })
        .collect();
    if out.is_empty() && f.requests >= MIN_REQUESTS && limit > 0.0 && f.error_rate > limit {
        out.push(rec(
            Group::Performance,
            priority(f.error_rate, limit),
            "Error budget is burning".into(),
            vec![format!("{} requests: {}", f.requests, burn(f.error_rate))],
            "find the failing upstream in `GET /api/usage/analytics` and give it a fallback \
             under `upstreams.<name>.fallbacks`"
                .into(),
        ));
    }
    out
}

/// Models whose streamed requests wait longer than `report.rules.ttft_p95_secs` for their
/// first token at p95: the wait a streaming user sees before anything appears.
pub(super) fn ttft_above_limit(f: &Figures, limit: f64) -> Vec<Recommendation> {
    f.models
        .iter()
        .filter(|m| m.streamed_requests >= MIN_REQUESTS)
        .filter_map(|m| m.p95_ttft.filter(|t| *t > limit).map(|t| (m, t)))
        .map(|(m, ttft)| {
            rec(
                Group::Performance,
                priority(ttft, limit),
                format!("Time to first token of {} is above the limit", m.model),
                vec![format!(
                    "p95 time to first token {ttft:.2} s over {} streamed requests of {}, above \
                     the {limit:.2} s limit (`report.rules.ttft_p95_secs`)",
                    m.streamed_requests, m.model
                )],
                format!(
                    "streaming callers of {} wait before anything appears: move them to a faster \
                     model with an alias under `models.aliases`, or lower \
                     `upstreams.<name>.timeouts.first_byte_secs` and add \
                     `upstreams.<name>.fallbacks` so a slow start fails over",
                    m.model
                ),
            )
        })
        .collect()
}
