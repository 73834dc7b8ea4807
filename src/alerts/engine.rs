//! The engine: ticks every `alerts.eval_secs`, evaluates every rule, keeps the firing alerts,
//! applies cooldown and de-duplication, resolves alerts whose condition cleared, stores each
//! alert and hands notices to delivery.
//!
//! Lifecycle of one alert, keyed by rule and subject (`State::apply`):
//! - condition holds, no alert firing: the alert *fires* (stored, notified) unless the same
//!   key fired less than `cooldown` ago, in which case it waits for the cooldown to pass;
//! - condition holds, alert firing: nothing is sent (de-duplication); the figures are kept;
//! - condition gone, alert firing: the alert *resolves* (stored, notified when
//!   `send_resolved`).
//!
//! Critical threats and escalations are evaluated the moment their record arrives, so the
//! notice does not wait for the next tick.
//!
//! Fleet de-duplication: replicas sharing one store each evaluate their own traffic, so the
//! same (rule, subject) can fire on several at once. Before storing or notifying, a replica
//! *claims* the key in the store (`Store::alert_claim`, one atomic upsert); only the winner
//! notifies. The winner renews its lease every evaluation while the alert fires and, when it
//! resolves, leaves the claim closed until the cool-down ends, so the fleet honours one
//! cool-down. A replica that dies lets its lease lapse (at most `max(cooldown, 3 ticks)`). With
//! one process every claim succeeds. A store error fails open: a duplicate notice is better
//! than a lost one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::analytics::{self, unix_ms, Anomaly, Live};
use crate::config::{AlertsConfig, RuleKind};
use crate::event::Exchange;
use crate::store::{AlertRow, Store};

use super::rules::{self, Condition, Recent, Rule, Snapshot};
use super::{Message, Notice, NoticeKind};

/// How often the (hourly, store-backed) anomaly detection runs.
const ANOMALY_EVERY: Duration = Duration::from_secs(300);
/// Days of hourly rollups anomaly detection looks at (baselines need the previous days).
const ANOMALY_DAYS: u32 = 8;

/// One firing alert.
#[derive(Clone, Debug)]
pub struct Active {
    pub id: String,
    pub started_at: SystemTime,
    pub condition: Condition,
}

/// What changed in one evaluation.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Fired {
        rule: usize,
        id: String,
        condition: Condition,
    },
    Resolved {
        rule: usize,
        id: String,
        started_at: SystemTime,
        condition: Condition,
    },
}

/// Firing alerts and when each key last fired. Pure: `now` is passed in.
#[derive(Debug, Default)]
pub struct State {
    active: HashMap<(usize, String), Active>,
    last_fired: HashMap<(usize, String), Instant>,
}

impl State {
    /// Applies the conditions of rule number `rule` seen at `now`.
    pub fn apply(
        &mut self,
        rule: usize,
        cooldown: Duration,
        conditions: Vec<Condition>,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let holding: HashSet<String> = conditions.iter().map(|c| c.subject.clone()).collect();
        let gone: Vec<(usize, String)> = self
            .active
            .keys()
            .filter(|(r, s)| *r == rule && !holding.contains(s))
            .cloned()
            .collect();
        for key in gone {
            if let Some(a) = self.active.remove(&key) {
                changes.push(Change::Resolved {
                    rule,
                    id: a.id,
                    started_at: a.started_at,
                    condition: a.condition,
                });
            }
        }
        for c in conditions {
            let key = (rule, c.subject.clone());
            if let Some(a) = self.active.get_mut(&key) {
                a.condition = c;
                continue;
            }
            let cooling = self
                .last_fired
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < cooldown);
            if cooling {
                continue;
            }
            let id = uuid::Uuid::now_v7().simple().to_string();
            self.last_fired.insert(key.clone(), now);
            self.active.insert(
                key,
                Active {
                    id: id.clone(),
                    started_at: wall,
                    condition: c.clone(),
                },
            );
            changes.push(Change::Fired {
                rule,
                id,
                condition: c,
            });
        }
        changes
    }

    /// Drops a firing alert without resolving it: another replica (or this process before a
    /// restart) holds its claim. No local cool-down starts, so the next evaluation asks for the
    /// claim again and notifies as soon as the other's claim lapses — a lost claim never adds a
    /// cool-down of this replica's own on top of the owner's.
    pub fn forget(&mut self, rule: usize, subject: &str) {
        let key = (rule, subject.to_owned());
        self.active.remove(&key);
        self.last_fired.remove(&key);
    }

    /// Number of firing alerts.
    pub fn firing(&self) -> usize {
        self.active.len()
    }
}

