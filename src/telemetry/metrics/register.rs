//! Builds the registry: every metric described once, with its help text.

use std::collections::HashSet;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::*;

pub(super) fn build(models: HashSet<String>) -> Metrics {
    let m = Metrics {
        registry: Registry::default(),
        models,
        requests: Family::default(),
        latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        threats: Family::default(),
        score: Family::default(),
        ttft: Family::new_with_constructor(ttft_histogram as fn() -> Histogram),
        input_tokens: Family::default(),
        output_tokens: Family::default(),
        cost: Family::default(),
        upstream_errors: Family::default(),
        in_flight: Gauge::default(),
        blocked: Family::default(),
        dropped: Family::default(),
        queue_depth: Gauge::default(),
        store_write: Histogram::new(STORE_WRITE_BUCKETS),
        store_records: Family::default(),
        store_failing: Gauge::default(),
        store_retry: Gauge::default(),
        reload_success: Gauge::default(),
        reloads: Family::default(),
        traces_exported: Family::default(),
        traces_failed: Family::default(),
        traces_dropped: Family::default(),
        traces_queue: Family::default(),
        connections_open: Family::default(),
        connections_closed: Family::default(),
        client_errors: Family::default(),
        ratelimit_rejected: Family::default(),
        judge_requests: Family::default(),
        judge_duration: Histogram::new(JUDGE_BUCKETS),
        segment_cache: Arc::default(),
        budgets: Arc::default(),
    };
    // A fresh process has loaded its config successfully.
    m.reload_success.set(1);
    register(m)
}

fn register(mut m: Metrics) -> Metrics {
    let r = &mut m.registry;
    r.register(
        INFERENCE_REQUESTS,
        INFERENCE_REQUESTS_HELP,
        m.requests.clone(),
    );
    r.register(
        RATELIMIT_REJECTED,
        "Requests refused by a quota (429), by scope (key, user, team, model, global) and reason (requests, tokens, concurrent, budget)",
        m.ratelimit_rejected.clone(),
    );
    r.register(
        CONNECTIONS_OPEN,
        "Open connections, by listener (proxy, admin)",
        m.connections_open.clone(),
    );
    r.register(
        CONNECTIONS_CLOSED,
        "Connections gatehouse closed itself, by listener and reason (over_limit, header_timeout, tls_timeout)",
        m.connections_closed.clone(),
    );
    r.register(
        CLIENT_ERRORS,
        "Requests refused or failed through the client's own fault (bad input, wrong key or path, an upstream 4xx to a client mistake), by kind; not in error rates",
        m.client_errors.clone(),
    );
    r.register(
        INFERENCE_LATENCY_SECONDS,
        INFERENCE_LATENCY_SECONDS_HELP,
        m.latency.clone(),
    );
    r.register(SECURITY_THREATS, SECURITY_THREATS_HELP, m.threats.clone());
    r.register(
        MODEL_PERFORMANCE_SCORE,
        MODEL_PERFORMANCE_SCORE_HELP,
        m.score.clone(),
    );
    r.register(
        TIME_TO_FIRST_TOKEN_SECONDS,
        "Arrival to first content token (streams) or body",
        m.ttft.clone(),
    );
    r.register(
        INPUT_TOKENS,
        "Prompt tokens reported by the upstream, cached included",
        m.input_tokens.clone(),
    );
    r.register(
        OUTPUT_TOKENS,
        "Completion tokens reported by the upstream, reasoning included",
        m.output_tokens.clone(),
    );
    r.register(
        COST_USD,
        "Cost in USD: the upstream's figure, else the price table's",
        m.cost.clone(),
    );
    r.register(
        UPSTREAM_ERRORS,
        "Requests that failed upstream, by upstream and error kind",
        m.upstream_errors.clone(),
    );
    r.register(
        REQUESTS_IN_FLIGHT,
        "Requests accepted and not yet finished",
        m.in_flight.clone(),
    );
    r.register(
        BLOCKED_REQUESTS,
        "Requests blocked by the detector",
        m.blocked.clone(),
    );
    r.register(
        RECORDS_DROPPED,
        "Exchange records dropped because a consumer's queue (or the store's retry buffer) was full",
        m.dropped.clone(),
    );
    r.register(
        STORE_QUEUE_DEPTH,
        "Records waiting for the store writer after its last commit",
        m.queue_depth.clone(),
    );
    r.register(
        STORE_WRITE_SECONDS,
        "Time to commit one store batch",
        m.store_write.clone(),
    );
    r.register(
        STORE_RECORDS,
        "Records the store writer committed (written), could not write at first (failed: each once, then kept for retry or dropped) or gave up (dropped)",
        m.store_records.clone(),
    );
    r.register(
        STORE_FAILING,
        "1 while store writes fail (disk full, database down), else 0",
        m.store_failing.clone(),
    );
    r.register(
        STORE_RETRY_RECORDS,
        "Records waiting in the store writer's retry buffer",
        m.store_retry.clone(),
    );
    r.register(
        CONFIG_RELOAD_SUCCESS,
        "1 if the last config reload succeeded, else 0",
        m.reload_success.clone(),
    );
    r.register(
        CONFIG_RELOADS,
        "Config reloads by result",
        m.reloads.clone(),
    );
    r.register(
        TRACES_EXPORTED,
        "Spans a trace backend accepted",
        m.traces_exported.clone(),
    );
    r.register(
        TRACES_FAILED,
        "Spans a trace backend refused, or whose export retries ran out",
        m.traces_failed.clone(),
    );
    r.register(
        TRACES_DROPPED,
        "Spans dropped because the backend's queue was full",
        m.traces_dropped.clone(),
    );
    r.register(
        TRACES_QUEUE_DEPTH,
        "Spans waiting to be exported, per backend",
        m.traces_queue.clone(),
    );
    r.register(
        JUDGE_REQUESTS,
        "Second opinions asked of the judge (detect.judge) on uncertain verdicts, by outcome (safe, unsafe, error, timeout)",
        m.judge_requests.clone(),
    );
    r.register(
        JUDGE_DURATION_SECONDS,
        "Time a judge call took, from sending the question to the answer or to giving up",
        m.judge_duration.clone(),
    );
    r.register_collector(Box::new(m.segment_cache.clone()));
    r.register_collector(Box::new(m.budgets.clone()));
    m
}
