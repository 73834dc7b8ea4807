//! Config section for alerts (serde shapes only; the built rules and channels live in
//! `alerts`). Secrets (SMTP password, webhook URLs and signing secrets) are named here by an
//! environment variable or a file, never written in the file itself.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Alert rules, their thresholds and the channels notices go to.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Evaluate rules at all. Default true (with no channel configured alerts are only stored).
    pub enabled: bool,
    /// Seconds between two evaluations of the windowed rules. Default 5.
    pub eval_secs: u64,
    /// Link to the dashboard put in every notice (Slack button, Teams action, e-mail body).
    pub dashboard_url: Option<String>,
    /// Name of this gateway in notices (`gateway` label). Default `gatehouse`.
    pub gateway_name: String,
    /// Default thresholds of the rules; the seed's `ALERT_*` variables set these.
    pub thresholds: AlertThresholds,
    pub channels: ChannelsConfig,
    pub delivery: DeliveryConfig,
    /// The rules. Default: one rule of each kind (see `gateway.yaml`).
    pub rules: Vec<RuleConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            eval_secs: 5,
            dashboard_url: None,
            gateway_name: "gatehouse".into(),
            thresholds: AlertThresholds::default(),
            channels: ChannelsConfig::default(),
            delivery: DeliveryConfig::default(),
            rules: default_rules(),
        }
    }
}

/// The seed's thresholds.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertThresholds {
    /// Threats (requests scanned at medium risk or above) in a window. Default 5
    /// (`ALERT_SECURITY_THRESHOLD`).
    pub security: f64,
    /// p95 latency in seconds. Default 5.0 (`ALERT_LATENCY_THRESHOLD`).
    pub latency_secs: f64,
    /// Error rate, 0..1. Default 0.05 (`ALERT_ERROR_RATE_THRESHOLD`).
    pub error_rate: f64,
    /// Failure ratio (0..1) at which an upstream counts as failing. Default 0.5.
    pub upstream_failure_ratio: f64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds {
            security: 5.0,
            latency_secs: 5.0,
            error_rate: 0.05,
            upstream_failure_ratio: 0.5,
        }
    }
}

/// What a rule watches.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Threats in the window ≥ `thresholds.security`.
    Threats,
    /// p95 latency in the window > `thresholds.latency_secs`.
    LatencyP95,
    /// Error rate in the window > `thresholds.error_rate`.
    ErrorRate,
    /// Any critical threat, notified the moment its record arrives.
    CriticalThreat,
    /// Anomalies found by `analytics::anomaly` in the last complete hours.
    Anomaly,
    /// A user escalated (blocked for a cool-down) by behavioural analysis.
    UserEscalated,
    /// An upstream failing (failure ratio ≥ `thresholds.upstream_failure_ratio`) or unreachable.
    UpstreamFailing,
    /// The event store failing to write (disk full, database down): records wait in the
    /// retry buffer or are dropped. Holds from the first failed write to the first that succeeds.
    StoreFailing,
    /// A spend budget (a key's, an end user's, a team's, a model's or the gateway's) spent to
    /// `threshold` (a share in (0, 1), default 0.8) fires at the rule's level; spent in full
    /// (100 %) it fires again, critical. Both resolve when the budget period starts again.
    /// `window_secs` is not used: the figures are the current period's.
    Budget,
}

/// Notice level.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum AlertLevel {
    Info,
    Warning,
    Critical,
}

impl AlertLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertLevel::Info => "info",
            AlertLevel::Warning => "warning",
            AlertLevel::Critical => "critical",
        }
    }
}

/// One rule.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name, shown in notices and stored with each alert.
    pub name: String,
    pub kind: RuleKind,
    pub level: AlertLevel,
    /// Window the figures are taken over, seconds (1 … 86400). Default 300.
    pub window_secs: u64,
    /// Least time between two notices of the same alert (same rule and subject), seconds.
    /// While an alert stays firing it is not notified again (de-duplication). Default 600.
    pub cooldown_secs: u64,
    /// Threshold overriding the default one of `thresholds` for this rule.
    pub threshold: Option<f64>,
    /// Channels (`email`, `slack`, `teams`, `webhook`, `alertmanager`); empty means every
    /// enabled channel.
    pub channels: Vec<String>,
    /// Send a notice when the condition clears. Default true.
    pub send_resolved: bool,
}

