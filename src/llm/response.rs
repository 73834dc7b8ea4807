//! Reading upstream answers: usage, cost, the model used, and for streams which event carries
//! the first token, the usage, or an error. Read-only; the bytes are forwarded as received.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::Usage;

/// Which stream dialect an endpoint speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// `/v1/chat/completions` and `/v1/completions`: `data:` chunks ending in `[DONE]`.
    Chunks,
    /// `/v1/responses`: typed events ending with `response.completed|failed|incomplete`.
    Responses,
}

/// Usage as any of the OpenAI-compatible dialects report it.
#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    #[serde(alias = "input_tokens")]
    prompt_tokens: Option<u64>,
    #[serde(alias = "output_tokens")]
    completion_tokens: Option<u64>,
    #[serde(alias = "input_tokens_details")]
    prompt_tokens_details: Option<Details>,
    #[serde(alias = "output_tokens_details")]
    completion_tokens_details: Option<Details>,
    /// OpenRouter: credits, 1 credit = 1 USD.
    cost: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
struct Details {
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
}

impl WireUsage {
    fn into_usage(self) -> (Usage, Option<f64>) {
        let usage = Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cached_tokens: self.prompt_tokens_details.and_then(|d| d.cached_tokens),
            reasoning_tokens: self
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens),
        };
        (usage, self.cost)
    }
}

/// What a whole (non-streamed) JSON answer tells.
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    pub model: Option<String>,
    pub usage: Option<Usage>,
    pub cost: Option<f64>,
    /// Characters of answer text (choices' content or text, Responses output text).
    pub text_chars: u64,
    /// The answer text, joined, for the seed's `/generate` and for capture.
    pub text: String,
}

#[derive(Deserialize)]
struct WireAnswer<'a> {
    model: Option<String>,
    usage: Option<WireUsage>,
    #[serde(borrow, default)]
    choices: Vec<WireChoice<'a>>,
    #[serde(default)]
    output: Vec<WireOutput>,
}

#[derive(Deserialize)]
struct WireChoice<'a> {
    #[serde(borrow, default)]
    message: MessageText<'a>,
    #[serde(borrow, default)]
    text: Text<'a>,
}

/// A string, borrowed from the body when it has no escapes; any other JSON value reads as
/// nothing (skipped in place, no error), so an unusual shape never costs the usage.
#[derive(Default)]
struct Text<'a>(Option<Cow<'a, str>>);

/// A chat `message` object's `content` when it is a string; any other value reads as nothing.
#[derive(Default)]
struct MessageText<'a>(Option<Cow<'a, str>>);

/// Reads any JSON value without failing: as [`Text`] a string, as [`MessageText`] a message
/// object's string `content`; every other value is skipped in place and reads as nothing.
struct Lenient<'a> {
    message: bool,
    _text: std::marker::PhantomData<&'a str>,
}

impl Lenient<'_> {
    fn new(message: bool) -> Self {
        Lenient {
            message,
            _text: std::marker::PhantomData,
        }
    }
}

impl<'de: 'a, 'a> serde::de::Visitor<'de> for Lenient<'a> {
    type Value = Option<Cow<'a, str>>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok((!self.message).then_some(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok((!self.message).then(|| Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok((!self.message).then_some(Cow::Owned(v)))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        let mut content = None;
        while let Some(key) = a.next_key::<Cow<'_, str>>()? {
            if self.message && key == "content" {
                content = a.next_value::<Text<'a>>()?.0;
            } else {
                a.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(content)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Lenient::new(false)).map(Text)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for MessageText<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Lenient::new(true)).map(MessageText)
    }
}

#[derive(Deserialize)]
struct WireOutput {
    #[serde(default)]
    content: Vec<WireContent>,
}

#[derive(Deserialize)]
struct WireContent {
    text: Option<String>,
}

