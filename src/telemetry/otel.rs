//! Trace export: every finished request becomes one trace with one generation span, sent over
//! OTLP/HTTP (protobuf, gzip) to Langfuse's OpenTelemetry endpoint and to any configured OTLP
//! collector, each backend on its own bounded queue.
//!
//! Owns: span mapping (`span.rs`), the wire (`send.rs`), the `gatehouse check` probe
//! (`check.rs`), and the batching/retry loop here. Does not own the record stream: `app` hands it
//! a receiver from the fan-out, so a slow exporter drops records there (counted per consumer)
//! and never waits on the proxy.
//!
//! Trade-offs: spans are built from finished records, not with the OpenTelemetry SDK's tracer
//! (one span per request needs no context propagation, and the SDK's batch processor would hide
//! the failures this module must count). A backend that stays down loses the batches whose
//! retries run out (`gatehouse_traces_failed_total`) and, while it retries, the spans that do
//! not fit its queue (`gatehouse_traces_dropped_total`). 401/403 are logged once per failure
//! streak, at ERROR: an operator must fix the keys.

mod check;
mod send;
mod span;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use opentelemetry_proto::tonic::trace::v1::Span;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::mpsc;

pub use check::{check, Check};
pub use send::{Backend, Source};
pub use span::{ids, level, span, Content};

use crate::config::{Problems, SecretSource, TracesConfig};
use crate::event::Exchange;
use crate::telemetry::metrics::Metrics;

/// Langfuse Cloud (EU), the default host.
pub const LANGFUSE_CLOUD: &str = "https://cloud.langfuse.com";
/// The OTLP traces path under a Langfuse host.
const LANGFUSE_PATH: &str = "/api/public/otel/v1/traces";

/// Everything the export task needs, built from validated config.
#[derive(Clone, Debug)]
pub struct Exporter {
    pub backends: Vec<Backend>,
    pub source: Source,
    pub content: Content,
    pub batch: usize,
    pub flush: Duration,
    pub queue: usize,
    pub retries: u32,
    pub backoff: Duration,
    pub timeout: Duration,
}

impl Exporter {
    /// The configured backends, secrets read now. An empty `backends` means export is off.
    ///
    /// # Errors
    /// Keys that must be there and are not (`langfuse.enabled: true`), bad header values, an
    /// unusable `LANGFUSE_HOST`; all listed.
    pub fn build(c: &TracesConfig) -> Result<Exporter, Problems> {
        let mut problems = Vec::new();
        let mut backends = Vec::new();
        if let Some(b) = langfuse(c, &mut problems) {
            backends.push(b);
        }
        for o in &c.otlp {
            let mut headers = HeaderMap::new();
            for (k, v) in &o.headers {
                insert(&mut headers, k, v, false, &mut problems);
            }
            for (k, env) in &o.headers_env {
                match SecretSource::Env(env.clone()).read() {
                    Ok(v) => insert(&mut headers, k, v.expose(), true, &mut problems),
                    Err(e) => problems.push(format!("traces.otlp {}: {e}", o.name)),
                }
            }
            backends.push(Backend {
                name: o.name.clone(),
                url: o.endpoint.clone(),
                headers,
            });
        }
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        Ok(Exporter {
            backends,
            source: Source {
                service_name: c.service_name.clone(),
                environment: c.environment.clone(),
            },
            content: Content {
                capture: c.capture,
                max_bytes: c.max_bytes,
                redact: c.redact,
            },
            batch: c.batch.max(1),
            flush: Duration::from_millis(c.flush_ms.max(1)),
            queue: c.queue.max(1),
            retries: c.retries,
            backoff: Duration::from_millis(c.backoff_ms),
            timeout: Duration::from_secs(c.timeout_secs.max(1)),
        })
    }
}

fn insert(h: &mut HeaderMap, k: &str, v: &str, secret: bool, problems: &mut Vec<String>) {
    match (
        HeaderName::from_bytes(k.as_bytes()),
        HeaderValue::from_str(v),
    ) {
        (Ok(k), Ok(mut v)) => {
            v.set_sensitive(secret);
            h.insert(k, v);
        }
        _ => problems.push(format!("traces: header {k:?} is not valid")),
    }
}