impl Default for RuleConfig {
    fn default() -> Self {
        RuleConfig {
            name: String::new(),
            kind: RuleKind::Threats,
            level: AlertLevel::Warning,
            window_secs: 300,
            cooldown_secs: 600,
            threshold: None,
            channels: Vec::new(),
            send_resolved: true,
        }
    }
}

fn rule(name: &str, kind: RuleKind, level: AlertLevel, window_secs: u64) -> RuleConfig {
    RuleConfig {
        name: name.into(),
        kind,
        level,
        window_secs,
        ..RuleConfig::default()
    }
}

/// One rule of each kind.
pub fn default_rules() -> Vec<RuleConfig> {
    use AlertLevel::*;
    use RuleKind::*;
    vec![
        rule("security_threats", Threats, Warning, 300),
        rule("latency_p95", LatencyP95, Warning, 300),
        rule("error_rate", ErrorRate, Warning, 300),
        rule("critical_threat", CriticalThreat, Critical, 300),
        rule("anomaly", Anomaly, Info, 7200),
        rule("user_escalated", UserEscalated, Warning, 900),
        rule("upstream_failing", UpstreamFailing, Critical, 120),
        rule("store_failing", StoreFailing, Critical, 60),
        rule("budget", Budget, Warning, 300),
    ]
}

/// Delivery channels. Each is enabled when its address (and, where needed, its secret) is set.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    pub email: EmailConfig,
    pub slack: UrlChannelConfig,
    pub teams: UrlChannelConfig,
    /// Generic webhooks signed per Standard Webhooks.
    pub webhooks: Vec<WebhookConfig>,
    /// Prometheus Alertmanager webhook format.
    pub alertmanager: AlertmanagerConfig,
}

/// E-mail over SMTP. Enabled when `host` and `to` are set.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    pub host: Option<String>,
    /// Default 587 (submission with STARTTLS).
    pub port: u16,
    /// Sender, e.g. `gatehouse <alerts@example.com>`. Default `gatehouse@localhost`.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Environment variable of the SMTP user. Default `ALERT_EMAIL_USER`; unset = no login.
    pub user_env: String,
    /// Environment variable of the SMTP password. Default `ALERT_EMAIL_PASSWORD`.
    pub password_env: String,
    /// File holding the password (used when the variable is unset).
    pub password_file: Option<PathBuf>,
    /// Require STARTTLS (certificate and host name verified). Default true; false sends in
    /// plain text and is only meant for a relay on loopback.
    pub starttls: bool,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            host: None,
            port: 587,
            from: "gatehouse@localhost".into(),
            to: Vec::new(),
            user_env: "ALERT_EMAIL_USER".into(),
            password_env: "ALERT_EMAIL_PASSWORD".into(),
            password_file: None,
            starttls: true,
        }
    }
}

/// A channel whose URL is its credential (Slack incoming webhook, Teams Workflows webhook).
/// Enabled when the variable or the file gives a URL.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UrlChannelConfig {
    /// Environment variable holding the URL. Slack's default is `SLACK_WEBHOOK_URL`, Teams'
    /// `TEAMS_WEBHOOK_URL`.
    pub webhook_url_env: Option<String>,
    /// File holding the URL.
    pub webhook_url_file: Option<PathBuf>,
}

/// One generic webhook.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Environment variable holding the signing secret (`whsec_<base64>`).
    pub secret_env: Option<String>,
    /// File holding the signing secret.
    pub secret_file: Option<PathBuf>,
}

/// Alertmanager-format webhook. Enabled when `url` is set.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AlertmanagerConfig {
    pub url: Option<String>,
}

/// Retries and timeouts of notices.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Attempts per notice and channel after the first, on network errors, 429 and 5xx.
    /// Default 3.
    pub retries: u32,
    /// First back-off in milliseconds, doubled each retry (`Retry-After` up to 60 s wins).
    /// Default 1000.
    pub backoff_ms: u64,
    /// Timeout of one attempt, seconds. Default 15.
    pub timeout_secs: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            retries: 3,
            backoff_ms: 1000,
            timeout_secs: 15,
        }
    }
}
