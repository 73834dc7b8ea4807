//! One export request: spans → `ExportTraceServiceRequest` (prost) → gzip → POST, and what the
//! answer means: sent, retry later, or give up on this batch.
//!
//! Per the OTLP spec (and Langfuse): retry 429, 502, 503, 504 (any 5xx here) and network errors,
//! honouring `Retry-After`; never retry other 4xx. Langfuse answers 200 with a JSON body even to
//! protobuf requests, so any 2xx is success and the body is not decoded.

use std::io::Write;
use std::time::Duration;

use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// Schema of the GenAI names used (the last core release that carries them).
const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.41.0";
/// Longest `Retry-After` honoured; beyond it the normal back-off applies.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A configured destination, ready to send to.
#[derive(Clone, Debug)]
pub struct Backend {
    /// `langfuse` or the OTLP entry's name: the `backend` metric label.
    pub name: String,
    pub url: String,
    /// Headers sent with every export (auth included, marked sensitive).
    pub headers: reqwest::header::HeaderMap,
}

/// Who the spans are from (the OTLP resource).
#[derive(Clone, Debug)]
pub struct Source {
    pub service_name: String,
    pub environment: Option<String>,
}

/// How one export attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    Ok,
    /// Worth another try (429, 5xx, network): after `retry_after` when the backend said so.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The backend refused the keys (401/403): retrying cannot help until an operator acts.
    Unauthorized(u16),
    /// Any other refusal (400, 413...): this batch will never be accepted.
    Rejected(u16, String),
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// The protobuf body, gzipped.
pub fn encode(source: &Source, spans: Vec<Span>) -> Vec<u8> {
    let mut attributes = vec![kv("service.name", &source.service_name)];
    if let Some(env) = &source.environment {
        attributes.push(kv("deployment.environment.name", env));
    }
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "gatehouse".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: SCHEMA_URL.into(),
            }],
            schema_url: SCHEMA_URL.into(),
        }],
    };
    let raw = request.encode_to_vec();
    let mut gz = GzEncoder::new(
        Vec::with_capacity(raw.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(&raw);
    gz.finish().unwrap_or_default()
}

/// POSTs one encoded batch.
pub async fn post(client: &reqwest::Client, backend: &Backend, body: Vec<u8>) -> Sent {
    let rsp = client
        .post(&backend.url)
        .headers(backend.headers.clone())
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await;
    let rsp = match rsp {
        Ok(r) => r,
        Err(e) => {
            return Sent::Retry {
                reason: network_reason(&e),
                retry_after: None,
            }
        }
    };
    let status = rsp.status();
    if status.is_success() {
        return Sent::Ok;
    }
    let code = status.as_u16();
    if matches!(code, 401 | 403) {
        return Sent::Unauthorized(code);
    }
    if code == 429 || status.is_server_error() {
        let retry_after = rsp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .filter(|d| *d <= MAX_BACKOFF);
        return Sent::Retry {
            reason: format!("status {code}"),
            retry_after,
        };
    }
    let body = rsp.text().await.unwrap_or_default();
    Sent::Rejected(code, crate::redact::cap(&body, 300).to_owned())
}

fn network_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "network error".into()
    }
}

/// Back-off before retry `n` (from 0): `base · 2ⁿ` capped, jittered to between half and all of
/// it so that gateways restarted together do not retry together.
pub fn backoff(base: Duration, n: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(r) = retry_after {
        return r;
    }
    let exp = base
        .saturating_mul(2u32.saturating_pow(n.min(16)))
        .min(MAX_BACKOFF);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    exp / 2 + exp.mul_f64(f64::from(nanos % 1000) / 2000.0)
}
