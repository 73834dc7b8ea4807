//! Configuration: one tree of plain serde structs, their defaults, loading and validation.
//!
//! Layers, lowest first: the defaults here → `gateway.yaml` → `GATEHOUSE_*` environment variables
//! with `__` for nesting (`GATEHOUSE_PROXY__LISTEN`) → the seed's plain variable names where they
//! exist (`MODEL_NAMES`). Secrets never live in these structs: they name an environment variable
//! or a file, and are read when the runtime is built (see `secret.rs`).
//!
//! These types are the raw shape. `validate` collects every problem at once; the proxy builds its
//! own runtime types (parsed URLs, `Duration`s) from validated config, so serde types never reach
//! the hot path.

mod alerts;
mod judge;
mod load;
pub mod passthrough;
mod quota;
mod report;
mod secret;
mod store;
mod traces;
pub mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use alerts::{
    default_rules, AlertLevel, AlertThresholds, AlertmanagerConfig, AlertsConfig, ChannelsConfig,
    DeliveryConfig, EmailConfig, RuleConfig, RuleKind, UrlChannelConfig, WebhookConfig,
};
pub use judge::{JudgeConfig, JudgeFail, LevelName};
pub use load::{load, LoadError, DEFAULT_FILE};
pub use quota::{
    check_limits, BudgetPeriod, LimitsConfig, QuotasConfig, UserQuotasConfig, MAX_BUDGET_USD,
    MAX_LIMIT,
};
pub use report::{
    parse_at, parse_offset, parse_zone, At, DigestConfig, ReportConfig, RuleThresholds,
    ScheduleConfig, DIGEST_CHANNELS,
};
pub use secret::{Secret, SecretError, SecretSource};
pub use store::{CaptureConfig, StoreConfig};
pub use traces::{LangfuseConfig, OtlpConfig, TraceCapture, TracesConfig};
pub use validate::{validate, Problems};

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub admin: AdminConfig,
    pub auth: AuthConfig,
    /// Named upstreams. Default: `openrouter` = `https://openrouter.ai/api/v1`.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub models: ModelsConfig,
    pub store: StoreConfig,
    pub detect: DetectConfig,
    /// Trace export to Langfuse and OpenTelemetry backends.
    pub traces: TracesConfig,
    /// Alert rules and delivery channels.
    pub alerts: AlertsConfig,
    /// Price table ($ per million tokens per model) used when the upstream reports no cost.
    /// Default `policies/prices.yaml`; a missing file means no computed cost.
    pub prices: PathBuf,
    /// The analysis agent: scheduled reports and recommendations.
    pub report: ReportConfig,
    /// Rate limits, concurrency caps and spend budgets for end users, teams, models and the
    /// whole gateway (limits on a key are in `auth.keys[].limits`).
    pub quotas: QuotasConfig,
    /// This replica's name in a shared store (fleet mode): it tags alert claims and lets each
    /// replica tell its own records from the others'. Set `GATEHOUSE_INSTANCE` (Kubernetes: the
    /// pod name); default the host name.
    pub instance: Option<String>,
}

/// The proxy listener: the OpenAI-compatible port apps point their `base_url` at.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Address to listen on. Default `127.0.0.1:8000`; containers set `0.0.0.0:8000`.
    pub listen: String,
    /// TLS termination; off when absent (plain HTTP/1.1 and h2c).
    pub tls: Option<TlsConfig>,
    /// Largest request body accepted, in bytes. Default 10 MiB.
    pub max_body_bytes: usize,
    /// Seconds in-flight requests and streams get to finish after SIGTERM. Default 30.
    pub grace_period_secs: u64,
    /// Capacity of the record channel (records waiting for consumers). Default 65536.
    pub record_queue: usize,
    /// The `/v1/*` paths other than the inference, model and feedback routes that pass through
    /// to the default upstream unread, as `METHOD /v1/path` (a final `/*` matches deeper
    /// paths). Anything else answers 404. Default: the read-only file listing routes.
    pub passthrough: Vec<String>,
    /// Most open connections; more are closed at accept (counted in
    /// `gatehouse_connections_closed_total{reason="over_limit"}`). Default 4096.
    pub max_connections: usize,
    /// Seconds a client gets to send a request's headers, and on HTTP/1.1 the most a kept-alive
    /// connection waits idle for the next request. Default 20.
    pub header_read_secs: u64,
    /// Seconds a request body may go without a byte before the request is refused (408).
    /// Default 30.
    pub body_idle_secs: u64,
    /// Seconds a TLS handshake may take. Default 10.
    pub tls_handshake_secs: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: "127.0.0.1:8000".into(),
            tls: None,
            max_body_bytes: 10 * 1024 * 1024,
            grace_period_secs: 30,
            record_queue: 65_536,
            passthrough: vec!["GET /v1/files".into(), "GET /v1/files/*".into()],
            max_connections: 4096,
            header_read_secs: 20,
            body_idle_secs: 30,
            tls_handshake_secs: 10,
        }
    }
}

