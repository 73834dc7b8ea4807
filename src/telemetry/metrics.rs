//! The Prometheus registry: every metric name, its help text and labels, described once here.
//! Call sites never spell a name; they call the methods below.
//!
//! Fed from finished records by `observe` (a consumer task, off the hot path), plus a few
//! handles the proxy and the store touch directly (in-flight guard, drops, reloads, flushes).
//!
//! Crate choice: `prometheus-client` (the official Rust client) encodes OpenMetrics 1.0; the
//! 0.0.4 text format Prometheus asks for by default is derived from it in `text.rs` (counter
//! metadata renamed to the sample name, `# EOF` and `# UNIT` dropped) and checked by a
//! parser in the tests. The `prometheus` crate would give 0.0.4 only, and the reverse rewrite.
//!
//! Cardinality: `model` is one of the models given to `Metrics::new` (configured aliases and
//! known upstream ids), else `other` (or `none` when the request named no model); `upstream` is
//! a configured upstream name; every other label comes from a closed enum in code. Never users.
//!
//! `model_performance_score` (gauge, 0..=1, per model) is set from
//! `analytics::quality::model_scores`: `0.5·(1 − error rate) + 0.3·2s/(2s + mean latency) +
//! 0.2·mean feedback`, re-weighted without the feedback term when a model has no feedback.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::event::Exchange;

// Registered names. Counters are exposed with a `_total` suffix added by the encoder.
pub const INFERENCE_REQUESTS: &str = "inference_requests";
pub const INFERENCE_LATENCY_SECONDS: &str = "inference_latency_seconds";
pub const SECURITY_THREATS: &str = "security_threats";
pub const MODEL_PERFORMANCE_SCORE: &str = "model_performance_score";
pub const TIME_TO_FIRST_TOKEN_SECONDS: &str = "gatehouse_time_to_first_token_seconds";
pub const INPUT_TOKENS: &str = "gatehouse_input_tokens";
pub const OUTPUT_TOKENS: &str = "gatehouse_output_tokens";
pub const COST_USD: &str = "gatehouse_cost_usd";
pub const UPSTREAM_ERRORS: &str = "gatehouse_upstream_errors";
pub const REQUESTS_IN_FLIGHT: &str = "gatehouse_requests_in_flight";
pub const BLOCKED_REQUESTS: &str = "gatehouse_blocked_requests";
pub const RECORDS_DROPPED: &str = "gatehouse_records_dropped";
pub const STORE_QUEUE_DEPTH: &str = "gatehouse_store_queue_depth";
pub const STORE_WRITE_SECONDS: &str = "gatehouse_store_write_seconds";
pub const STORE_RECORDS: &str = "gatehouse_store_records";
pub const STORE_FAILING: &str = "gatehouse_store_failing";
pub const STORE_RETRY_RECORDS: &str = "gatehouse_store_retry_records";
pub const CONFIG_RELOAD_SUCCESS: &str = "gatehouse_config_reload_success";
pub const CONFIG_RELOADS: &str = "gatehouse_config_reloads";
pub const TRACES_EXPORTED: &str = "gatehouse_traces_exported";
pub const TRACES_FAILED: &str = "gatehouse_traces_failed";
pub const TRACES_DROPPED: &str = "gatehouse_traces_dropped";
pub const TRACES_QUEUE_DEPTH: &str = "gatehouse_traces_queue_depth";
pub const JUDGE_REQUESTS: &str = "gatehouse_judge_requests";
pub const JUDGE_DURATION_SECONDS: &str = "gatehouse_judge_duration_seconds";

const INFERENCE_REQUESTS_HELP: &str =
    "Finished requests by model, endpoint, outcome and HTTP status";
const INFERENCE_LATENCY_SECONDS_HELP: &str =
    "End-to-end latency at the gateway, arrival to last byte";
const SECURITY_THREATS_HELP: &str = "Requests with a detected threat, per category found";
const MODEL_PERFORMANCE_SCORE_HELP: &str =
    "0..1: 0.5 availability + 0.3 speed (2s/(2s+mean latency)) + 0.2 mean feedback";