/// The running engine's inputs and state.
pub struct Engine {
    pub rules: Vec<Rule>,
    live: Arc<Live>,
    store: Store,
    notices: mpsc::Sender<(Message, Vec<String>)>,
    every: Duration,
    /// This replica's name on its alert claims.
    instance: String,
    gateway: String,
    dashboard_url: Option<String>,
    recent: Recent,
    state: State,
    anomalies: Vec<Anomaly>,
    anomalies_at: Option<Instant>,
    budgets: Option<BudgetsFn>,
}

pub use crate::quota::BudgetsFn;

impl Engine {
    pub fn new(
        cfg: &AlertsConfig,
        live: Arc<Live>,
        store: Store,
        notices: mpsc::Sender<(Message, Vec<String>)>,
        instance: String,
    ) -> Engine {
        let rules = Rule::build(cfg);
        let keep = rules.iter().map(|r| r.window).max().unwrap_or_default();
        Engine {
            rules,
            live,
            store,
            notices,
            every: Duration::from_secs(cfg.eval_secs.max(1)),
            instance,
            gateway: cfg.gateway_name.clone(),
            dashboard_url: cfg.dashboard_url.clone(),
            recent: Recent::new(keep),
            state: State::default(),
            anomalies: Vec::new(),
            anomalies_at: None,
            budgets: None,
        }
    }

    /// Reads the spend budgets from `f` for the budget rule.
    pub fn with_budgets(self, f: BudgetsFn) -> Engine {
        Engine {
            budgets: Some(f),
            ..self
        }
    }

    /// Evaluates the rules (all, or only the immediate ones) and acts on what changed.
    async fn evaluate(&mut self, only_immediate: bool) {
        let now = Instant::now();
        let wall = SystemTime::now();
        if !only_immediate {
            self.refresh_anomalies(now).await;
        }
        let wants_budgets =
            !only_immediate && self.rules.iter().any(|r| r.kind == RuleKind::Budget);
        let budgets = match &self.budgets {
            Some(f) if wants_budgets => f(),
            _ => Vec::new(),
        };
        let mut snap = Snapshot {
            recent: Some(&self.recent),
            anomalies: &self.anomalies,
            store: Some(self.store.health()),
            budgets: &budgets,
            ..Snapshot::default()
        };
        for r in self
            .rules
            .iter()
            .filter(|r| !only_immediate || r.immediate())
        {
            snap.windows
                .entry(r.window)
                .or_insert_with(|| self.live.window_at(wall, r.window));
        }
        let mut changes = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            if only_immediate && !r.immediate() {
                continue;
            }
            let conditions = rules::evaluate(r, &snap, now);
            for c in self.state.apply(i, r.cooldown, conditions, now, wall) {
                // A resolved notice says what the rule measures now, not what it fired with.
                let current = matches!(c, Change::Resolved { .. })
                    .then(|| rules::current(r, &snap))
                    .flatten();
                changes.push((c, current));
            }
        }
        for (c, current) in changes {
            self.act(c, current, wall).await;
        }
        if !only_immediate && self.state.firing() > 0 {
            let until = unix_ms(wall) + self.lease_ms();
            if let Err(e) = self.store.alert_claims_renew(&self.instance, until).await {
                tracing::warn!(error = %e, "alert claims not renewed");
            }
        }
    }

    /// How long a claim on a firing alert holds without renewal.
    fn lease_ms(&self) -> i64 {
        let longest = self
            .rules
            .iter()
            .map(|r| r.cooldown)
            .max()
            .unwrap_or_default();
        ms(longest.max(self.every * 3))
    }

    /// Claims the right to notify a newly fired alert for this replica.
    async fn claim(&self, rule: &Rule, subject: &str, id: &str, wall: SystemTime) -> bool {
        let now = unix_ms(wall);
        let until = now + ms(rule.cooldown).max(self.lease_ms());
        match self
            .store
            .alert_claim(&rule.name, subject, id, &self.instance, now, until)
            .await
        {
            Ok(won) => won,
            Err(e) => {
                tracing::warn!(error = %e, rule = %rule.name, "alert claim failed; notifying anyway");
                true
            }
        }
    }

    async fn refresh_anomalies(&mut self, now: Instant) {
        let wanted = self.rules.iter().any(|r| r.kind == RuleKind::Anomaly);
        let due = self
            .anomalies_at
            .is_none_or(|t| now.duration_since(t) >= ANOMALY_EVERY);
        if !wanted || !due {
            return;
        }
        self.anomalies_at = Some(now);
        let now_ms = unix_ms(SystemTime::now());
        let recent_ms = now_ms - 2 * 3_600_000;
        match analytics::usage_at(&self.store, now_ms, ANOMALY_DAYS).await {
            // Only the last complete hours: older anomalies were (or could have been) notified.
            Ok(u) => {
                self.anomalies = u
                    .anomalies
                    .into_iter()
                    .filter(|a| a.window == "1h")
                    .filter(|a| parse_ms(&a.at).is_some_and(|t| t >= recent_ms))
                    .collect()
            }
            Err(e) => tracing::warn!(error = %e, "anomaly detection skipped"),
        }
    }

    /// Stores the change and queues its notice. A resolved notice carries `current` (what the
    /// rule measures now) and how long the alert fired.
    async fn act(
        &mut self,
        change: Change,
        current: Option<(String, Vec<rules::Figure>)>,
        wall: SystemTime,
    ) {
        let (rule, kind, id, started, condition) = match change {
            Change::Fired {
                rule,
                id,
                condition,
            } => (rule, NoticeKind::Fired, id, wall, condition),
            Change::Resolved {
                rule,
                id,
                started_at,
                condition,
            } => (rule, NoticeKind::Resolved, id, started_at, condition),
        };
        let r = &self.rules[rule];
        match kind {
            NoticeKind::Fired => {
                if !self.claim(r, &condition.subject, &id, wall).await {
                    tracing::debug!(rule = %r.name, subject = %condition.subject, "alert already claimed by another replica");
                    self.state.forget(rule, &condition.subject);
                    return;
                }
            }
            _ => {
                let until = unix_ms(started) + ms(r.cooldown);
                if let Err(e) = self.store.alert_claim_release(&id, until).await {
                    tracing::warn!(error = %e, rule = %r.name, "alert claim not released");
                }
            }
        }
        let r = &self.rules[rule];
        let (summary, figures) = match kind {
            NoticeKind::Resolved => {
                let fired = wall.duration_since(started).unwrap_or_default();
                let fired = humanize(fired);
                match current {
                    Some((now, figures)) => (format!("resolved after {fired}: {now}"), figures),
                    None => (
                        format!("resolved after {fired}: the condition no longer holds (it fired with: {})", condition.summary),
                        condition.figures,
                    ),
                }
            }
            _ => (condition.summary, condition.figures),
        };
        let notice = Notice {
            alert_id: id,
            kind,
            rule: r.name.clone(),
            subject: condition.subject,
            level: condition.level.unwrap_or(r.level),
            summary,
            figures,
            started_at: started,
            resolved_at: (kind == NoticeKind::Resolved).then_some(wall),
            gateway: self.gateway.clone(),
            dashboard_url: self.dashboard_url.clone(),
        };
        let stored = match kind {
            NoticeKind::Resolved => {
                self.store
                    .alert_resolve(&notice.alert_id, unix_ms(wall), &notice.figures_json())
                    .await
            }
            _ => self.store.alert_insert(&row(&notice, "firing")).await,
        };
        if let Err(e) = stored {
            tracing::warn!(error = %e, rule = %notice.rule, "alert not stored");
        }
        tracing::info!(rule = %notice.rule, subject = %notice.subject, level = notice.level.as_str(), kind = kind.as_str(), summary = %notice.summary, "alert");
        if kind == NoticeKind::Resolved && !r.send_resolved {
            return;
        }
        if self
            .notices
            .try_send((Message::Alert(notice), r.channels.clone()))
            .is_err()
        {
            tracing::warn!(rule = %r.name, "alert notice dropped: delivery queue full");
        }
    }
}