/// The Langfuse backend, when enabled (explicitly, or by both keys being set).
fn langfuse(c: &TracesConfig, problems: &mut Vec<String>) -> Option<Backend> {
    let l = &c.langfuse;
    if l.enabled == Some(false) {
        return None;
    }
    let source = |file: &Option<std::path::PathBuf>, env: &str| match file {
        Some(f) => SecretSource::File(f.clone()),
        None => SecretSource::Env(env.to_owned()),
    };
    let public = source(&l.public_key_file, &l.public_key_env).read();
    let secret = source(&l.secret_key_file, &l.secret_key_env).read();
    let (public, secret) = match (public, secret) {
        (Ok(p), Ok(s)) => (p, s),
        (p, s) => {
            if l.enabled == Some(true) {
                for e in [p.err(), s.err()].into_iter().flatten() {
                    problems.push(format!("traces.langfuse is enabled but {e}"));
                }
            }
            return None;
        }
    };
    let host = l
        .host
        .clone()
        .or_else(|| {
            std::env::var("LANGFUSE_HOST")
                .ok()
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| LANGFUSE_CLOUD.to_owned());
    if !(host.starts_with("http://") || host.starts_with("https://")) {
        problems.push(format!(
            "traces.langfuse: host {host:?} is not an http(s) URL"
        ));
        return None;
    }
    let pair = format!("{}:{}", public.expose(), secret.expose());
    let basic = base64::engine::general_purpose::STANDARD.encode(pair);
    let mut headers = HeaderMap::new();
    insert(
        &mut headers,
        "authorization",
        &format!("Basic {basic}"),
        true,
        problems,
    );
    // Version 4 is Langfuse's real-time ingestion path for OTLP; anything above 4 is refused.
    headers.insert(
        "x-langfuse-ingestion-version",
        HeaderValue::from_static("4"),
    );
    Some(Backend {
        name: "langfuse".into(),
        url: format!("{}{LANGFUSE_PATH}", host.trim_end_matches('/')),
        headers,
    })
}

/// Consumes finished records until the channel closes, then flushes what is queued (retries
/// included; `app` bounds the wait).
pub async fn run(
    exporter: Exporter,
    client: reqwest::Client,
    mut records: mpsc::Receiver<Arc<Exchange>>,
    metrics: Arc<Metrics>,
) {
    let exporter = Arc::new(exporter);
    let mut queues = Vec::new();
    let mut senders = Vec::new();
    for b in &exporter.backends {
        let (tx, rx) = mpsc::channel::<Arc<Span>>(exporter.queue);
        queues.push((b.name.clone(), tx));
        senders.push(deliver(&exporter, &client, b, rx, &metrics));
    }
    let distribute = async {
        while let Some(ex) = records.recv().await {
            let span = Arc::new(span::span(&ex, &exporter.content));
            for (name, q) in &queues {
                if q.try_send(span.clone()).is_err() {
                    metrics.traces_dropped(name, 1);
                }
                metrics.traces_queue_depth(name, q.max_capacity() - q.capacity());
            }
        }
        // Closing the queues lets each backend flush and end.
        queues.clear();
    };
    tokio::join!(distribute, futures_util::future::join_all(senders));
}

/// Whether a backend is failing, so a failure streak is logged once, not every batch.
#[derive(Default)]
struct Health {
    failing: bool,
}

/// One backend's loop: batch by size or age, export with retries, count.
async fn deliver(
    e: &Exporter,
    client: &reqwest::Client,
    b: &Backend,
    mut rx: mpsc::Receiver<Arc<Span>>,
    metrics: &Metrics,
) {
    let mut health = Health::default();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + e.flush;
        while batch.len() < e.batch {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(s) => batch.push(s),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        metrics.traces_queue_depth(&b.name, rx.len());
        export(e, client, b, batch, metrics, &mut health).await;
    }
}

async fn export(
    e: &Exporter,
    client: &reqwest::Client,
    b: &Backend,
    batch: Vec<Arc<Span>>,
    metrics: &Metrics,
    health: &mut Health,
) {
    let n = batch.len() as u64;
    let spans = batch.into_iter().map(Arc::unwrap_or_clone).collect();
    let body = send::encode(&e.source, spans);
    let mut attempt = 0;
    loop {
        let sent = tokio::time::timeout(e.timeout, send::post(client, b, body.clone()))
            .await
            .unwrap_or_else(|_| send::Sent::Retry {
                reason: "timeout".into(),
                retry_after: None,
            });
        let (reason, retry_after) = match sent {
            send::Sent::Ok => {
                if std::mem::take(&mut health.failing) {
                    tracing::info!(backend = %b.name, "trace export recovered");
                }
                metrics.traces_exported(&b.name, n);
                return;
            }
            send::Sent::Unauthorized(code) => {
                if !std::mem::replace(&mut health.failing, true) {
                    tracing::error!(backend = %b.name, url = %b.url, status = code,
                        "trace export refused: the backend rejected the credentials (for Langfuse check LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY and LANGFUSE_HOST: keys are per project and region); traces are dropped until this is fixed");
                }
                metrics.traces_failed(&b.name, n);
                return;
            }
            send::Sent::Rejected(code, body) => {
                if !std::mem::replace(&mut health.failing, true) {
                    tracing::warn!(backend = %b.name, status = code, answer = %body,
                        "trace export rejected; the batch is dropped");
                }
                metrics.traces_failed(&b.name, n);
                return;
            }
            send::Sent::Retry {
                reason,
                retry_after,
            } => (reason, retry_after),
        };
        if attempt >= e.retries {
            tracing::warn!(backend = %b.name, spans = n, %reason,
                "trace export failed after retries; the batch is dropped");
            health.failing = true;
            metrics.traces_failed(&b.name, n);
            return;
        }
        if !std::mem::replace(&mut health.failing, true) {
            tracing::warn!(backend = %b.name, %reason, "trace export failing; retrying with back-off");
        }
        tokio::time::sleep(send::backoff(e.backoff, attempt, retry_after)).await;
        attempt += 1;
    }
}
