//! The figures of one period: what the rule engine reads and what the LLM is shown. Numbers,
//! model names, user ids and threat categories only — never prompt or response text, snippets,
//! keys or config secrets (the prompt test checks this end to end).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analytics::{self, Anomaly};
use crate::config::{AlertsConfig, Config, RuleKind, ThresholdsConfig};
use crate::quota::{period_bounds, BudgetUse, ScopeKind};
use crate::store::hist::Histogram;
use crate::store::{DailyThreats, Offender, Scored, Store};

use super::period::{self, Bounds, Zone};
use super::replay::{self, Proposal};
use super::threats::{self, ThreatTrends};
use super::{Error, Period};

const DAY_MS: i64 = 86_400_000;
/// Models and users listed (most requests first); anomalies (largest |z| first).
const TOP: usize = 10;
/// End users' budgets are listed from this share used (keys, teams, models and the gateway's
/// always), at most [`TOP_BUDGETS`] in all.
const USER_BUDGET_SHOWN: f64 = 0.5;
const TOP_BUDGETS: usize = 20;
/// Days of history for threat trends when the period is shorter.
const MIN_TREND_DAYS: i64 = 7;

/// Everything a report rests on.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Figures {
    pub period: Period,
    /// The period in RFC 3339 with local offsets, and its time zone.
    pub from: String,
    pub to: String,
    pub zone: String,
    pub requests: u64,
    pub error_rate: f64,
    /// Latency percentiles of the period and p95 of the period before, in seconds.
    pub p50_latency: f64,
    pub p95_latency: f64,
    pub p99_latency: f64,
    pub previous_p95_latency: Option<f64>,
    pub total_cost: f64,
    /// Requests whose cost is unknown (a model missing from the price table and no cost
    /// reported by the upstream): `total_cost` leaves them out.
    pub unpriced_requests: u64,
    pub total_tokens: u64,
    pub unique_users: u64,
    pub models: Vec<ModelFigures>,
    pub users: Vec<UserFigures>,
    pub upstreams: Vec<UpstreamFigures>,
    pub security: SecurityFigures,
    pub anomalies: Vec<Anomaly>,
    pub forecast: Option<ForecastFigures>,
    pub thresholds: ThresholdsConfig,
    /// The alert thresholds latency and errors are judged against, whatever the period before.
    pub limits: Limits,
    pub threat_trends: ThreatTrends,
    /// A threshold change read off the stored scores, with its replayed effect; only when the
    /// replay shows the effect the change is for.
    pub threshold_proposal: Option<Proposal>,
    /// Whether a threshold change is proposed, and why (or why not).
    pub threshold_note: String,
    /// Spend budgets as they stand when the report is made (live counters, not the period's),
    /// most used first: every key, team, model and gateway budget, and end users from half used.
    pub budgets: Vec<BudgetFigures>,
    /// Whether any spend budget is set: in the config (keys, end users, teams, models, the
    /// gateway) or on a key made through `/api/keys`.
    pub any_budget: bool,
}

