//! Alerts: rules over the live figures, the engine that keeps alerts firing and resolves them,
//! and delivery of notices to e-mail, Slack, Teams, signed webhooks and Alertmanager.
//!
//! Owns: rule evaluation (`rules`, pure: figures and `now` in, conditions out), the alert
//! lifecycle with cooldown and de-duplication (`engine`), the channels' wire formats
//! (`channels`) and retries (`delivery`). Does not own: the figures themselves (`analytics`),
//! persistence (`store`), the HTTP API (`admin`).
//!
//! How the engine sees the traffic: windowed rules (threats, p95 latency, error rate) read
//! `analytics::Live`, which already keeps exact per-second windows, so nothing is counted
//! twice. Three rules need single records, which `Live` does not keep: a critical threat (to
//! notify *at once*, not at the next tick), a user escalated by behavioural analysis, and an
//! upstream failing. For those the engine has its own bounded consumer of the record fan-out
//! (named `alerts`, so a full queue drops and is counted like any consumer's) and keeps a
//! small record of recent events (`rules::Recent`). Trade-off: a record dropped under overload
//! can delay a critical-threat notice to the next one; the windowed rules are unaffected.
//!
//! The budget rule (`budget`) reads the proxy's quota counters at each evaluation through a
//! closure `app` hands the engine (`Engine::with_budgets`), never the records: spend is already
//! counted there, to the micro-dollar.
//!
//! The same channels carry report digests (`digest`): a `Message` is either an alert's notice
//! or a digest, and delivery treats both alike.
//!
//! Delivery never touches the proxy path: the engine hands notices to a bounded queue, and the
//! delivery task sends each notice to each channel in its own task, with retries and backoff,
//! so one slow or failing channel does not hold back the others. Every alert and every
//! delivery attempt is written to the store.

mod budget;
pub mod channels;
pub mod delivery;
pub mod digest;
pub mod engine;
pub mod rules;

use std::time::SystemTime;

use serde::Serialize;

pub use crate::config::AlertLevel as Level;
pub use channels::{Channel, Channels};
pub use delivery::{run_delivery, Delivery};
pub use digest::{Digest, DigestItem};
pub use engine::{run_engine, BudgetsFn, Engine};
pub use rules::{Figure, Rule};

/// What a notice tells: an alert firing, resolved, or a test sent by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeKind {
    Fired,
    Resolved,
    Test,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Fired => "fired",
            NoticeKind::Resolved => "resolved",
            NoticeKind::Test => "test",
        }
    }

    /// `FIRING`, `RESOLVED` or `TEST`, as titles show it.
    pub fn title(self) -> &'static str {
        match self {
            NoticeKind::Fired => "FIRING",
            NoticeKind::Resolved => "RESOLVED",
            NoticeKind::Test => "TEST",
        }
    }
}

/// One message to send about one alert. Every channel renders it in its own format.
#[derive(Clone, Debug)]
pub struct Notice {
    /// The alert's id (stable across retries and between its fired and resolved notices).
    pub alert_id: String,
    pub kind: NoticeKind,
    pub rule: String,
    /// What the alert is about within its rule (`-` when the rule has one subject).
    pub subject: String,
    pub level: Level,
    /// One line, e.g. `p95 latency 7.20 s > 5.00 s over 5m`.
    pub summary: String,
    pub figures: Vec<Figure>,
    pub started_at: SystemTime,
    pub resolved_at: Option<SystemTime>,
    /// `alerts.gateway_name`.
    pub gateway: String,
    pub dashboard_url: Option<String>,
}

impl Notice {
    /// Stable identity of the alert's rule and subject (Alertmanager's `fingerprint`): the
    /// first 16 hex digits of SHA-256 over `rule` and `subject`.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{}\u{0}{}", self.rule, self.subject));
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The figures as a JSON object (`name → value`).
    pub fn figures_json(&self) -> serde_json::Value {
        rules::figures_json(&self.figures)
    }

    /// `[CRITICAL] FIRING: upstream_failing (openrouter)`.
    pub fn title(&self) -> String {
        let subject = if self.subject == "-" {
            String::new()
        } else {
            format!(" ({})", self.subject)
        };
        format!(
            "[{}] {}: {}{}",
            self.level.as_str().to_ascii_uppercase(),
            self.kind.title(),
            self.rule,
            subject
        )
    }
}

/// What delivery sends: an alert's notice or a report digest.
#[derive(Clone, Debug)]
pub enum Message {
    Alert(Notice),
    Digest(Digest),
}

impl Message {
    /// The alert id, or the report id of a digest: stored as `alert_id` with each delivery
    /// attempt, so a report's digest deliveries are found by its id.
    pub fn id(&self) -> &str {
        match self {
            Message::Alert(n) => &n.alert_id,
            Message::Digest(d) => &d.report_id,
        }
    }

    /// `fired`, `resolved`, `test` or `digest`: the `notice` of each delivery attempt.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Alert(n) => n.kind.as_str(),
            Message::Digest(_) => "digest",
        }
    }

    /// What a log line names: the alert's rule, or `report_digest`.
    pub fn topic(&self) -> &str {
        match self {
            Message::Alert(n) => &n.rule,
            Message::Digest(_) => "report_digest",
        }
    }
}

/// RFC 3339 (UTC, seconds) of a wall-clock time.
pub fn rfc3339(t: SystemTime) -> String {
    let ms = crate::analytics::unix_ms(t);
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// What the admin API needs of alerts: the rules in force and delivery (for test notices).
pub struct Handle {
    pub rules: Vec<Rule>,
    pub delivery: std::sync::Arc<Delivery>,
    pub gateway: String,
    pub dashboard_url: Option<String>,
}

impl Handle {
    /// Sends a test notice to the channels of kind `kind` (every enabled channel when `None`),
    /// once each, and returns their answers.
    pub async fn test(&self, kind: Option<&str>) -> (Notice, Vec<delivery::Outcome>) {
        let now = SystemTime::now();
        let n = Notice {
            alert_id: uuid::Uuid::now_v7().simple().to_string(),
            kind: NoticeKind::Test,
            rule: "test".into(),
            subject: "-".into(),
            level: Level::Info,
            summary: "test alert from gatehouse: if you read this, the channel works".into(),
            figures: Vec::new(),
            started_at: now,
            resolved_at: None,
            gateway: self.gateway.clone(),
            dashboard_url: self.dashboard_url.clone(),
        };
        let outcomes = self.delivery.test(&n, kind).await;
        (n, outcomes)
    }
}
