use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::event::{Capture, Usage};

fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a any_value::Value> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text<'a>(s: &'a Span, key: &str) -> Option<&'a str> {
    match attr(s, key) {
        Some(any_value::Value::StringValue(v)) => Some(v),
        _ => None,
    }
}

fn int(s: &Span, key: &str) -> Option<i64> {
    match attr(s, key) {
        Some(any_value::Value::IntValue(v)) => Some(*v),
        _ => None,
    }
}

const FULL: Content = Content {
    capture: TraceCapture::Full,
    max_bytes: 1000,
    redact: true,
};

fn chat() -> Exchange {
    let mut ex = Exchange::new(
        "01890a5d-ac96-774b-bcce-b302099a8057".into(),
        "POST",
        "/v1/chat/completions",
    );
    ex.endpoint = Endpoint::ChatCompletions;
    ex.model = Some("fast".into());
    ex.upstream_model = Some("openai/gpt-4o-mini".into());
    ex.response_model = Some("gpt-4o-mini-2024-07-18".into());
    ex.upstream = Some(Arc::from("openrouter"));
    ex.user = Some("u-42".into());
    ex.session = Some("conv-7".into());
    ex.status = 200;
    ex.outcome = Outcome::Ok;
    ex.latency = Duration::from_millis(1250);
    ex.ttft = Some(Duration::from_millis(420));
    ex.usage = Usage {
        prompt_tokens: Some(1210),
        completion_tokens: Some(30),
        cached_tokens: Some(1024),
        reasoning_tokens: Some(10),
    };
    ex.cost = Some(0.0000341);
    ex
}

#[test]
fn ids_are_stable_and_come_from_the_request_id() {
    let ex = chat();
    let (t, s) = ids(&ex.id);
    assert_eq!(uuid::Uuid::from_bytes(t).to_string(), ex.id);
    assert_eq!(ids(&ex.id), (t, s), "a retry must carry the same ids");
    assert_ne!(s, [0; 8]);
    assert_ne!(ids("not-a-uuid").1, [0; 8]);
}

#[test]
fn a_chat_is_a_client_generation_span() {
    let s = span(&chat(), &FULL);
    assert_eq!(s.name, "chat fast");
    assert_eq!(s.kind, SpanKind::Client as i32);
    assert_eq!(s.end_time_unix_nano - s.start_time_unix_nano, 1_250_000_000);
    assert_eq!(text(&s, "langfuse.observation.type"), Some("generation"));
    assert_eq!(text(&s, "gen_ai.operation.name"), Some("chat"));
    assert_eq!(text(&s, "gen_ai.provider.name"), Some("openrouter"));
    assert_eq!(text(&s, "gen_ai.request.model"), Some("fast"));
    assert_eq!(
        text(&s, "gatehouse.model.upstream"),
        Some("openai/gpt-4o-mini")
    );
    assert_eq!(
        text(&s, "langfuse.observation.model.name"),
        Some("gpt-4o-mini-2024-07-18")
    );
    assert_eq!(text(&s, "user.id"), Some("u-42"));
    assert_eq!(text(&s, "session.id"), Some("conv-7"));
    assert_eq!(text(&s, "langfuse.observation.level"), Some("DEFAULT"));
    assert_eq!(
        s.status.as_ref().map(|s| s.code),
        Some(StatusCode::Unset as i32)
    );
}

#[test]
fn usage_details_count_cached_and_reasoning_tokens_once() {
    let s = span(&chat(), &FULL);
    assert_eq!(
        int(&s, "gen_ai.usage.input_tokens"),
        Some(1210),
        "OTel input includes cached"
    );
    assert_eq!(int(&s, "gen_ai.usage.cache_read.input_tokens"), Some(1024));
    assert_eq!(int(&s, "gen_ai.usage.output_tokens"), Some(30));
    assert_eq!(int(&s, "gen_ai.usage.reasoning.output_tokens"), Some(10));
    let details: Value = serde_json::from_str(
        text(&s, "langfuse.observation.usage_details").expect("usage details"),
    )
    .expect("json");
    assert_eq!(
        details,
        json!({"input": 186, "input_cached_tokens": 1024, "output": 20,
               "output_reasoning_tokens": 10, "total": 1240})
    );
    let cost: Value =
        serde_json::from_str(text(&s, "langfuse.observation.cost_details").expect("cost"))
            .expect("json");
    assert_eq!(cost, json!({"total": 0.0000341}));
}

