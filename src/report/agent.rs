//! The `Reporter`: generates, stores and lists reports, and changes risk thresholds with a
//! replayed effect and a history. It reaches the outside world only through the closures `app`
//! gives it: the LLM call, the live config, applying thresholds to the live runtime, and
//! handing a digest to the alert channels.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use jiff::civil::Date;
use serde::Serialize;
use serde_json::json;

use crate::analytics::unix_ms;
use crate::config::{Config, ThresholdsConfig};
use crate::quota::BudgetsFn;
use crate::store::{rfc3339, Store, StoredReport, ThresholdChange};

use super::period::{self, Zone};
use super::{advice, figures, render, replay, rules};
use super::{Engine, Error, Period, Recommendation, Report};

/// Sends one chat-completions request body (with `model` set) upstream and returns the body of
/// a 2xx answer.
pub type ChatFn =
    Arc<dyn Fn(serde_json::Value) -> BoxFuture<'static, Result<Bytes, ChatError>> + Send + Sync>;
/// The live configuration (follows reloads and threshold changes).
pub type ConfigFn = Arc<dyn Fn() -> Arc<Config> + Send + Sync>;
/// Puts new thresholds into the live runtime.
pub type ApplyFn = Arc<dyn Fn(ThresholdsConfig) -> Result<(), String> + Send + Sync>;
/// Hands a stored report's digest to the alert channels (queues it; never waits on a send).
pub type DigestFn = Arc<dyn Fn(&Report) + Send + Sync>;

/// Who asked for a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The schedule: may auto-tune thresholds, and sends the digest when it is enabled.
    Schedule,
    /// An operator (admin API or CLI), without a digest.
    Manual,
    /// An operator who also wants the digest sent (when it is enabled).
    ManualWithDigest,
}

/// Why the LLM could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("no upstream routes model {0}")]
    NoRoute(String),
    #[error("upstream unreachable: {0}")]
    Transport(String),
    #[error("upstream answered {0}")]
    Status(u16),
    #[error("upstream answer timed out")]
    Timeout,
}

/// Days of stored scores a manual threshold change is replayed on.
const REPLAY_DAYS: i64 = 7;
/// Threshold changes listed with an outcome.
const HISTORY: u32 = 20;
const DAY_MS: i64 = 86_400_000;

/// Generates reports and changes thresholds. Cheap to clone.
#[derive(Clone)]
pub struct Reporter {
    store: Store,
    chat: ChatFn,
    config: ConfigFn,
    apply: ApplyFn,
    digest: Option<DigestFn>,
    budgets: Option<BudgetsFn>,
}

/// What a threshold change did (or would do, on a dry run).
#[derive(Clone, Debug, Serialize)]
pub struct ThresholdOutcome {
    pub dry_run: bool,
    pub applied: bool,
    pub old: ThresholdsConfig,
    pub new: ThresholdsConfig,
    /// Replayed on the stored scores of the last 7 days.
    pub effect: replay::Effect,
    pub config_diff: String,
    pub history: Vec<ThresholdChange>,
}

impl Reporter {
    pub fn new(store: Store, chat: ChatFn, config: ConfigFn, apply: ApplyFn) -> Reporter {
        Reporter {
            store,
            chat,
            config,
            apply,
            digest: None,
            budgets: None,
        }
    }

    /// Reads the live spend budgets into each report's figures (set by `app`; without it a
    /// report lists none).
    pub fn with_budgets(mut self, budgets: BudgetsFn) -> Reporter {
        self.budgets = Some(budgets);
        self
    }

    /// Sends digests of stored reports (set by `app` when the alert channels run).
    pub fn with_digest(mut self, digest: DigestFn) -> Reporter {
        self.digest = Some(digest);
        self
    }

