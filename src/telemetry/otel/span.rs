//! One finished `Exchange` → one OTLP span: a generation following the GenAI semantic
//! conventions (v1.41 names), plus the `langfuse.*` attributes Langfuse reads first.
//!
//! Pure: no IO, no clock. Ids come from the request's UUIDv7, so a retried export carries the
//! same ids and the backend deduplicates instead of showing the request twice.
//!
//! Usage: `gen_ai.usage.input_tokens` includes cached tokens (OTel semantics), while Langfuse's
//! `input` is the *non-cached* part; `langfuse.observation.usage_details` is therefore built here
//! explicitly (`input` = prompt − cached, `output` = completion − reasoning) so Langfuse uses it
//! verbatim and never subtracts twice.

use std::time::SystemTime;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span, Status};
use serde_json::{json, Map, Value};

use crate::config::TraceCapture;
use crate::detect::RiskLevel;
use crate::event::{Endpoint, Exchange, Outcome};

/// What of the prompt and answer a span may carry.
#[derive(Clone, Copy, Debug)]
pub struct Content {
    pub capture: TraceCapture,
    pub max_bytes: usize,
    pub redact: bool,
}

/// Builds attribute lists without repeating the proto wrapping.
#[derive(Default)]
struct Attrs(Vec<KeyValue>);

impl Attrs {
    fn put(&mut self, key: &str, v: any_value::Value) {
        self.0.push(KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        });
    }
    fn str(&mut self, key: &str, v: impl Into<String>) {
        self.put(key, any_value::Value::StringValue(v.into()));
    }
    fn opt_str(&mut self, key: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.str(key, v);
        }
    }
    fn int(&mut self, key: &str, v: u64) {
        self.put(
            key,
            any_value::Value::IntValue(i64::try_from(v).unwrap_or(i64::MAX)),
        );
    }
    fn double(&mut self, key: &str, v: f64) {
        self.put(key, any_value::Value::DoubleValue(v));
    }
    fn bool(&mut self, key: &str, v: bool) {
        self.put(key, any_value::Value::BoolValue(v));
    }
    fn strs(&mut self, key: &str, v: impl IntoIterator<Item = String>) {
        let values = v
            .into_iter()
            .map(|s| AnyValue {
                value: Some(any_value::Value::StringValue(s)),
            })
            .collect();
        self.put(key, any_value::Value::ArrayValue(ArrayValue { values }));
    }
}

/// Trace id (16 bytes) and span id (8 bytes) derived from the request id.
pub fn ids(request_id: &str) -> ([u8; 16], [u8; 8]) {
    let bytes = match uuid::Uuid::parse_str(request_id) {
        Ok(u) => *u.as_bytes(),
        // Not a UUID (never from the proxy): any stable non-zero id will do.
        Err(_) => {
            use std::hash::{Hash, Hasher};
            let half = |salt: u8| {
                let mut h = std::hash::DefaultHasher::new();
                (salt, request_id).hash(&mut h);
                h.finish().to_be_bytes()
            };
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&half(0));
            b[8..].copy_from_slice(&half(1));
            b
        }
    };
    let mut span = [0u8; 8];
    span.copy_from_slice(&bytes[8..]);
    // An all-zero id is invalid in OTLP; the random half of a UUIDv7 is never all zero in
    // practice, but a malformed id must not get the whole export rejected.
    if span == [0; 8] {
        span[7] = 1;
    }
    (bytes, span)
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `gen_ai.operation.name` of an endpoint, when it is an inference.
fn operation(e: Endpoint) -> Option<&'static str> {
    match e {
        Endpoint::ChatCompletions | Endpoint::Responses | Endpoint::Generate => Some("chat"),
        Endpoint::Completions => Some("text_completion"),
        Endpoint::Embeddings => Some("embeddings"),
        Endpoint::Models | Endpoint::Other => None,
    }
}

/// Langfuse's level: ERROR when blocked or failed, WARNING when a threat was flagged.
pub fn level(ex: &Exchange) -> &'static str {
    match ex.outcome {
        Outcome::Blocked
        | Outcome::Failed
        | Outcome::UpstreamError
        | Outcome::StreamError
        | Outcome::Rejected => "ERROR",
        Outcome::Ok | Outcome::Cancelled | Outcome::Unknown => {
            let flagged = ex
                .verdict
                .as_deref()
                .is_some_and(|v| v.level > RiskLevel::None);
            if flagged {
                "WARNING"
            } else {
                "DEFAULT"
            }
        }
    }
}