/// The seed's four metrics, described on every scrape even before they have a series (the
/// registry leaves a family without series out): name, OpenMetrics type, help.
const SEED_METRICS: [(&str, &str, &str); 4] = [
    (INFERENCE_REQUESTS, "counter", INFERENCE_REQUESTS_HELP),
    (
        INFERENCE_LATENCY_SECONDS,
        "histogram",
        INFERENCE_LATENCY_SECONDS_HELP,
    ),
    (SECURITY_THREATS, "counter", SECURITY_THREATS_HELP),
    (
        MODEL_PERFORMANCE_SCORE,
        "gauge",
        MODEL_PERFORMANCE_SCORE_HELP,
    ),
];
pub const CONNECTIONS_OPEN: &str = "gatehouse_connections_open";
pub const CLIENT_ERRORS: &str = "gatehouse_client_errors";
pub const RATELIMIT_REJECTED: &str = "gatehouse_ratelimit_rejected";
pub const CONNECTIONS_CLOSED: &str = "gatehouse_connections_closed";

/// `Content-Type` of the 0.0.4 text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `Content-Type` of OpenMetrics 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// End-to-end latency buckets, seconds (long generations need the top end).
const LATENCY_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
const TTFT_BUCKETS: [f64; 13] = [
    0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
];
/// Judge call buckets, seconds: a guard model answers in tens to hundreds of milliseconds, and
/// the budget (`detect.judge.timeout_ms`) is at most 30 s.
const JUDGE_BUCKETS: [f64; 12] = [
    0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 30.0,
];
const STORE_WRITE_BUCKETS: [f64; 10] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    model: String,
    endpoint: &'static str,
    outcome: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    model: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThreatLabels {
    category: &'static str,
    level: &'static str,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    upstream: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    consumer: &'static str,
}

/// A trace backend: `langfuse` or a configured OTLP name (bounded by the config).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    listener: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    scope: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

fn backend_label(backend: &str) -> BackendLabels {
    BackendLabels {
        backend: backend.to_owned(),
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn ttft_histogram() -> Histogram {
    Histogram::new(TTFT_BUCKETS)
}

/// The store writer's health, read back from the metrics (see [`Metrics::store_health`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreHealth {
    /// Writes are failing now.
    pub failing: bool,
    /// Records waiting in the retry buffer.
    pub buffered: u64,
    /// Records given up since start.
    pub dropped: u64,
}

/// The gateway's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    models: HashSet<String>,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<LatencyLabels>,
    threats: Family<ThreatLabels, Counter>,
    score: Family<ModelLabels, Gauge<f64, AtomicU64>>,
    ttft: HistogramFamily<ModelLabels>,
    input_tokens: Family<ModelLabels, Counter>,
    output_tokens: Family<ModelLabels, Counter>,
    cost: Family<ModelLabels, Counter<f64, AtomicU64>>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    in_flight: Gauge,
    blocked: Family<ModelLabels, Counter>,
    dropped: Family<ConsumerLabels, Counter>,
    queue_depth: Gauge,
    store_write: Histogram,
    store_records: Family<ResultLabels, Counter>,
    store_failing: Gauge,
    store_retry: Gauge,
    reload_success: Gauge,
    reloads: Family<ResultLabels, Counter>,
    traces_exported: Family<BackendLabels, Counter>,
    traces_failed: Family<BackendLabels, Counter>,
    traces_dropped: Family<BackendLabels, Counter>,
    traces_queue: Family<BackendLabels, Gauge>,
    connections_open: Family<ListenerLabels, Gauge>,
    connections_closed: Family<ReasonLabels, Counter>,
    client_errors: Family<KindLabels, Counter>,
    ratelimit_rejected: Family<LimitLabels, Counter>,
    judge_requests: Family<OutcomeLabels, Counter>,
    judge_duration: Histogram,
    segment_cache: Arc<scrape::SegmentCache>,
    budgets: Arc<budgets::Budgets>,
}

mod budgets;
mod observe;
mod register;
mod scrape;