#[test]
fn completion_start_is_arrival_plus_ttft() {
    let mut ex = chat();
    ex.started_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let s = span(&ex, &FULL);
    assert_eq!(
        text(&s, "langfuse.observation.completion_start_time"),
        Some("2026-01-01T00:00:00.420Z")
    );
}

#[test]
fn levels_follow_outcome_and_verdict() {
    let mut ex = chat();
    let mut v = crate::detect::Verdict::clean();
    v.level = RiskLevel::Medium;
    ex.verdict = Some(Arc::new(v.clone()));
    assert_eq!(level(&ex), "WARNING");
    ex.outcome = Outcome::Blocked;
    assert_eq!(level(&ex), "ERROR");
    ex.verdict = None;
    ex.outcome = Outcome::UpstreamError;
    ex.status = 502;
    let s = span(&ex, &FULL);
    assert_eq!(text(&s, "error.type"), Some("502"));
    assert_eq!(
        s.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );
}

#[test]
fn the_judges_opinion_is_on_the_span_beside_the_verdict_it_changed() {
    let mut ex = chat();
    let mut v = crate::detect::Verdict::clean();
    v.level = RiskLevel::Low;
    ex.verdict = Some(Arc::new(v));
    let s = span(&ex, &FULL);
    assert_eq!(
        text(&s, "gatehouse.judge.outcome"),
        None,
        "not asked: no judge"
    );
    ex.judge = Some(crate::event::Judged {
        outcome: crate::event::JudgeOutcome::Safe,
        latency: Duration::from_micros(182_500),
        level_before: RiskLevel::Medium,
    });
    let s = span(&ex, &FULL);
    assert_eq!(text(&s, "gatehouse.judge.outcome"), Some("safe"));
    assert_eq!(text(&s, "gatehouse.judge.level_before"), Some("medium"));
    assert_eq!(
        text(&s, "gatehouse.threat.level"),
        Some("low"),
        "the level after it"
    );
    match attr(&s, "gatehouse.judge.duration_ms") {
        Some(any_value::Value::DoubleValue(ms)) => assert!((ms - 182.5).abs() < 1e-9, "{ms}"),
        other => panic!("duration: {other:?}"),
    }
}

#[test]
fn capture_modes_decide_what_text_leaves() {
    let mut ex = chat();
    ex.capture = Some(Capture {
        prompt: Some(
            r#"{"model":"fast","messages":[{"role":"user","content":"mail bob@example.com"}]}"#
                .into(),
        ),
        response: Some("Blue".into()),
    });
    ex.prompt_chars = Some(20);
    let full = span(&ex, &FULL);
    assert_eq!(
        text(&full, "langfuse.observation.input"),
        Some(r#"[{"content":"mail [REDACTED]","role":"user"}]"#)
    );
    assert_eq!(text(&full, "langfuse.observation.output"), Some("Blue"));
    let meta = span(
        &ex,
        &Content {
            capture: TraceCapture::Metadata,
            ..FULL
        },
    );
    assert_eq!(text(&meta, "langfuse.observation.input"), None);
    assert_eq!(int(&meta, "gatehouse.prompt.chars"), Some(20));
    let off = span(
        &ex,
        &Content {
            capture: TraceCapture::Off,
            ..FULL
        },
    );
    assert!(off.attributes.iter().all(|kv| !kv.key.contains("prompt")
        && !kv.key.ends_with(".input")
        && !kv.key.ends_with(".output")));
}