/// Reads a whole JSON answer. Unknown shapes give an empty `Answer`, never an error: the bytes
/// were the upstream's to choose.
pub fn parse_answer(body: &[u8]) -> Answer {
    let Ok(wire) = serde_json::from_slice::<WireAnswer>(body) else {
        return Answer::default();
    };
    // One pass over the body: the answer text is borrowed where it has no escapes, and any
    // shape we do not know is skipped in place (it was the upstream's to choose).
    let mut text = String::new();
    for c in &wire.choices {
        if let Some(t) = c.message.0.as_deref().or(c.text.0.as_deref()) {
            text.push_str(t);
        }
    }
    for o in &wire.output {
        for c in &o.content {
            text.push_str(c.text.as_deref().unwrap_or(""));
        }
    }
    let (usage, cost) = match wire.usage.map(WireUsage::into_usage) {
        Some((u, c)) => (Some(u), c),
        None => (None, None),
    };
    Answer {
        model: wire.model,
        usage,
        cost,
        text_chars: text.chars().count() as u64,
        text,
    }
}

/// Reads just a `usage` object (e.g. found in the tail of a body too large to keep whole).
pub fn parse_usage(json: &[u8]) -> Option<(Usage, Option<f64>)> {
    let mut it = serde_json::Deserializer::from_slice(json).into_iter::<WireUsage>();
    it.next()?.ok().map(WireUsage::into_usage)
}

/// What one stream event tells. Text and model borrow from the event's bytes where they can:
/// a stream has one event per token, so per-event allocations add up.
#[derive(Debug, Default, PartialEq)]
pub struct StreamEvent<'a> {
    /// The event carries the first content, refusal, reasoning or tool-call data.
    pub token: bool,
    /// Characters of answer text in this event.
    pub text_chars: u64,
    /// The answer text this event adds (content or text deltas), for response scanning.
    pub text: Cow<'a, str>,
    pub usage: Option<Usage>,
    pub cost: Option<f64>,
    pub model: Option<Cow<'a, str>>,
    /// A chunk that only carries usage (`choices: []`): the one stripped when gatehouse asked
    /// for usage on the client's behalf.
    pub usage_only: bool,
    /// The event reports an error (an `error` object, `finish_reason: "error"`,
    /// `response.failed`).
    pub error: bool,
    /// The terminal event (`[DONE]`, or a terminal Responses event).
    pub done: bool,
}

/// One stream event as read: strings borrow from the event's bytes unless they hold escapes
/// (a stream has one event per token, so per-event allocations add up).
#[derive(Deserialize)]
struct WireChunk<'a> {
    #[serde(default, borrow, deserialize_with = "opt_str")]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    choices: Option<Vec<ChunkChoice<'a>>>,
    usage: Option<WireUsage>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
    #[serde(rename = "type", default, borrow, deserialize_with = "opt_str")]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_str")]
    delta: Option<Cow<'a, str>>,
    response: Option<WireResponse>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_str")]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_str")]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow, deserialize_with = "opt_str")]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_str")]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_str")]
    reasoning: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_str")]
    reasoning_content: Option<Cow<'a, str>>,
    tool_calls: Option<serde::de::IgnoredAny>,
    function_call: Option<serde::de::IgnoredAny>,
}

/// An optional string that borrows from the event when it has no escapes. serde's `borrow`
/// covers a bare `Cow<str>` field but not one inside an `Option`, which it always copies.
fn opt_str<'de: 'a, 'a, D>(d: D) -> Result<Option<Cow<'a, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'a>>::deserialize(d)?.map(|b| b.0))
}

#[derive(Deserialize)]
struct WireResponse {
    model: Option<String>,
    usage: Option<WireUsage>,
}

/// Reads one stream event's data.
pub fn inspect_event(kind: StreamKind, data: &[u8]) -> StreamEvent<'_> {
    if data == b"[DONE]" {
        return StreamEvent {
            done: true,
            ..StreamEvent::default()
        };
    }
    // One UTF-8 check of the whole event, then `from_str`, which trusts it: `from_slice` checks
    // every string on its own, a call per string and a dozen strings per event.
    let Ok(text) = std::str::from_utf8(data) else {
        return StreamEvent::default();
    };
    let Ok(chunk) = serde_json::from_str::<WireChunk>(text) else {
        return StreamEvent::default();
    };
    match kind {
        StreamKind::Chunks => inspect_chunk(chunk),
        StreamKind::Responses => inspect_response_event(chunk),
    }
}