/// PEM files for TLS termination on the proxy listener.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The admin listener: `/health`, `/metrics` and the admin API. Separate from the proxy.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on. Default `127.0.0.1:8001`.
    pub listen: String,
    /// Bearer token for every admin route but `/health`. Required when `listen` is not loopback.
    /// Set it with `GATEHOUSE_ADMIN__TOKEN`; `token_file` reads it from a file instead.
    #[serde(skip_serializing)]
    pub token: Option<Secret>,
    /// File holding the admin token (e.g. a mounted Kubernetes secret).
    pub token_file: Option<PathBuf>,
    /// Serve `/metrics` without the token, for scrapers that cannot send one. Default false.
    pub public_metrics: bool,
    /// Most open connections on the admin listener (dashboards, scrapers, API clients); more
    /// are closed at accept. Default 256.
    pub max_connections: usize,
    /// Seconds a client gets to send a request's headers, and on HTTP/1.1 the most a kept-alive
    /// connection waits idle for the next request. Default 20.
    pub header_read_secs: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:8001".into(),
            token: None,
            token_file: None,
            public_metrics: false,
            max_connections: 256,
            header_read_secs: 20,
        }
    }
}

/// How clients authenticate to the proxy.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `keys` (default): gateway keys below; with no keys, only a loopback listener may start.
    /// `passthrough`: the client's own `Authorization` goes upstream unchanged.
    /// `open`: anyone who reaches the listener spends the operator's upstream credit (warned).
    pub mode: AuthMode,
    /// Gateway API keys, each mapped to a user id and team.
    pub keys: Vec<KeyConfig>,
    /// Seconds between two reads of the virtual keys (`/api/keys`) from the store: a key
    /// created, changed or revoked on another replica takes effect here within this time
    /// (on the replica that made the change, at once). 1..=3600, default 5.
    pub sync_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::default(),
            keys: Vec::new(),
            sync_secs: 5,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Keys,
    Passthrough,
    Open,
}

/// One gateway key. The key itself comes from an environment variable or a file, never from
/// this file.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyConfig {
    /// Environment variable holding the key.
    pub key_env: Option<String>,
    /// File holding the key (trailing whitespace ignored).
    pub key_file: Option<PathBuf>,
    /// User id recorded for requests with this key.
    pub user: String,
    /// Team recorded for requests with this key.
    pub team: Option<String>,
    /// Whether the end-user id a client sends (`X-Gatehouse-User`, `user`,
    /// `metadata.user_id`) is recorded as the end user: `ignored` (default; the key's user is
    /// recorded) or `trusted` (for a backend that serves many users through one key).
    /// Escalation applies to the key's user either way.
    pub end_users: EndUsers,
    /// Rate limits, concurrency cap and spend budget of this key. Default none.
    pub limits: LimitsConfig,
    /// The models this key may call (aliases or upstream model ids, exact names); any other
    /// model is refused with 403 `model_not_allowed`. Empty (default): every model.
    pub models: Vec<String>,
}

/// What a key does with the end-user ids its clients send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndUsers {
    #[default]
    Ignored,
    Trusted,
}