    /// Why a digest cannot be sent now (`report.digest` off, or no alert channels running).
    pub fn digest_unavailable(&self) -> Option<&'static str> {
        if !(self.config)().report.digest.enabled {
            Some("report.digest.enabled is false")
        } else if self.digest.is_none() {
            Some("the alert channels are not running (alerts.enabled is false)")
        } else {
            None
        }
    }

    /// Generates, renders and stores the report of `period` (the one containing local date
    /// `date`, or the previous complete one), then drops reports past `report.retention_days`.
    /// A scheduled report also applies its threshold proposal when `report.auto_tune` is on;
    /// a scheduled one, or one asked for with a digest, is sent as a digest when
    /// `report.digest.enabled`.
    ///
    /// # Errors
    /// A store read or the insert fails (LLM failures fall back to the rule engine instead).
    pub async fn generate(
        &self,
        period: Period,
        date: Option<Date>,
        trigger: Trigger,
    ) -> Result<Report, Error> {
        let config = (self.config)();
        let now = unix_ms(SystemTime::now());
        let zone = Zone::of(&config.report.schedule);
        let b = period::of(period, date, now, &zone)?;
        let budgets = self.budgets.as_ref().map(|f| f()).unwrap_or_default();
        let figures = figures::gather(&self.store, &config, &b, &zone, now, budgets).await?;
        let (engine, recommendations) = self.advise(&config, &figures).await;
        let report = Report {
            from: b.from,
            to: b.to,
            zone: b.zone,
            from_ms: b.from_ms,
            to_ms: b.to_ms,
            id: uuid::Uuid::now_v7().to_string(),
            created: rfc3339(now),
            created_ms: now,
            period,
            engine,
            recommendations,
            figures,
        };
        self.store.insert_report(&stored(&report)).await?;
        tracing::info!(id = %report.id, period = period.as_str(), from = %report.from,
            to = %report.to, engine = %report.engine.label(),
            recommendations = report.recommendations.len(), "report generated");
        self.prune(now).await;
        let scheduled = trigger == Trigger::Schedule;
        if scheduled && config.report.auto_tune {
            self.auto_tune(&report, config.report.auto_tune_max_step)
                .await;
        }
        if (scheduled || trigger == Trigger::ManualWithDigest) && config.report.digest.enabled {
            self.send_digest(&report);
        }
        Ok(report)
    }

    fn send_digest(&self, report: &Report) {
        match &self.digest {
            Some(send) => send(report),
            None => tracing::warn!(id = %report.id,
                "report digest not sent: the alert channels are not running"),
        }
    }

    /// Deletes the reports created more than `report.retention_days` before `now_ms`.
    pub async fn prune(&self, now_ms: i64) {
        let days = (self.config)().report.retention_days;
        if days == 0 {
            return;
        }
        let cutoff = now_ms - i64::from(days) * DAY_MS;
        match self.store.delete_reports_before(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, retention_days = days, "old reports deleted"),
            Err(e) => tracing::warn!(error = %e, "old reports not deleted"),
        }
    }

    /// Asks the model (twice at most); falls back to the rules and says why.
    async fn advise(&self, config: &Config, f: &figures::Figures) -> (Engine, Vec<Recommendation>) {
        let rules = || rules::recommend(f, &config.report.rules);
        let Some(model) = config.report.model.clone() else {
            let reason = "no report.model configured".to_owned();
            return (Engine::Rules { reason }, rules());
        };
        let mut body = advice::request(f);
        body["model"] = json!(model);
        let mut why = String::new();
        for attempt in 1..=2 {
            let answer = (self.chat)(body.clone()).await;
            match answer
                .map_err(|e| e.to_string())
                .and_then(|b| advice::parse(&b))
            {
                Ok(recs) => return (Engine::Llm { model }, recs),
                Err(e) => {
                    tracing::warn!(attempt, model = %model, error = %e, "report LLM answer unusable");
                    why = e;
                }
            }
        }
        let reason = format!("{model} failed twice, last: {why}");
        (Engine::Rules { reason }, rules())
    }

    /// Applies the report's proposal, one clamped step at a time. The clamped step is a change
    /// of its own, so it is replayed first; a step that loosens a threshold (raises it, so the
    /// guard lets more through) is applied only when that replay shows fewer requests blocked.
    /// Tightening needs no such evidence.
    async fn auto_tune(&self, report: &Report, max_step: f32) {
        let Some(p) = &report.figures.threshold_proposal else {
            tracing::info!(id = %report.id, note = %report.figures.threshold_note,
                "auto-tune: thresholds left as they are");
            return;
        };
        let step = replay::clamp_step(&p.current, &p.proposed, max_step);
        let source = format!("auto_tune (report {})", report.id);
        let dry = match self.set_thresholds(step, true, &source).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "auto-tune not applied");
                return;
            }
        };
        let e = &dry.effect;
        if loosens(&dry.old, &step) && e.newly_unblocked <= e.newly_blocked {
            tracing::warn!(summary = %e.summary,
                "auto-tune not applied: the replay shows the looser threshold blocks no fewer requests");
            return;
        }
        match self.set_thresholds(step, false, &source).await {
            Ok(o) => tracing::info!(summary = %o.effect.summary, "thresholds auto-tuned"),
            Err(e) => tracing::warn!(error = %e, "auto-tune not applied"),
        }
    }

    /// Checks `new`, replays it on the last 7 days of stored scores, and unless `dry_run` puts
    /// it into the live runtime and records the change (old and new values) in the history.
    ///
    /// # Errors
    /// The thresholds are not rising or out of bounds, the runtime cannot be rebuilt, or the
    /// store fails.
    pub async fn set_thresholds(
        &self,
        new: ThresholdsConfig,
        dry_run: bool,
        source: &str,
    ) -> Result<ThresholdOutcome, Error> {
        replay::check(&new).map_err(Error::InvalidThresholds)?;
        let config = (self.config)();
        let old = config.detect.thresholds;
        let now = unix_ms(SystemTime::now());
        let (scored, _) = self
            .store
            .scored_requests(now - REPLAY_DAYS * 86_400_000, now + 1)
            .await?;
        let effect = replay::replay(&scored, &old, &new, &config.detect.actions);
        let applied = !dry_run && new != old;
        if applied {
            (self.apply)(new).map_err(Error::Apply)?;
            let (o, n) = (json!(old), json!(new));
            self.store
                .insert_threshold_change(now, source, &o, &n, &json!(effect))
                .await?;
            tracing::info!(source, old = %o, new = %n, effect = %effect.summary, "risk thresholds changed");
        }
        Ok(ThresholdOutcome {
            dry_run,
            applied,
            old,
            new,
            config_diff: replay::diff(&old, &new),
            effect,
            history: self.store.threshold_changes(HISTORY).await?,
        })
    }

    /// Current thresholds and the change history, newest first.
    ///
    /// # Errors
    /// The store fails.
    pub async fn thresholds(&self) -> Result<(ThresholdsConfig, Vec<ThresholdChange>), Error> {
        let t = (self.config)().detect.thresholds;
        Ok((t, self.store.threshold_changes(HISTORY).await?))
    }

    /// The live configuration this reporter reads.
    pub fn config_fn(&self) -> ConfigFn {
        self.config.clone()
    }

    /// The store, for listing and reading reports.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// Whether `new` raises any threshold of `old` (a higher threshold lets more through).
fn loosens(old: &ThresholdsConfig, new: &ThresholdsConfig) -> bool {
    let pairs = [
        (old.low, new.low),
        (old.medium, new.medium),
        (old.high, new.high),
        (old.critical, new.critical),
    ];
    pairs.iter().any(|(o, n)| n > o)
}

fn stored(r: &Report) -> StoredReport {
    StoredReport {
        id: r.id.clone(),
        created_ms: r.created_ms,
        period: r.period.as_str().into(),
        from_ms: r.from_ms,
        to_ms: r.to_ms,
        engine: r.engine.label(),
        recommendations: r.recommendations.len() as i64,
        json: serde_json::to_string(r).unwrap_or_else(|_| "{}".into()),
        markdown: render::markdown(r),
        html: render::html(r),
    }
}