fn inspect_chunk(chunk: WireChunk<'_>) -> StreamEvent<'_> {
    let mut ev = StreamEvent {
        model: chunk.model,
        error: chunk.error.is_some_and(|e| e.get() != "null"),
        ..StreamEvent::default()
    };
    let mut choices = chunk.choices.unwrap_or_default();
    for c in &mut choices {
        ev.error |= c.finish_reason.as_deref() == Some("error");
        let text = c.text.take().unwrap_or_default();
        ev.text_chars += text.chars().count() as u64;
        ev.token |= !text.is_empty();
        append(&mut ev.text, text);
        if let Some(d) = &mut c.delta {
            let content = d.content.take().unwrap_or_default();
            ev.text_chars += content.chars().count() as u64;
            ev.token |= !content.is_empty();
            append(&mut ev.text, content);
            let non_empty = |s: &Option<Cow<str>>| s.as_deref().is_some_and(|s| !s.is_empty());
            ev.token |= non_empty(&d.refusal)
                || non_empty(&d.reasoning)
                || non_empty(&d.reasoning_content)
                || d.tool_calls.is_some()
                || d.function_call.is_some();
        }
    }
    if let Some(u) = chunk.usage {
        let (usage, cost) = u.into_usage();
        ev.usage_only = choices.is_empty();
        ev.usage = Some(usage);
        ev.cost = cost;
    }
    ev
}

/// Adds `more` to `text`, borrowing while only one piece is non-empty (the usual case).
fn append<'a>(text: &mut Cow<'a, str>, more: Cow<'a, str>) {
    if text.is_empty() {
        *text = more;
    } else if !more.is_empty() {
        text.to_mut().push_str(&more);
    }
}