/// One named upstream: an OpenAI-compatible base URL.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL including the version path, e.g. `https://openrouter.ai/api/v1`.
    pub base_url: String,
    /// Environment variable holding the upstream API key. Default `{NAME}_API_KEY`, e.g.
    /// `OPENROUTER_API_KEY` for the upstream named `openrouter`.
    pub api_key_env: Option<String>,
    /// File holding the upstream API key (used when `api_key_env` is unset or empty).
    pub api_key_file: Option<PathBuf>,
    /// Extra headers sent on every request, e.g. OpenRouter's `HTTP-Referer` and `X-Title`.
    pub headers: BTreeMap<String, String>,
    pub timeouts: TimeoutsConfig,
    /// Retries after the first attempt on connect errors, 429 and 5xx. Default 2.
    pub retries: u32,
    /// First retry back-off in milliseconds, doubled each retry with jitter. Default 200.
    pub backoff_ms: u64,
    /// Upstreams to try, in order, when this one keeps failing. Default none.
    pub fallbacks: Vec<String>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            base_url: String::new(),
            api_key_env: None,
            api_key_file: None,
            headers: BTreeMap::new(),
            timeouts: TimeoutsConfig::default(),
            retries: 2,
            backoff_ms: 200,
            fallbacks: Vec::new(),
        }
    }
}

/// Upstream timeouts, in seconds.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// TCP + TLS connect. Default 5.
    pub connect_secs: f64,
    /// From sending the request to the response headers. Default 120 (reasoning models think).
    pub first_byte_secs: f64,
    /// Longest silence between two body chunks of a response. Default 120.
    pub idle_secs: f64,
    /// Whole exchange, first byte to last. Default 600 (the OpenAI SDK's own default).
    pub total_secs: f64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            connect_secs: 5.0,
            first_byte_secs: 120.0,
            idle_secs: 120.0,
            total_secs: 600.0,
        }
    }
}

/// Model aliases and routing of model names to upstreams.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// Alias → upstream model. The alias is what clients send; the body is rewritten to `model`.
    pub aliases: BTreeMap<String, AliasConfig>,
    /// Model-name prefixes routed to an upstream, longest prefix first.
    pub routes: Vec<RouteConfig>,
    /// Upstream for models that are neither aliases nor routed. None: such models get 404.
    pub default_upstream: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AliasConfig {
    /// Upstream model id sent in the body.
    pub model: String,
    /// Upstream to use. Default: the route for `model`, else `default_upstream`.
    pub upstream: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// Model-name prefix, e.g. `openai/`; an exact name also works.
    pub prefix: String,
    pub upstream: String,
}

/// Threat detection.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// Scan requests at all. Default true.
    pub enabled: bool,
    /// Directory of policy files (one YAML file per family) and the learned model.
    /// Default `policies`.
    pub policies: PathBuf,
    /// Record verdicts but never block. Default false.
    pub shadow: bool,
    /// Scores at which each risk level starts. Default the seed's 3, 7, 12, 20.
    pub thresholds: ThresholdsConfig,
    /// Action per risk level: allow, flag, block or alert. Default: allow none and low, flag
    /// medium and high, block critical.
    pub actions: ActionsConfig,
    /// Other actions for some endpoints or teams, first match wins.
    pub overrides: Vec<OverrideConfig>,
    /// HTTP status of a blocked request. Default 403.
    pub block_status: u16,
    /// Per-user behaviour: repeat offenders are blocked for a cool-down.
    pub behaviour: BehaviourSection,
    /// Scanning of answers for leaked secrets and canaries (off by default; free when off).
    pub responses: ResponseScanConfig,
    /// MiB of per-message scan results kept for messages sent again (the conversation history
    /// and system prompt that clients resend on every turn); 0 turns the cache off. Default 16.
    pub segment_cache_mb: usize,
    /// The optional judge: a guard model's second opinion on uncertain verdicts (off by
    /// default).
    pub judge: JudgeConfig,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            enabled: true,
            policies: PathBuf::from("policies"),
            shadow: false,
            thresholds: ThresholdsConfig::default(),
            actions: ActionsConfig::default(),
            overrides: Vec::new(),
            block_status: 403,
            behaviour: BehaviourSection::default(),
            responses: ResponseScanConfig::default(),
            segment_cache_mb: crate::detect::DEFAULT_SEGMENT_CACHE_MB,
            judge: JudgeConfig::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ThresholdsConfig {
    pub low: f32,
    pub medium: f32,
    pub high: f32,
    pub critical: f32,
}