/// One spend budget when the report is made.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BudgetFigures {
    /// `key` (named by its user), `user`, `team`, `model` or `global`.
    pub scope: ScopeKind,
    pub name: String,
    pub spent_usd: f64,
    pub budget_usd: f64,
    /// `day`, `week` or `month`, in the report time zone.
    pub per: String,
    pub used_ratio: f64,
    /// Spend at the period's end at the rate so far; only once a tenth of the period has passed
    /// (an hour of a week says little).
    pub projected_usd: Option<f64>,
    pub period_end: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ModelFigures {
    pub model: String,
    pub requests: u64,
    pub error_rate: f64,
    pub p95_latency: f64,
    pub previous_p95_latency: Option<f64>,
    /// p95 time to first token of the streamed requests, seconds (none streamed: `None`).
    pub p95_ttft: Option<f64>,
    /// Streamed requests with a first token, which `p95_ttft` is taken over.
    pub streamed_requests: u64,
    pub cost: f64,
    /// Mean cost of the requests not counted in `unpriced_requests`.
    pub cost_per_request: f64,
    /// Requests of this model whose cost is unknown, left out of `cost`.
    pub unpriced_requests: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct UserFigures {
    pub user: String,
    pub requests: u64,
    pub share: f64,
    pub cost: f64,
    pub threats: u64,
    pub blocked: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct UpstreamFigures {
    pub upstream: String,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SecurityFigures {
    pub threats: u64,
    pub blocked: u64,
    pub by_level: BTreeMap<&'static str, u64>,
    pub by_category: BTreeMap<String, u64>,
    /// Users with the most threatening requests (medium risk or above; a match at none or low
    /// is one weak signal, not a threat).
    pub top_offenders: Vec<Offender>,
    /// Users with high or critical requests (by stored score and the current thresholds).
    pub high_risk_users: Vec<HighRisk>,
    /// Requests with a stored score (zero included) and with a score above zero.
    pub scanned: u64,
    pub scored: u64,
}

/// The operator's own limits, read off the alert rules: the strictest threshold among the
/// rules of each kind (a rule without one uses `alerts.thresholds`). They apply even with
/// `alerts.enabled: false`, as the limits the operator wrote down.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Limits {
    /// p95 latency, seconds (`latency_p95` rules; `alerts.thresholds.latency_secs`).
    pub p95_latency_secs: f64,
    /// Error rate, 0..1 (`error_rate` rules; `alerts.thresholds.error_rate`).
    pub error_rate: f64,
}

impl Limits {
    /// The limits `alerts` states.
    pub fn of(a: &AlertsConfig) -> Limits {
        let strictest = |kind: RuleKind, default: f64| {
            a.rules
                .iter()
                .filter(|r| r.kind == kind)
                .map(|r| r.threshold.unwrap_or(default))
                .reduce(f64::min)
                .unwrap_or(default)
        };
        let t = &a.thresholds;
        Limits {
            p95_latency_secs: strictest(RuleKind::LatencyP95, t.latency_secs),
            error_rate: strictest(RuleKind::ErrorRate, t.error_rate),
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct HighRisk {
    pub user: String,
    pub requests: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ForecastFigures {
    pub next_24h_requests: f64,
    pub peak_hour: String,
    pub peak_requests: f64,
    /// Mean absolute percentage error of the same method on the last day (0..1+).
    pub backtest_mape: Option<f64>,
}

/// Gathers the figures of the period `b` as of `now_ms` (a period still running counts up to
/// now); "previous" figures come from the period of the same kind just before it. `budgets`
/// are the live spend budgets (the proxy's counters, read by the caller).
///
/// # Errors
/// A store read fails.
pub async fn gather(
    store: &Store,
    config: &Config,
    b: &Bounds,
    zone: &Zone,
    now_ms: i64,
    budgets: Vec<BudgetUse>,
) -> Result<Figures, Error> {
    let (from, to) = (b.from_ms, b.to_ms);
    let prev = b.before(zone)?;
    let usage = analytics::usage_between(store, from, to, now_ms).await?;
    let before = analytics::usage_between(store, prev.from_ms, prev.to_ms, now_ms).await?;
    let security = analytics::security_summary(store, from, to).await?;
    let offenders = store
        .threat_offenders(from, to, analytics::security::TOP_OFFENDERS)
        .await?;
    let upstreams = store.upstream_counts(from, to).await?;
    let ttft: BTreeMap<String, Histogram> = store
        .ttft_by_model(from, to)
        .await?
        .into_iter()
        .map(|m| (m.model, m.hist))
        .collect();
    let (scored, scanned) = store.scored_requests(from, to).await?;
    let forecast = analytics::forecast::forecast_at(store, to.min(now_ms), 14)
        .await
        .ok();
    // Whole local days: a 23- or 25-hour day is one day.
    let days = (to - from + DAY_MS / 2).div_euclid(DAY_MS);
    let trend_days = days.max(MIN_TREND_DAYS) as usize;
    let trends = threat_trends(store, b, zone, trend_days).await?;
    let d = &config.detect;
    let review = replay::review(
        &scored,
        scanned,
        &d.thresholds,
        &d.actions,
        &config.report.rules,
    );
    let g = &usage.general_metrics;
    let prev: BTreeMap<&str, f64> = before
        .by_model
        .iter()
        .map(|m| (m.model.as_str(), m.p95_latency))
        .collect();
    Ok(Figures {
        period: b.period,
        from: b.from.clone(),
        to: b.to.clone(),
        zone: b.zone.clone(),
        requests: g.total_requests,
        error_rate: g.error_rate,
        p50_latency: g.p50_latency,
        p95_latency: g.p95_latency,
        p99_latency: g.p99_latency,
        previous_p95_latency: (before.general_metrics.total_requests > 0)
            .then_some(before.general_metrics.p95_latency),
        total_cost: g.total_cost,
        unpriced_requests: g.unpriced_requests,
        total_tokens: g.total_tokens,
        unique_users: g.unique_users,
        models: usage
            .by_model
            .iter()
            .take(TOP)
            .map(|m| ModelFigures {
                model: m.model.clone(),
                requests: m.requests,
                error_rate: m.error_rate,
                p95_latency: m.p95_latency,
                previous_p95_latency: prev.get(m.model.as_str()).copied(),
                p95_ttft: ttft
                    .get(&m.model)
                    .filter(|h| h.count() > 0)
                    .map(|h| h.quantile(0.95)),
                streamed_requests: ttft.get(&m.model).map_or(0, Histogram::count),
                cost: m.cost,
                cost_per_request: analytics_ratio(
                    m.cost,
                    m.requests.saturating_sub(m.unpriced_requests),
                ),
                unpriced_requests: m.unpriced_requests,
            })
            .collect(),
        users: usage
            .by_user
            .iter()
            .take(TOP)
            .map(|u| UserFigures {
                user: u.user.clone(),
                requests: u.requests,
                share: analytics_ratio(u.requests as f64, g.total_requests),
                cost: u.cost,
                threats: u.threats,
                blocked: u.blocked,
            })
            .collect(),
        upstreams: upstreams
            .into_iter()
            .map(|u| UpstreamFigures {
                error_rate: analytics_ratio(u.errors as f64, u.requests),
                upstream: u.upstream,
                requests: u.requests,
                errors: u.errors,
            })
            .collect(),
        security: SecurityFigures {
            threats: security.threats,
            blocked: security.blocked,
            by_level: security.by_level,
            by_category: security.by_category,
            top_offenders: offenders,
            high_risk_users: high_risk(&scored, &d.thresholds),
            scanned,
            scored: scored.len() as u64,
        },
        anomalies: top_anomalies(usage.anomalies),
        forecast: forecast.map(|f| forecast_figures(&f)),
        thresholds: d.thresholds,
        limits: Limits::of(&config.alerts),
        threat_trends: trends,
        threshold_proposal: review.proposal,
        threshold_note: review.note,
        // Every key, team, model and gateway budget is in the live list; end users' only once
        // one is tracked.
        any_budget: !budgets.is_empty() || config.quotas.users.default.budget_usd.is_some(),
        budgets: budget_figures(budgets, now_ms, zone),
    })
}

/// Threat trends over the `days` local days ending with the period's last day: one store read
/// per local day, because the store counts per UTC day and a local day can straddle two (and
/// last 23 or 25 hours).
async fn threat_trends(
    store: &Store,
    b: &Bounds,
    zone: &Zone,
    days: usize,
) -> Result<ThreatTrends, Error> {
    let starts = period::day_starts(b.last_day, days, zone)?;
    let (mut categories, mut users) = (Vec::new(), Vec::new());
    for (i, w) in starts.windows(2).enumerate() {
        for (by_user, out) in [(false, &mut categories), (true, &mut users)] {
            let rows = store.daily_threats(w[0], w[1], by_user).await?;
            // Local day i of the window is filed as day i after the epoch.
            out.extend(rows.into_iter().map(|r| DailyThreats {
                day_ms: i as i64 * DAY_MS,
                ..r
            }));
        }
    }
    Ok(threats::trends(&categories, &users, 0, days))
}

fn analytics_ratio(part: f64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part / whole as f64
    }
}

/// Users by requests at high or above, most first.
fn high_risk(scored: &[Scored], t: &ThresholdsConfig) -> Vec<HighRisk> {
    let mut per: BTreeMap<&str, u64> = BTreeMap::new();
    for s in scored.iter().filter(|s| replay::level(t, s.score) >= 3) {
        if let Some(u) = s.user.as_deref() {
            *per.entry(u).or_default() += 1;
        }
    }
    let mut v: Vec<HighRisk> = per
        .into_iter()
        .map(|(user, requests)| HighRisk {
            user: user.to_owned(),
            requests,
        })
        .collect();
    v.sort_by_key(|h| std::cmp::Reverse(h.requests));
    v.truncate(TOP);
    v
}

fn top_anomalies(mut a: Vec<Anomaly>) -> Vec<Anomaly> {
    a.sort_by(|x, y| y.score.abs().total_cmp(&x.score.abs()));
    a.truncate(TOP);
    a
}

fn forecast_figures(f: &analytics::Forecast) -> ForecastFigures {
    let peak = f
        .points
        .iter()
        .max_by(|a, b| a.requests.total_cmp(&b.requests));
    ForecastFigures {
        next_24h_requests: f.points.iter().map(|p| p.requests.max(0.0)).sum(),
        peak_hour: peak.map(|p| p.timestamp.clone()).unwrap_or_default(),
        peak_requests: peak.map_or(0.0, |p| p.requests),
        backtest_mape: f.backtest.mape,
    }
}

/// The budgets worth a report's attention, most used first, with their projected spend.
fn budget_figures(live: Vec<BudgetUse>, now_ms: i64, zone: &Zone) -> Vec<BudgetFigures> {
    let mut v: Vec<BudgetFigures> = live
        .into_iter()
        .filter(|b| b.scope != ScopeKind::User || b.used_ratio() >= USER_BUDGET_SHOWN)
        .map(|b| {
            let projected_usd = period_bounds(b.period, now_ms, zone.tz())
                .filter(|(start, end)| (now_ms - start) * 10 >= end - start && end > start)
                .map(|(start, end)| b.spent_usd() * (end - start) as f64 / (now_ms - start) as f64);
            BudgetFigures {
                scope: b.scope,
                spent_usd: b.spent_usd(),
                budget_usd: b.budget_usd(),
                per: b.period.as_str().to_owned(),
                used_ratio: b.used_ratio(),
                projected_usd,
                period_end: crate::store::rfc3339(b.period_end_ms),
                name: b.name,
            }
        })
        .collect();
    v.sort_by(|a, b| {
        b.used_ratio
            .total_cmp(&a.used_ratio)
            .then_with(|| a.name.cmp(&b.name))
    });
    v.truncate(TOP_BUDGETS);
    v
}