fn inspect_response_event(chunk: WireChunk<'_>) -> StreamEvent<'_> {
    let kind = chunk.kind.as_deref().unwrap_or("");
    let mut ev = StreamEvent {
        error: kind == "error" || kind == "response.failed",
        done: matches!(
            kind,
            "response.completed" | "response.failed" | "response.incomplete"
        ),
        ..StreamEvent::default()
    };
    if kind.ends_with(".delta") {
        let delta = chunk.delta.unwrap_or_default();
        ev.token = !delta.is_empty();
        if kind == "response.output_text.delta" {
            ev.text_chars = delta.chars().count() as u64;
            ev.text = delta;
        }
    }
    if let Some(r) = chunk.response {
        ev.model = r.model.map(Cow::Owned);
        if let Some(u) = r.usage {
            let (usage, cost) = u.into_usage();
            ev.usage = Some(usage);
            ev.cost = cost;
        }
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_chunks() {
        let role = br#"{"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}"#;
        let ev = inspect_event(StreamKind::Chunks, role);
        assert!(!ev.token, "role-only chunk is not a token");
        let tok = br#"{"choices":[{"index":0,"delta":{"content":"Blue"}}]}"#;
        let ev = inspect_event(StreamKind::Chunks, tok);
        assert!(ev.token);
        assert_eq!(ev.text_chars, 4);
        assert!(
            matches!(ev.text, Cow::Borrowed("Blue")),
            "one piece is borrowed"
        );
        let two = br#"{"model":"m","choices":[{"index":0,"delta":{"content":"Bl"}},{"index":1,"delta":{"content":""}},{"index":2,"delta":{"content":"ue\n"}}]}"#;
        let ev = inspect_event(StreamKind::Chunks, two);
        assert_eq!((ev.text.as_ref(), ev.text_chars), ("Blue\n", 5));
        assert_eq!(ev.model.as_deref(), Some("m"));
        assert_eq!(
            inspect_event(StreamKind::Chunks, b"{\"model\":\"\xff\"}"),
            StreamEvent::default()
        );
        let tool = br#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c"}]}}]}"#;
        assert!(inspect_event(StreamKind::Chunks, tool).token);
        let usage = br#"{"choices":[],"usage":{"prompt_tokens":1210,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":1024},"completion_tokens_details":{"reasoning_tokens":0},"cost":0.5}}"#;
        let ev = inspect_event(StreamKind::Chunks, usage);
        assert!(ev.usage_only);
        assert_eq!(ev.cost, Some(0.5));
        let u = ev.usage.expect("usage");
        assert_eq!((u.prompt_tokens, u.cached_tokens), (Some(1210), Some(1024)));
        assert!(inspect_event(StreamKind::Chunks, b"[DONE]").done);
    }

    #[test]
    fn mid_stream_errors() {
        let openai = br#"{"error":{"message":"boom","type":"server_error"}}"#;
        assert!(inspect_event(StreamKind::Chunks, openai).error);
        let openrouter = br#"{"id":"gen","error":{"code":"server_error"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}"#;
        assert!(inspect_event(StreamKind::Chunks, openrouter).error);
    }

    #[test]
    fn responses_events() {
        let d = br#"{"type":"response.output_text.delta","sequence_number":5,"delta":"Bl"}"#;
        let ev = inspect_event(StreamKind::Responses, d);
        assert!(ev.token && ev.text_chars == 2);
        let done = br#"{"type":"response.completed","response":{"model":"m","usage":{"input_tokens":10,"output_tokens":40,"output_tokens_details":{"reasoning_tokens":32}}}}"#;
        let ev = inspect_event(StreamKind::Responses, done);
        assert!(ev.done);
        assert_eq!(ev.usage.expect("usage").reasoning_tokens, Some(32));
    }

    #[test]
    fn whole_answers() {
        let a = parse_answer(br#"{"model":"m2","choices":[{"message":{"role":"assistant","content":"Blue"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#);
        assert_eq!(a.model.as_deref(), Some("m2"));
        assert_eq!(a.text, "Blue");
        assert_eq!(a.usage.expect("usage").completion_tokens, Some(1));
        let e = parse_answer(
            br#"{"object":"list","data":[],"usage":{"prompt_tokens":5,"total_tokens":5}}"#,
        );
        assert_eq!(e.usage.expect("usage").prompt_tokens, Some(5));
        assert_eq!(parse_answer(b"not json"), Answer::default());
        let (u, _) = parse_usage(br#"{"prompt_tokens":7} , "x": 1}"#).expect("usage");
        assert_eq!(u.prompt_tokens, Some(7));
    }
}
#[cfg(test)]
mod more_tests {
    use super::parse_answer;

    #[test]
    fn unusual_answer_shapes_keep_the_usage() {
        // Escapes are decoded; several choices are joined.
        let a = parse_answer(br#"{"choices":[{"message":{"content":"a\"b\u00e9"}},{"message":{"role":"assistant","content":"!"}}],"usage":{"prompt_tokens":1}}"#);
        assert_eq!(a.text, "a\"b\u{e9}!");
        assert_eq!(a.text_chars, 5);
        // Content as parts, a null message, a string message or a numeric text read as no
        // text; the completions `text` is the fallback; the usage is never lost.
        for body in [
            &br#"{"choices":[{"message":{"content":[{"type":"text","text":"x"}]},"text":"t"}],"usage":{"prompt_tokens":2}}"#[..],
            br#"{"choices":[{"message":null,"text":"t"}],"usage":{"prompt_tokens":2}}"#,
            br#"{"choices":[{"message":"odd","text":"t"}],"usage":{"prompt_tokens":2}}"#,
            br#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":"c"}]},"text":"t"}],"usage":{"prompt_tokens":2}}"#,
        ] {
            let a = parse_answer(body);
            assert_eq!(a.text, "t", "{}", String::from_utf8_lossy(body));
            assert_eq!(a.usage.expect("usage").prompt_tokens, Some(2));
        }
        let a = parse_answer(
            br#"{"choices":[{"text":7,"message":[1,{"a":2}]}],"usage":{"prompt_tokens":3}}"#,
        );
        assert_eq!(
            (a.text.as_str(), a.usage.expect("usage").prompt_tokens),
            ("", Some(3))
        );
    }

    #[test]
    fn openrouter_cost() {
        let a = super::parse_answer(br#"{"id":"gen-1","model":"deepseek/deepseek-r1-distill-qwen-32b","choices":[{"message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12,"cost":0.000095}}"#);
        assert_eq!(a.cost, Some(0.000095));
    }
}