impl Default for ThresholdsConfig {
    fn default() -> Self {
        ThresholdsConfig {
            low: 3.0,
            medium: 7.0,
            high: 12.0,
            critical: 20.0,
        }
    }
}

/// An action name: `allow`, `flag`, `block` or `alert`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ActionName {
    Allow,
    Flag,
    Block,
    Alert,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ActionsConfig {
    pub none: ActionName,
    pub low: ActionName,
    pub medium: ActionName,
    pub high: ActionName,
    pub critical: ActionName,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        ActionsConfig {
            none: ActionName::Allow,
            low: ActionName::Allow,
            medium: ActionName::Flag,
            high: ActionName::Flag,
            critical: ActionName::Block,
        }
    }
}

/// Actions for requests to some endpoints or from some teams.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverrideConfig {
    /// Endpoints this applies to (`chat_completions`, `completions`, `embeddings`,
    /// `responses`, `generate`); empty means all.
    pub endpoints: Vec<String>,
    /// Teams (from gateway keys) this applies to; empty means all.
    pub teams: Vec<String>,
    pub actions: ActionsConfig,
    /// Shadow mode for these requests.
    pub shadow: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BehaviourSection {
    /// Track users at all. Default true.
    pub enabled: bool,
    /// Window in which high-risk requests are counted, seconds. Default 600.
    pub window_secs: u64,
    /// High or critical requests within the window that get a user blocked. Default 5.
    pub high_risk_limit: u32,
    /// How long such a user stays blocked, seconds. Default 900.
    pub cooldown_secs: u64,
    /// Users tracked at once (least recently seen evicted). Default 100000.
    pub max_users: usize,
}

impl Default for BehaviourSection {
    fn default() -> Self {
        BehaviourSection {
            enabled: true,
            window_secs: 600,
            high_risk_limit: 5,
            cooldown_secs: 900,
            max_users: 100_000,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseScanConfig {
    /// Scan answers (streamed and plain) for secrets and canaries. Default false.
    pub enabled: bool,
    /// Canary strings planted in system prompts; seeing one in an answer means the system
    /// prompt leaked.
    pub canaries: Vec<String>,
}

/// With no file gatehouse runs on one `openrouter` upstream keyed by `OPENROUTER_API_KEY`, with
/// every model routed to it.
impl Default for Config {
    fn default() -> Self {
        let openrouter = UpstreamConfig {
            base_url: "https://openrouter.ai/api/v1".into(),
            ..UpstreamConfig::default()
        };
        Config {
            proxy: ProxyConfig::default(),
            admin: AdminConfig::default(),
            auth: AuthConfig::default(),
            upstreams: BTreeMap::from([("openrouter".to_owned(), openrouter)]),
            models: ModelsConfig {
                default_upstream: Some("openrouter".into()),
                ..ModelsConfig::default()
            },
            store: StoreConfig::default(),
            detect: DetectConfig::default(),
            traces: TracesConfig::default(),
            alerts: AlertsConfig::default(),
            prices: PathBuf::from("policies/prices.yaml"),
            report: ReportConfig::default(),
            quotas: QuotasConfig::default(),
            instance: None,
        }
    }
}

impl Config {
    /// This replica's name: `instance`, else the host name (`HOSTNAME`, then the kernel's), else
    /// `gatehouse`.
    pub fn instance_name(&self) -> String {
        self.instance
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "gatehouse".to_owned())
    }
}

impl UpstreamConfig {
    /// The environment variable the API key is read from: `api_key_env`, else `{NAME}_API_KEY`
    /// (so `openrouter` reads `OPENROUTER_API_KEY`, `openai` reads `OPENAI_API_KEY`).
    pub fn key_env(&self, name: &str) -> String {
        match &self.api_key_env {
            Some(v) => v.clone(),
            None => format!("{}_API_KEY", name.to_ascii_uppercase().replace('-', "_")),
        }
    }
}
