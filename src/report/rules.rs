//! The deterministic rule engine: recommendations from the same figures the LLM sees, used when
//! there is no model or its answers are unusable. Each rule is one small function that reads
//! the figures and returns zero or more recommendations with their evidence. Latency and
//! errors are judged both against the period before (a rise) and against the alert thresholds
//! (`limits`), so a model that has always been slow is named too.

use crate::config::RuleThresholds;

use super::figures::Figures;
use super::{Group, Priority, Recommendation};

mod budgets;
pub(super) use budgets::usd;
mod limits;

/// Requests a model or upstream needs before its rates are judged.
const MIN_REQUESTS: u64 = 20;
/// Share of all requests from one user that is reported as concentration.
const CONCENTRATION: f64 = 0.5;

/// All rule recommendations, highest priority first.
pub fn recommend(f: &Figures, r: &RuleThresholds) -> Vec<Recommendation> {
    let mut out = Vec::new();
    out.extend(upstream_errors(f, r));
    out.extend(limits::error_budget(f));
    let (over, named) = limits::p95_above_limit(f);
    out.extend(over);
    out.extend(p95_rising(f, r, &named));
    out.extend(limits::ttft_above_limit(f, r.ttft_p95_secs));
    out.extend(expensive_models(f, r));
    out.extend(unpriced_models(f));
    out.extend(budgets::recommend(f));
    out.extend(high_risk_users(f, r));
    out.extend(thresholds(f));
    out.extend(rising_threats(f));
    out.extend(concentration(f));
    out.sort_by_key(|x| (x.priority, x.group));
    out
}