/// The stored row of a notice's alert.
pub fn row(n: &Notice, state: &str) -> AlertRow {
    AlertRow {
        id: n.alert_id.clone(),
        rule: n.rule.clone(),
        subject: n.subject.clone(),
        level: n.level.as_str().into(),
        state: state.into(),
        started_ms: unix_ms(n.started_at),
        started_at: String::new(),
        resolved_ms: n.resolved_at.map(unix_ms),
        resolved_at: None,
        summary: n.summary.clone(),
        figures: n.figures_json(),
        deliveries: Vec::new(),
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn parse_ms(rfc3339: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Runs the engine until the record channel closes (shutdown): a tick every `eval_secs`, and
/// an immediate evaluation after a critical threat or an escalation.
pub async fn run_engine(mut engine: Engine, mut records: mpsc::Receiver<Arc<Exchange>>) {
    if let Err(e) = engine
        .store
        .alerts_close_stale(unix_ms(SystemTime::now()), &engine.instance)
        .await
    {
        tracing::warn!(error = %e, "alerts left firing by the last run were not closed");
    }
    let mut tick = tokio::time::interval(engine.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            rec = records.recv() => {
                let Some(ex) = rec else { return };
                if engine.recent.observe(&ex, Instant::now()) {
                    engine.evaluate(true).await;
                }
            }
            _ = tick.tick() => engine.evaluate(false).await,
        }
    }
}

/// `45 s`, `12 min`, `3 h 5 min`: how long an alert fired.
fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=3599 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}