/// Why the request failed, for the span status (None when it did not).
fn status_message(ex: &Exchange) -> Option<String> {
    let kind = ex.error_kind.unwrap_or(ex.outcome.as_str());
    match ex.outcome {
        Outcome::Blocked => {
            let cats = ex
                .verdict
                .as_deref()
                .map(|v| v.categories.iter().map(|c| c.as_str()).collect::<Vec<_>>())
                .unwrap_or_default();
            Some(format!(
                "blocked by gatehouse ({kind}): {}",
                cats.join(", ")
            ))
        }
        Outcome::UpstreamError => Some(format!("upstream answered {}", ex.status)),
        Outcome::StreamError | Outcome::Failed | Outcome::Rejected => {
            Some(format!("{} ({kind})", ex.outcome.as_str()))
        }
        Outcome::Ok | Outcome::Cancelled | Outcome::Unknown => None,
    }
}

/// The span for one finished request.
pub fn span(ex: &Exchange, content: &Content) -> Span {
    let (trace_id, span_id) = ids(&ex.id);
    let start = unix_nanos(ex.started_at);
    let end = unix_nanos(ex.started_at + ex.latency);
    let op = operation(ex.endpoint);
    let name = match (op, ex.model.as_deref()) {
        (Some(op), Some(m)) => format!("{op} {m}"),
        (Some(op), None) => op.to_owned(),
        (None, _) => format!("{} {}", ex.method, ex.path),
    };
    let mut a = Attrs::default();
    request_attrs(&mut a, ex, op);
    usage_attrs(&mut a, ex);
    verdict_attrs(&mut a, ex);
    content_attrs(&mut a, ex, content);
    let level = level(ex);
    a.str("langfuse.observation.level", level);
    let message = status_message(ex);
    if let Some(m) = &message {
        a.str("langfuse.observation.status_message", m.clone());
        let error_type = match ex.outcome {
            Outcome::UpstreamError => ex.status.to_string(),
            _ => ex.error_kind.unwrap_or(ex.outcome.as_str()).to_owned(),
        };
        a.str("error.type", error_type);
    }
    let status = Status {
        code: if message.is_some() {
            StatusCode::Error as i32
        } else {
            StatusCode::Unset as i32
        },
        message: message.unwrap_or_default(),
    };
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        name,
        kind: SpanKind::Client as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end.max(start),
        attributes: a.0,
        status: Some(status),
        ..Default::default()
    }
}

fn request_attrs(a: &mut Attrs, ex: &Exchange, op: Option<&str>) {
    let observation = match op {
        Some("embeddings") => "embedding",
        Some(_) => "generation",
        None => "span",
    };
    a.str("langfuse.observation.type", observation);
    a.opt_str("gen_ai.operation.name", op);
    a.opt_str("gen_ai.provider.name", ex.upstream.as_deref());
    a.opt_str("gen_ai.request.model", ex.model.as_deref());
    a.opt_str("gen_ai.response.model", ex.response_model.as_deref());
    // Langfuse prices by the model that really ran: the upstream's answer, else the id we sent.
    let real = ex
        .response_model
        .as_deref()
        .or(ex.upstream_model.as_deref());
    a.opt_str("langfuse.observation.model.name", real);
    a.opt_str("gatehouse.model.alias", ex.model.as_deref());
    a.opt_str("gatehouse.model.upstream", ex.upstream_model.as_deref());
    if ex.stream {
        a.bool("gen_ai.request.stream", true);
    }
    a.str("langfuse.trace.name", format!("{} {}", ex.method, ex.path));
    a.opt_str("user.id", ex.user.as_deref());
    a.opt_str("session.id", ex.session.as_deref());
    a.opt_str("gen_ai.conversation.id", ex.session.as_deref());
    a.opt_str("langfuse.trace.metadata.team", ex.team.as_deref());
    a.str("gatehouse.request_id", ex.id.clone());
    a.str("gatehouse.endpoint", ex.endpoint.as_str());
    a.str("gatehouse.outcome", ex.outcome.as_str());
    a.int("http.response.status_code", u64::from(ex.status));
    a.int("gatehouse.attempts", u64::from(ex.attempts));
    a.opt_str(
        "langfuse.observation.metadata.upstream_request_id",
        ex.upstream_request_id.as_deref(),
    );
    if let Some(ttft) = ex.ttft {
        let at = ex.started_at + ttft;
        a.str("langfuse.observation.completion_start_time", iso8601(at));
        if ex.stream {
            a.double("gen_ai.response.time_to_first_chunk", ttft.as_secs_f64());
        }
    }
    let mut tags = vec!["gatehouse".to_owned()];
    if let Some(v) = ex.verdict.as_deref().filter(|v| v.level > RiskLevel::None) {
        tags.extend(
            v.categories
                .iter()
                .map(|c| format!("threat:{}", c.as_str())),
        );
    }
    if ex.outcome == Outcome::Blocked {
        tags.push("blocked".into());
    }
    a.strs("langfuse.trace.tags", tags);
}