fn rec(
    group: Group,
    priority: Priority,
    title: String,
    evidence: Vec<String>,
    action: String,
) -> Recommendation {
    Recommendation {
        group,
        priority,
        title,
        evidence,
        action,
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// An upstream whose error rate is above `rules.error_rate`.
fn upstream_errors(f: &Figures, r: &RuleThresholds) -> Vec<Recommendation> {
    f.upstreams
        .iter()
        .filter(|u| u.requests >= MIN_REQUESTS && u.error_rate > r.error_rate)
        .map(|u| {
            let others: Vec<&str> = f
                .upstreams
                .iter()
                .filter(|o| o.upstream != u.upstream && o.error_rate <= r.error_rate)
                .map(|o| o.upstream.as_str())
                .collect();
            let action = match others.first() {
                Some(o) => format!(
                    "add a fallback: `upstreams.{}.fallbacks: [{o}]`",
                    u.upstream
                ),
                None => format!(
                    "raise `upstreams.{}.retries` and add a second upstream under \
                     `upstreams.{}.fallbacks`",
                    u.upstream, u.upstream
                ),
            };
            let priority = if u.error_rate > 2.0 * r.error_rate {
                Priority::High
            } else {
                Priority::Medium
            };
            rec(
                Group::Performance,
                priority,
                format!("Upstream {} fails too often", u.upstream),
                vec![
                    format!(
                        "{} errors in {} requests ({}) on upstream {}",
                        u.errors,
                        u.requests,
                        pct(u.error_rate),
                        u.upstream
                    ),
                    format!("threshold {}", pct(r.error_rate)),
                ],
                action,
            )
        })
        .collect()
}

/// p95 latency up more than `rules.p95_rise` on the previous period, overall or per model;
/// models already `named` above the alert threshold are left out (that advice cites the rise).
fn p95_rising(f: &Figures, r: &RuleThresholds, named: &[&str]) -> Vec<Recommendation> {
    let rose =
        |now: f64, before: Option<f64>| before.filter(|b| *b > 0.0 && now > b * (1.0 + r.p95_rise));
    let mut out = Vec::new();
    let models = f.models.iter().filter(|m| m.requests >= MIN_REQUESTS);
    for m in models.filter(|m| !named.contains(&m.model.as_str())) {
        if let Some(b) = rose(m.p95_latency, m.previous_p95_latency) {
            out.push(rec(
                Group::Performance,
                Priority::Medium,
                format!("p95 latency of {} is rising", m.model),
                vec![format!(
                    "p95 {:.2} s against {b:.2} s in the previous {} period (+{})",
                    m.p95_latency,
                    f.period.as_str(),
                    pct(m.p95_latency / b - 1.0)
                )],
                format!(
                    "route part of {}'s traffic to a faster model with an alias under \
                     `models.aliases`, or lower `upstreams.<name>.timeouts.first_byte_secs` so \
                     slow attempts fail over sooner",
                    m.model
                ),
            ));
        }
    }
    let quiet = out.is_empty() && named.is_empty();
    if let Some(b) = rose(f.p95_latency, f.previous_p95_latency).filter(|_| quiet) {
        out.push(rec(
            Group::Performance,
            Priority::Medium,
            "p95 latency is rising".into(),
            vec![format!(
                "p95 {:.2} s against {b:.2} s in the previous period",
                f.p95_latency
            )],
            "check the per-model latency (`GET /api/usage/analytics`) and move the slowest \
             model's traffic to a faster alias"
                .into(),
        ));
    }
    out
}

/// A model whose cost per request is `rules.cost_ratio` times the median of the others.
fn expensive_models(f: &Figures, r: &RuleThresholds) -> Vec<Recommendation> {
    let priced: Vec<_> = f
        .models
        .iter()
        .filter(|m| m.requests >= MIN_REQUESTS / 2 && m.cost > 0.0)
        .collect();
    let mut out = Vec::new();
    for m in &priced {
        let mut others: Vec<f64> = priced
            .iter()
            .filter(|o| o.model != m.model)
            .map(|o| o.cost_per_request)
            .collect();
        let Some(median) = crate::analytics::anomaly::median(&mut others) else {
            continue;
        };
        if median <= 0.0 || m.cost_per_request < r.cost_ratio * median {
            continue;
        }
        let cheapest = priced
            .iter()
            .filter(|o| o.model != m.model)
            .min_by(|a, b| a.cost_per_request.total_cmp(&b.cost_per_request))
            .map_or("a cheaper model", |o| o.model.as_str());
        out.push(rec(
            Group::Cost,
            Priority::Medium,
            format!("{} costs far more per request than its peers", m.model),
            vec![
                format!(
                    "${:.4} per request over {} requests (${:.2} in total)",
                    m.cost_per_request, m.requests, m.cost
                ),
                format!(
                    "median of the other models ${median:.4} per request ({:.1}×)",
                    m.cost_per_request / median
                ),
            ],
            format!(
                "point an alias at {cheapest} for the callers that do not need {}: \
                 `models.aliases.<name>: {{model: {cheapest}}}`",
                m.model
            ),
        ));
    }
    out
}

/// Models with requests whose cost is unknown: the period's cost is short by their share.
fn unpriced_models(f: &Figures) -> Vec<Recommendation> {
    f.models
        .iter()
        .filter(|m| m.unpriced_requests > 0)
        .map(|m| {
            rec(
                Group::Cost,
                Priority::Medium,
                format!("Cost of {} is unknown", m.model),
                vec![format!(
                    "cost unknown for {} of {} requests of {}: not in the price table and no \
                     cost reported by the upstream; the period's cost (${:.2}) leaves them out",
                    m.unpriced_requests, m.requests, m.model, f.total_cost
                )],
                format!(
                    "add `{}: {{input: <USD per million tokens>, output: <USD per million \
                     tokens>}}` to the price table (`prices`, default `policies/prices.yaml`); \
                     it is reloaded without a restart",
                    m.model
                ),
            )
        })
        .collect()
}

/// A user with `rules.high_risk_requests` or more high or critical requests.
fn high_risk_users(f: &Figures, r: &RuleThresholds) -> Vec<Recommendation> {
    f.security
        .high_risk_users
        .iter()
        .filter(|h| h.requests >= r.high_risk_requests)
        .map(|h| {
            rec(
                Group::Security,
                Priority::High,
                format!("User {} keeps sending high-risk requests", h.user),
                vec![format!(
                    "{} high or critical requests from {} in the period (rule: {})",
                    h.requests, h.user, r.high_risk_requests
                )],
                format!(
                    "review `GET /api/security/events?user_id={}`; revoke or rotate the key \
                     of {} in `auth.keys`, or lower `detect.behaviour.high_risk_limit`",
                    h.user, h.user
                ),
            )
        })
        .collect()
}

/// The threshold proposal read off the score distribution, if any.
fn thresholds(f: &Figures) -> Vec<Recommendation> {
    let Some(p) = &f.threshold_proposal else {
        return Vec::new();
    };
    let c = &p.proposed;
    vec![rec(
        Group::Security,
        Priority::Medium,
        "Risk thresholds do not fit the score distribution".into(),
        vec![p.reason.clone(), p.effect.summary.clone()],
        format!(
            "POST /api/config/thresholds {{\"low\": {}, \"medium\": {}, \"high\": {}, \
             \"critical\": {}, \"dry_run\": true}}, then again without dry_run (or set \
             `detect.thresholds` in gateway.yaml):\n{}",
            c.low, c.medium, c.high, c.critical, p.config_diff
        ),
    )]
}

/// Threat categories or users whose last day rose significantly.
fn rising_threats(f: &Figures) -> Vec<Recommendation> {
    let t = &f.threat_trends;
    let cats = t.by_category.iter().map(|x| ("category", x));
    let users = t.by_user.iter().map(|x| ("user", x));
    cats.chain(users)
        .filter(|(_, x)| x.rising)
        .map(|(kind, x)| {
            let last = x.daily.last().copied().unwrap_or(0);
            rec(
                Group::Security,
                Priority::High,
                format!("Threats rising: {kind} {}", x.key),
                vec![format!(
                    "{last} threatening requests on the last day against {:.1} a day before; \
                     forecast {:.1} tomorrow",
                    x.baseline, x.forecast_next_day
                )],
                match kind {
                    "user" => format!(
                        "review `GET /api/security/events?user_id={}` and consider blocking the key",
                        x.key
                    ),
                    _ => format!(
                        "review `GET /api/security/events?category={}`; set \
                         `detect.actions.high: block` if these are attacks",
                        x.key
                    ),
                },
            )
        })
        .collect()
}

/// One user making most of the traffic.
fn concentration(f: &Figures) -> Vec<Recommendation> {
    f.users
        .iter()
        .filter(|u| f.requests >= MIN_REQUESTS && u.share > CONCENTRATION)
        .map(|u| {
            rec(
                Group::Usage,
                Priority::Low,
                format!("User {} makes most of the traffic", u.user),
                vec![format!(
                    "{} of {} requests ({}) and ${:.2} of ${:.2} cost",
                    u.requests,
                    f.requests,
                    pct(u.share),
                    u.cost,
                    f.total_cost
                )],
                format!(
                    "give {} a key of its own with a team in `auth.keys` so its spend is tracked \
                     and can be limited separately",
                    u.user
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
