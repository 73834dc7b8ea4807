//! Rules: pure evaluation of the configured rules over a snapshot of figures, with `now`
//! passed in (tokio's `Instant`, so tests drive it with paused time).
//!
//! A rule yields zero or more *conditions*, one per subject (an upstream, a user, a metric, or
//! `-` for rules about the whole gateway). The engine turns conditions into alerts. The
//! record-derived figures (critical threats, escalations, upstream failures) live in `Recent`,
//! bounded: at most `MAX_EVENTS` threat and escalation events and one slot per second per
//! upstream, for at most the longest rule window.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::analytics::{Anomaly, WindowStats};
use crate::config::{AlertLevel, AlertsConfig, RuleKind};
use crate::detect::RiskLevel;
use crate::event::{Exchange, Outcome};
use crate::quota::BudgetUse;
use crate::store::WriterHealth;

/// Threat and escalation events kept at most (older ones are forgotten first).
const MAX_EVENTS: usize = 10_000;
/// Requests an upstream must have had in the window before its failure ratio is judged (one
/// failed request out of one is not "failing").
pub const MIN_UPSTREAM_REQUESTS: u64 = 3;
/// The share of a budget that warns, unless the rule sets its own.
pub const BUDGET_WARNING: f64 = 0.8;

/// A built rule.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Rule {
    pub name: String,
    pub kind: RuleKind,
    pub level: AlertLevel,
    #[serde(rename = "window_secs", serialize_with = "secs")]
    pub window: Duration,
    #[serde(rename = "cooldown_secs", serialize_with = "secs")]
    pub cooldown: Duration,
    /// The threshold in force (the rule's own, else the default of its kind).
    pub threshold: f64,
    /// Channel kinds; empty means every enabled channel.
    pub channels: Vec<String>,
    pub send_resolved: bool,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

impl Rule {
    /// The rules of a validated config.
    pub fn build(cfg: &AlertsConfig) -> Vec<Rule> {
        let t = &cfg.thresholds;
        cfg.rules
            .iter()
            .map(|r| Rule {
                name: r.name.clone(),
                kind: r.kind,
                level: r.level,
                window: Duration::from_secs(r.window_secs),
                cooldown: Duration::from_secs(r.cooldown_secs),
                threshold: r.threshold.unwrap_or(match r.kind {
                    RuleKind::Threats => t.security,
                    RuleKind::LatencyP95 => t.latency_secs,
                    RuleKind::ErrorRate => t.error_rate,
                    RuleKind::UpstreamFailing => t.upstream_failure_ratio,
                    RuleKind::Budget => BUDGET_WARNING,
                    RuleKind::CriticalThreat
                    | RuleKind::Anomaly
                    | RuleKind::UserEscalated
                    | RuleKind::StoreFailing => 1.0,
                }),
                channels: r.channels.clone(),
                send_resolved: r.send_resolved,
            })
            .collect()
    }

    /// True for rules evaluated the moment a record arrives (not only at the tick).
    pub fn immediate(&self) -> bool {
        matches!(
            self.kind,
            RuleKind::CriticalThreat | RuleKind::UserEscalated
        )
    }
}

/// One named value a rule saw, with how notices show it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Figure {
    /// Machine name, e.g. `p95_latency_seconds`.
    pub name: String,
    /// Human label, e.g. `p95 latency`.
    pub label: String,
    pub value: f64,
    /// How notices show it, e.g. `7.20 s (threshold 5.00 s)`.
    pub shown: String,
}

pub(super) fn figure(name: &str, label: &str, value: f64, shown: String) -> Figure {
    Figure {
        name: name.into(),
        label: label.into(),
        value,
        shown,
    }
}