fn usage_attrs(a: &mut Attrs, ex: &Exchange) {
    let u = ex.usage;
    let mut details = Map::new();
    if let Some(p) = u.prompt_tokens {
        a.int("gen_ai.usage.input_tokens", p);
        let cached = u.cached_tokens.unwrap_or(0).min(p);
        details.insert("input".into(), json!(p - cached));
        if cached > 0 {
            details.insert("input_cached_tokens".into(), json!(cached));
        }
    }
    if let Some(c) = u.completion_tokens {
        a.int("gen_ai.usage.output_tokens", c);
        let reasoning = u.reasoning_tokens.unwrap_or(0).min(c);
        details.insert("output".into(), json!(c - reasoning));
        if reasoning > 0 {
            details.insert("output_reasoning_tokens".into(), json!(reasoning));
        }
    }
    if let Some(c) = u.cached_tokens {
        a.int("gen_ai.usage.cache_read.input_tokens", c);
    }
    if let Some(r) = u.reasoning_tokens {
        a.int("gen_ai.usage.reasoning.output_tokens", r);
    }
    if let Some(t) = u.total() {
        details.insert("total".into(), json!(t));
    }
    if !details.is_empty() {
        let details = Value::Object(details).to_string();
        a.str("langfuse.observation.usage_details", details);
    }
    if let Some(cost) = ex.cost.filter(|c| c.is_finite() && *c >= 0.0) {
        a.double("gen_ai.usage.cost", cost);
        a.str(
            "langfuse.observation.cost_details",
            json!({ "total": cost }).to_string(),
        );
    }
}

fn verdict_attrs(a: &mut Attrs, ex: &Exchange) {
    let Some(v) = ex.verdict.as_deref() else {
        return;
    };
    a.str("gatehouse.threat.level", v.level.as_str());
    a.double("gatehouse.threat.score", f64::from(v.score));
    a.strs(
        "gatehouse.threat.categories",
        v.categories.iter().map(|c| c.as_str().to_owned()),
    );
    a.bool("gatehouse.threat.blocked", v.blocked);
    a.bool("gatehouse.threat.shadow", v.shadow);
    // The judge's second opinion: the level above is after it, `level_before` the detector's.
    if let Some(j) = &ex.judge {
        a.str("gatehouse.judge.outcome", j.outcome.as_str());
        a.str("gatehouse.judge.level_before", j.level_before.as_str());
        a.double("gatehouse.judge.duration_ms", j.latency.as_secs_f64() * 1e3);
    }
}

fn content_attrs(a: &mut Attrs, ex: &Exchange, content: &Content) {
    if content.capture == TraceCapture::Off {
        return;
    }
    a.int("gatehouse.request.bytes", ex.bytes_in);
    a.int("gatehouse.response.bytes", ex.bytes_out);
    if let Some(n) = ex.prompt_chars {
        a.int("gatehouse.prompt.chars", n);
    }
    if let Some(n) = ex.response_chars {
        a.int("gatehouse.response.chars", n);
    }
    if content.capture != TraceCapture::Full {
        return;
    }
    let Some(cap) = ex.capture.as_ref() else {
        return;
    };
    if let Some(p) = cap.prompt.as_deref() {
        a.str("langfuse.observation.input", clean(&input_of(p), content));
    }
    if let Some(r) = cap.response.as_deref() {
        a.str("langfuse.observation.output", clean(r, content));
    }
}

/// The request's messages (or `input`/`prompt`) when the captured body is whole JSON, else the
/// captured text as it is.
fn input_of(body: &str) -> String {
    let Ok(Value::Object(mut v)) = serde_json::from_str::<Value>(body) else {
        return body.to_owned();
    };
    ["messages", "input", "prompt"]
        .iter()
        .find_map(|k| v.remove(*k))
        .map_or_else(|| body.to_owned(), |m| m.to_string())
}

fn clean(text: &str, content: &Content) -> String {
    let text = crate::redact::cap(text, content.max_bytes);
    if content.redact {
        crate::redact::redact(text).into_owned()
    } else {
        text.to_owned()
    }
}

/// RFC 3339 with milliseconds, UTC (what Langfuse's `completion_start_time` parses).
fn iso8601(t: SystemTime) -> String {
    let nanos = unix_nanos(t);
    let Ok(dt) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)) else {
        return String::new();
    };
    let ms = dt.millisecond();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

#[cfg(test)]
mod tests;