pub use budgets::{BudgetGauge, BudgetsFn, BUDGET_REMAINING_USD, BUDGET_USED_RATIO};
pub use observe::InFlight;
pub use scrape::{CacheStatsFn, SEGMENT_CACHE_LOOKUPS};

impl Metrics {
    /// A registry with every metric registered (label-less series start at 0). `models` is the
    /// allowed `model` label set; anything else is reported as `other`.
    pub fn new(models: impl IntoIterator<Item = String>) -> Metrics {
        register::build(models.into_iter().collect())
    }

    /// The exposition body and its `Content-Type`: OpenMetrics 1.0 when `openmetrics`, else the
    /// 0.0.4 text format.
    pub fn render(&self, openmetrics: bool) -> (&'static str, String) {
        let mut om = String::with_capacity(16 * 1024);
        if prometheus_client::encoding::text::encode(&mut om, &self.registry).is_err() {
            // Encoding into a String only fails on a label encoder bug; expose what we have.
            tracing::warn!("metrics encoding failed");
        }
        describe_seed_metrics(&mut om);
        if openmetrics {
            (OPENMETRICS_CONTENT_TYPE, om)
        } else {
            (TEXT_CONTENT_TYPE, super::text::from_openmetrics(&om))
        }
    }

    /// Whether an `Accept` header prefers OpenMetrics over the text format (q-values honoured;
    /// ties go to OpenMetrics, as Prometheus lists it first).
    pub fn wants_openmetrics(accept: &str) -> bool {
        let q_of = |media: &str| {
            accept
                .split(',')
                .filter(|part| part.trim_start().starts_with(media))
                .map(|part| {
                    part.split(';')
                        .filter_map(|p| p.trim().strip_prefix("q="))
                        .find_map(|q| q.parse::<f64>().ok())
                        .unwrap_or(1.0)
                })
                .fold(0.0f64, f64::max)
        };
        let om = q_of("application/openmetrics-text");
        om > 0.0 && om >= q_of("text/plain")
    }

    /// Reports the detector's segment cache from `f` at every scrape (set once, at wiring).
    pub fn watch_segment_cache(&self, f: CacheStatsFn) {
        self.segment_cache.set(f);
    }

    /// Reports the labelled spend budgets from `f` at every scrape (set once, at wiring).
    pub fn watch_budgets(&self, f: BudgetsFn) {
        self.budgets.set(f);
    }

    /// Observes one store write attempt: the write histogram, the queue gauge and, when it
    /// committed, `records` as `written`. A failed attempt counts nothing here: its records are
    /// counted once, as `failed`, by [`Metrics::store_trouble`] (a retried record would
    /// otherwise count once per attempt).
    pub fn store_flush(&self, records: usize, elapsed: Duration, queue_depth: usize, ok: bool) {
        self.queue_depth
            .set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
        self.store_write.observe(elapsed.as_secs_f64());
        if ok {
            self.store_records
                .get_or_create(&ResultLabels { result: "written" })
                .inc_by(records as u64);
        }
    }

    /// Counts records the store could not write (`failed`: each once; `dropped`: given up,
    /// also counted in `gatehouse_records_dropped_total{consumer="store"}`) and sets the
    /// store's health gauges: records waiting in its retry buffer, and whether it is failing.
    pub fn store_trouble(&self, failed: usize, dropped: usize, buffered: usize, failing: bool) {
        for (result, n) in [("failed", failed), ("dropped", dropped)] {
            if n > 0 {
                self.store_records
                    .get_or_create(&ResultLabels { result })
                    .inc_by(n as u64);
            }
        }
        if dropped > 0 {
            self.dropped
                .get_or_create(&ConsumerLabels { consumer: "store" })
                .inc_by(dropped as u64);
        }
        self.store_retry
            .set(i64::try_from(buffered).unwrap_or(i64::MAX));
        self.store_failing.set(i64::from(failing));
    }