/// Figures as a JSON object `name → value`.
pub fn figures_json(figures: &[Figure]) -> serde_json::Value {
    figures
        .iter()
        .map(|f| (f.name.clone(), serde_json::json!(f.value)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// A rule's condition holding for one subject.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub subject: String,
    pub summary: String,
    pub figures: Vec<Figure>,
    /// The level of this condition's notices when it differs from the rule's (a budget spent
    /// in full is critical).
    pub level: Option<AlertLevel>,
}

/// What the rules read: live windows (one per distinct rule window), recent record events,
/// the latest anomalies, the store writer's health and the spend budgets now.
#[derive(Debug, Default)]
pub struct Snapshot<'a> {
    pub windows: HashMap<Duration, WindowStats>,
    pub recent: Option<&'a Recent>,
    pub anomalies: &'a [Anomaly],
    pub store: Option<WriterHealth>,
    pub budgets: &'a [BudgetUse],
}

/// `5m`, `90s`, `2h`.
pub fn span(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The conditions of `rule` that hold at `now`.
pub fn evaluate(rule: &Rule, snap: &Snapshot<'_>, now: Instant) -> Vec<Condition> {
    let w = snap.windows.get(&rule.window);
    let over = span(rule.window);
    let t = rule.threshold;
    let since = now.checked_sub(rule.window).unwrap_or(now);
    match rule.kind {
        RuleKind::Threats => w.map_or_else(Vec::new, |w| threats(w, t, &over)),
        RuleKind::LatencyP95 => w
            .filter(|w| w.requests > 0 && w.p95_latency > t)
            .map(|w| {
                let f = figure(
                    "p95_latency_seconds",
                    "p95 latency",
                    w.p95_latency,
                    format!("{:.2} s (threshold {t:.2} s)", w.p95_latency),
                );
                whole(
                    format!("p95 latency {:.2} s > {t:.2} s over {over}", w.p95_latency),
                    vec![f, requests(w)],
                )
            })
            .into_iter()
            .collect(),
        RuleKind::ErrorRate => w
            .filter(|w| w.requests > 0 && w.error_rate > t)
            .map(|w| {
                let f = figure(
                    "error_rate",
                    "Error rate",
                    w.error_rate,
                    format!("{:.1}% (threshold {:.1}%)", w.error_rate * 100.0, t * 100.0),
                );
                let summary = format!(
                    "error rate {:.1}% > {:.1}% over {over} ({} of {} requests)",
                    w.error_rate * 100.0,
                    t * 100.0,
                    w.errors,
                    w.requests
                );
                whole(summary, vec![f, requests(w)])
            })
            .into_iter()
            .collect(),
        RuleKind::CriticalThreat => snap
            .recent
            .map_or_else(Vec::new, |r| r.critical_since(since, &over)),
        RuleKind::UserEscalated => snap
            .recent
            .map_or_else(Vec::new, |r| r.escalated_since(since, &over)),
        RuleKind::UpstreamFailing => snap
            .recent
            .map_or_else(Vec::new, |r| r.failing_upstreams(since, t, &over)),
        RuleKind::Anomaly => anomalies(snap.anomalies),
        RuleKind::StoreFailing => snap.store.as_ref().map_or_else(Vec::new, store_failing),
        RuleKind::Budget => super::budget::conditions(snap.budgets, t),
    }
}

/// The store failing now: since when, why, and what its records became.
fn store_failing(h: &WriterHealth) -> Vec<Condition> {
    let Some(f) = &h.failing else {
        return Vec::new();
    };
    let since = super::rfc3339(f.since);
    let figures = vec![
        figure(
            "buffered",
            "Records waiting",
            h.buffered as f64,
            h.buffered.to_string(),
        ),
        figure(
            "dropped",
            "Records dropped",
            h.dropped as f64,
            h.dropped.to_string(),
        ),
        figure(
            "failed",
            "Records not written at first",
            h.failed as f64,
            h.failed.to_string(),
        ),
    ];
    vec![whole(
        format!(
            "store writes failing since {since}: {}; {} records waiting to be written, {} dropped",
            f.error, h.buffered, h.dropped
        ),
        figures,
    )]
}

fn whole(summary: String, figures: Vec<Figure>) -> Condition {
    Condition {
        subject: "-".into(),
        summary,
        figures,
        level: None,
    }
}

fn requests(w: &WindowStats) -> Figure {
    figure(
        "requests",
        "Requests",
        w.requests as f64,
        w.requests.to_string(),
    )
}

/// What a whole-window rule measures now, for a resolved notice: its summary (the current value
/// against the threshold) and figures. `None` for rules about subjects (an upstream, a user, an
/// anomaly, the store), where the notice says the condition no longer holds.
pub fn current(rule: &Rule, snap: &Snapshot<'_>) -> Option<(String, Vec<Figure>)> {
    let w = snap.windows.get(&rule.window)?;
    let (t, over) = (rule.threshold, span(rule.window));
    let (name, label, value, shown) = match rule.kind {
        RuleKind::LatencyP95 => (
            "p95_latency_seconds",
            "p95 latency",
            w.p95_latency,
            format!("p95 latency {:.2} s ≤ {t:.2} s over {over}", w.p95_latency),
        ),
        RuleKind::ErrorRate => (
            "error_rate",
            "Error rate",
            w.error_rate,
            format!(
                "error rate {:.1}% ≤ {:.1}% over {over}",
                w.error_rate * 100.0,
                t * 100.0
            ),
        ),
        RuleKind::Threats => {
            let n: u64 = ["medium", "high", "critical"]
                .iter()
                .filter_map(|l| w.threats_by_level.get(l))
                .sum();
            (
                "threats",
                "Threats",
                n as f64,
                format!("{n} threats over {over} < {t}"),
            )
        }
        _ => return None,
    };
    let f = figure(name, label, value, shown.clone());
    Some((format!("now {shown}"), vec![f, requests(w)]))
}

/// Threats: requests scanned at medium risk or above (flagged or blocked by default).
fn threats(w: &WindowStats, t: f64, over: &str) -> Vec<Condition> {
    let n: u64 = ["medium", "high", "critical"]
        .iter()
        .filter_map(|l| w.threats_by_level.get(l))
        .sum();
    if (n as f64) < t {
        return Vec::new();
    }
    let top = w
        .threats_by_category
        .iter()
        .max_by_key(|(_, n)| **n)
        .map_or("-", |(c, _)| *c);
    let figures = vec![
        figure(
            "threats",
            "Threats",
            n as f64,
            format!("{n} (threshold {t})"),
        ),
        figure(
            "blocked",
            "Blocked",
            w.blocked as f64,
            w.blocked.to_string(),
        ),
        requests(w),
    ];
    vec![whole(
        format!("{n} threats over {over} (threshold {t}); most: {top}"),
        figures,
    )]
}

fn anomalies(list: &[Anomaly]) -> Vec<Condition> {
    list.iter()
        .map(|a| Condition {
            subject: a.metric.clone(),
            summary: format!(
                "{} {:.2} against a baseline of {:.2} in the hour from {} (z = {:.1}, {})",
                a.metric, a.value, a.baseline, a.at, a.score, a.severity
            ),
            figures: vec![
                figure("value", &a.metric, a.value, format!("{:.2}", a.value)),
                figure(
                    "baseline",
                    "Baseline",
                    a.baseline,
                    format!("{:.2}", a.baseline),
                ),
                figure("z_score", "z-score", a.score, format!("{:.1}", a.score)),
            ],
            level: None,
        })
        .collect()
}

#[derive(Clone, Debug)]
struct UpstreamSlot {
    at: Instant,
    total: u64,
    failed: u64,
    unreachable: u64,
}

/// Recent record events the windowed figures do not keep.
#[derive(Debug, Default)]
pub struct Recent {
    /// `(when, user, categories)` of critical threats.
    critical: VecDeque<(Instant, Option<String>, String)>,
    /// `(when, user)` of escalated requests.
    escalated: VecDeque<(Instant, String)>,
    upstreams: BTreeMap<String, VecDeque<UpstreamSlot>>,
    /// Events older than this are forgotten (the longest window of a record rule).
    keep: Duration,
}

impl Recent {
    pub fn new(keep: Duration) -> Recent {
        Recent {
            keep,
            ..Recent::default()
        }
    }

    /// Notes one record at `now`. True when it is a critical threat or an escalation, which
    /// the engine evaluates at once.
    pub fn observe(&mut self, ex: &Exchange, now: Instant) -> bool {
        self.prune(now);
        let mut urgent = false;
        if let Some(v) = &ex.verdict {
            if v.level == RiskLevel::Critical {
                let cats: Vec<&str> = v.categories.iter().map(|c| c.as_str()).collect();
                push_capped(&mut self.critical, (now, ex.user.clone(), cats.join(", ")));
                urgent = true;
            }
            if let (true, Some(user)) = (v.escalated, &ex.user) {
                push_capped(&mut self.escalated, (now, user.clone()));
                urgent = true;
            }
        }
        if let (Some(up), true) = (&ex.upstream, counts_for_upstream(ex.outcome)) {
            let slots = self.upstreams.entry(up.to_string()).or_default();
            let fresh = slots
                .back()
                .is_none_or(|s| now.duration_since(s.at) >= Duration::from_secs(1));
            if fresh {
                slots.push_back(UpstreamSlot {
                    at: now,
                    total: 0,
                    failed: 0,
                    unreachable: 0,
                });
            }
            if let Some(s) = slots.back_mut() {
                s.total += 1;
                s.failed += u64::from(ex.counts_as_error());
                s.unreachable += u64::from(ex.outcome == Outcome::Failed);
            }
        }
        urgent
    }

    fn prune(&mut self, now: Instant) {
        let Some(limit) = now.checked_sub(self.keep) else {
            return;
        };
        while self.critical.front().is_some_and(|e| e.0 < limit) {
            self.critical.pop_front();
        }
        while self.escalated.front().is_some_and(|e| e.0 < limit) {
            self.escalated.pop_front();
        }
        for slots in self.upstreams.values_mut() {
            while slots.front().is_some_and(|s| s.at < limit) {
                slots.pop_front();
            }
        }
        self.upstreams.retain(|_, s| !s.is_empty());
    }

    fn critical_since(&self, since: Instant, over: &str) -> Vec<Condition> {
        let recent: Vec<_> = self.critical.iter().filter(|e| e.0 >= since).collect();
        let Some(last) = recent.last() else {
            return Vec::new();
        };
        let n = recent.len();
        let user = last.1.as_deref().unwrap_or("unknown user");
        vec![whole(
            format!(
                "{n} critical threat(s) over {over}; latest from {user}: {}",
                last.2
            ),
            vec![figure(
                "critical_threats",
                "Critical threats",
                n as f64,
                n.to_string(),
            )],
        )]
    }

    fn escalated_since(&self, since: Instant, over: &str) -> Vec<Condition> {
        let mut per_user: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, u) in self.escalated.iter().filter(|e| e.0 >= since) {
            *per_user.entry(u).or_default() += 1;
        }
        per_user
            .into_iter()
            .map(|(user, n)| Condition {
                subject: user.to_owned(),
                summary: format!("user {user} escalated by behavioural analysis: {n} request(s) refused over {over}"),
                figures: vec![figure("escalated_requests", "Escalated requests", n as f64, n.to_string())],
                level: None,
            })
            .collect()
    }

    fn failing_upstreams(&self, since: Instant, ratio: f64, over: &str) -> Vec<Condition> {
        let mut out = Vec::new();
        for (name, slots) in &self.upstreams {
            let (mut total, mut failed, mut unreachable) = (0, 0, 0);
            for s in slots.iter().filter(|s| s.at >= since) {
                total += s.total;
                failed += s.failed;
                unreachable += s.unreachable;
            }
            let r = if total == 0 {
                0.0
            } else {
                failed as f64 / total as f64
            };
            if total < MIN_UPSTREAM_REQUESTS || r < ratio {
                continue;
            }
            let state = if unreachable == total {
                "unreachable"
            } else {
                "failing"
            };
            out.push(Condition {
                subject: name.clone(),
                summary: format!("upstream {name} {state}: {failed} of {total} requests failed over {over} ({unreachable} unreachable)"),
                figures: vec![
                    figure("failure_ratio", "Failure ratio", r, format!("{:.0}% (threshold {:.0}%)", r * 100.0, ratio * 100.0)),
                    figure("failed", "Failed", failed as f64, failed.to_string()),
                    figure("unreachable", "Unreachable", unreachable as f64, unreachable.to_string()),
                    figure("requests", "Requests", total as f64, total.to_string()),
                ],
                level: None,
            });
        }
        out
    }
}

/// Outcomes that say something about the upstream (not refusals or cancellations by us or the
/// client).
fn counts_for_upstream(o: Outcome) -> bool {
    matches!(
        o,
        Outcome::Ok | Outcome::UpstreamError | Outcome::StreamError | Outcome::Failed
    )
}

fn push_capped<T>(q: &mut VecDeque<T>, item: T) {
    if q.len() >= MAX_EVENTS {
        q.pop_front();
    }
    q.push_back(item);
}

#[cfg(test)]
mod tests;
