//! Config section for trace export (serde shapes only; the runtime objects are built by
//! `telemetry::otel`). One OTLP/HTTP exporter serves Langfuse and any other OpenTelemetry
//! backend; each backend gets its own queue, so one that is down never holds up another.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Traces: one trace with one generation span per request, exported over OTLP/HTTP.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TracesConfig {
    /// Langfuse, through its OpenTelemetry endpoint.
    pub langfuse: LangfuseConfig,
    /// Other OTLP/HTTP collectors (Jaeger, Tempo, an OpenTelemetry Collector...). Default none.
    pub otlp: Vec<OtlpConfig>,
    /// What of the prompt and the answer leaves the process: `off` (nothing), `metadata`
    /// (sizes only) or `full` (the text, redacted and capped). Default `metadata`.
    pub capture: TraceCapture,
    /// Bytes of prompt or answer text sent per span at most, in `full` mode. Default 8192.
    pub max_bytes: usize,
    /// Mask secrets and e-mail addresses in captured text before it is sent. Default true.
    pub redact: bool,
    /// Spans per export request at most. Default 256.
    pub batch: usize,
    /// Milliseconds a partial batch may wait before it is sent. Default 1000.
    pub flush_ms: u64,
    /// Spans waiting per backend at most; beyond that new spans are dropped and counted in
    /// `gatehouse_traces_dropped_total`. Default 8192.
    pub queue: usize,
    /// Retries of one batch after the first attempt, on 429, 5xx and network errors, before the
    /// batch is dropped and counted as failed. Default 5.
    pub retries: u32,
    /// First retry back-off in milliseconds, doubled each retry (capped at 30 s) with jitter;
    /// a `Retry-After` up to 30 s is honoured. Default 500.
    pub backoff_ms: u64,
    /// Timeout of one export request, seconds. Default 10.
    pub timeout_secs: u64,
    /// `service.name` of the exported resource. Default `gatehouse`.
    pub service_name: String,
    /// Deployment environment (`deployment.environment.name`, Langfuse's environment), e.g.
    /// `production`: lowercase letters, digits, `-` and `_`. Default none.
    pub environment: Option<String>,
}

impl Default for TracesConfig {
    fn default() -> Self {
        TracesConfig {
            langfuse: LangfuseConfig::default(),
            otlp: Vec::new(),
            capture: TraceCapture::Metadata,
            max_bytes: 8192,
            redact: true,
            batch: 256,
            flush_ms: 1000,
            queue: 8192,
            retries: 5,
            backoff_ms: 500,
            timeout_secs: 10,
            service_name: "gatehouse".into(),
            environment: None,
        }
    }
}

/// How much of the prompt and answer a span carries.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TraceCapture {
    /// No text and no sizes.
    Off,
    /// Character and byte counts only, never text.
    #[default]
    Metadata,
    /// The request's messages and the answer text, redacted and capped at `max_bytes`.
    Full,
}

/// Langfuse (`{host}/api/public/otel/v1/traces`, Basic auth from the project's key pair).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LangfuseConfig {
    /// `true`: export, and refuse to start without keys. `false`: never. Absent (default): on
    /// exactly when both keys are set.
    pub enabled: Option<bool>,
    /// Base URL. Default: `LANGFUSE_HOST` when set, else `https://cloud.langfuse.com`.
    pub host: Option<String>,
    /// Environment variable holding the public key. Default `LANGFUSE_PUBLIC_KEY`.
    pub public_key_env: String,
    /// Environment variable holding the secret key. Default `LANGFUSE_SECRET_KEY`.
    pub secret_key_env: String,
    /// Files holding the keys instead (e.g. mounted secrets); used when set.
    pub public_key_file: Option<PathBuf>,
    pub secret_key_file: Option<PathBuf>,
}

impl Default for LangfuseConfig {
    fn default() -> Self {
        LangfuseConfig {
            enabled: None,
            host: None,
            public_key_env: "LANGFUSE_PUBLIC_KEY".into(),
            secret_key_env: "LANGFUSE_SECRET_KEY".into(),
            public_key_file: None,
            secret_key_file: None,
        }
    }
}

/// One OTLP/HTTP collector.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Name used in logs and as the `backend` metric label, e.g. `tempo`. Required, unique.
    pub name: String,
    /// The traces URL, used verbatim, e.g. `http://127.0.0.1:4318/v1/traces`. Required.
    pub endpoint: String,
    /// Plain headers sent with every export (no secrets here).
    pub headers: BTreeMap<String, String>,
    /// Headers whose value is read from an environment variable: header name → variable name,
    /// e.g. `authorization: OTLP_AUTH`.
    pub headers_env: BTreeMap<String, String>,
}

fn http_url(s: &str) -> bool {
    s.parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
}

/// Every problem of the `traces` section (called by `validate`).
pub(super) fn check(t: &TracesConfig, p: &mut Vec<String>) {
    for (field, v) in [
        ("max_bytes", t.max_bytes as u64),
        ("batch", t.batch as u64),
        ("flush_ms", t.flush_ms),
        ("queue", t.queue as u64),
        ("timeout_secs", t.timeout_secs),
    ] {
        if v == 0 {
            p.push(format!("traces.{field} must be greater than 0"));
        }
    }
    if let Some(host) = t.langfuse.host.as_deref().filter(|h| !http_url(h)) {
        p.push(format!(
            "traces.langfuse.host: {host:?} is not an http(s) URL"
        ));
    }
    if let Some(env) = t.environment.as_deref() {
        let ok = !env.is_empty()
            && env.len() <= 40
            && !env.starts_with("langfuse")
            && env
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            p.push(format!(
                "traces.environment: {env:?} must be 1-40 of a-z, 0-9, - and _, not starting with \"langfuse\""
            ));
        }
    }
    let mut names = std::collections::HashSet::from(["langfuse"]);
    for (i, o) in t.otlp.iter().enumerate() {
        if o.name.trim().is_empty() || !names.insert(o.name.as_str()) {
            p.push(format!(
                "traces.otlp[{i}].name must be set and unique (and not \"langfuse\")"
            ));
        }
        if !http_url(&o.endpoint) {
            p.push(format!(
                "traces.otlp[{i}].endpoint: {:?} is not an http(s) URL",
                o.endpoint
            ));
        }
        for h in o.headers.keys().chain(o.headers_env.keys()) {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                p.push(format!(
                    "traces.otlp[{i}].headers: {h:?} is not a valid header name"
                ));
            }
        }
    }
}