    /// The store's health as the gauges and counters above last saw it (for `/ready`).
    pub fn store_health(&self) -> StoreHealth {
        let dropped = self
            .store_records
            .get_or_create(&ResultLabels { result: "dropped" })
            .get();
        StoreHealth {
            failing: self.store_failing.get() != 0,
            buffered: u64::try_from(self.store_retry.get()).unwrap_or(0),
            dropped,
        }
    }

    /// Counts a record a consumer's full channel dropped.
    /// A connection on `listener` (`proxy` or `admin`) opened (`true`) or ended (`false`).
    pub fn connection(&self, listener: &'static str, open: bool) {
        let gauge = self
            .connections_open
            .get_or_create(&ListenerLabels { listener });
        if open {
            gauge.inc();
        } else {
            gauge.dec();
        }
    }

    /// A connection gatehouse closed itself: `over_limit` (refused at accept, the listener is
    /// at its `max_connections`), `header_timeout` or `tls_timeout`.
    pub fn connection_closed(&self, listener: &'static str, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ReasonLabels { listener, reason })
            .inc();
    }

    /// Counts a request a quota refused: `scope` is key, user, team, model or global, `reason`
    /// requests, tokens, concurrent or budget (never a key or user id). Counted where the
    /// request is refused, so it is visible before the record is.
    pub fn ratelimit_rejected(&self, scope: &'static str, reason: &'static str) {
        self.ratelimit_rejected
            .get_or_create(&LimitLabels { scope, reason })
            .inc();
    }

    pub fn record_dropped(&self, consumer: &'static str) {
        self.dropped
            .get_or_create(&ConsumerLabels { consumer })
            .inc();
    }

    /// Records the outcome of a config reload (gauge 1/0 plus a counter per result).
    pub fn config_reload(&self, success: bool) {
        self.reload_success.set(i64::from(success));
        let result = if success { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Counts spans a trace backend accepted.
    pub fn traces_exported(&self, backend: &str, spans: u64) {
        self.traces_exported
            .get_or_create(&backend_label(backend))
            .inc_by(spans);
    }

    /// Counts spans a trace backend refused or never took (retries spent).
    pub fn traces_failed(&self, backend: &str, spans: u64) {
        self.traces_failed
            .get_or_create(&backend_label(backend))
            .inc_by(spans);
    }

    /// Counts spans dropped because a backend's queue was full.
    pub fn traces_dropped(&self, backend: &str, spans: u64) {
        self.traces_dropped
            .get_or_create(&backend_label(backend))
            .inc_by(spans);
    }

    /// Sets how many spans wait for a backend.
    pub fn traces_queue_depth(&self, backend: &str, depth: usize) {
        self.traces_queue
            .get_or_create(&backend_label(backend))
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// Sets `model_performance_score` for a model (see the module doc for the formula).
    pub fn set_model_score(&self, model: &str, score: f64) {
        let model = self.model_label(Some(model), None);
        self.score.get_or_create(&ModelLabels { model }).set(score);
    }

    /// The bounded `model` label: an allowed model, else `other`, or `none`.
    fn model_label(&self, upstream_model: Option<&str>, model: Option<&str>) -> String {
        match (upstream_model, model) {
            (None, None) => "none".into(),
            (u, m) => [u, m]
                .into_iter()
                .flatten()
                .find(|name| self.models.contains(*name))
                .unwrap_or("other")
                .to_owned(),
        }
    }

    fn ex_model(&self, ex: &Exchange) -> String {
        self.model_label(ex.upstream_model.as_deref(), ex.model.as_deref())
    }
}

/// Adds `# HELP`/`# TYPE` for each seed metric the registry left out (no series yet), before
/// OpenMetrics' `# EOF`, with the registry's own help text (it ends help with a period).
fn describe_seed_metrics(om: &mut String) {
    let missing: String = SEED_METRICS
        .iter()
        .filter(|(name, _, _)| !om.contains(&format!("# TYPE {name} ")))
        .map(|(name, kind, help)| format!("# HELP {name} {help}.\n# TYPE {name} {kind}\n"))
        .collect();
    if missing.is_empty() {
        return;
    }
    match om.rfind("# EOF") {
        Some(at) => om.insert_str(at, &missing),
        None => om.push_str(&missing),
    }
}
