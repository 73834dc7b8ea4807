//! A read-only view of an OpenAI-compatible JSON request, and the two byte patches gatehouse may
//! apply to it: the model alias → upstream model id, and `stream_options.include_usage` on
//! streamed chat/completions requests (so the gateway learns the token usage; the extra chunk is
//! stripped from the answer). Every other byte is forwarded as received.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The top-level fields gatehouse reads. Unknown fields are ignored (and forwarded untouched).
#[derive(Deserialize)]
struct TopLevel<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    stream: Option<bool>,
    #[serde(borrow)]
    stream_options: Option<&'a RawValue>,
    user: Option<String>,
    safety_identifier: Option<String>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
}

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("request body is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("request body must be a JSON object")]
    NotObject,
    #[error("\"model\" must be a string")]
    ModelType,
}

/// What gatehouse knows about a request body.
#[derive(Debug, Default)]
pub struct RequestView {
    pub model: Option<String>,
    /// Byte range of the `model` value (including quotes) in the original body.
    model_span: Option<(usize, usize)>,
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: bool,
    stream_options_span: Option<(usize, usize)>,
    /// End-user id: `user`, else `safety_identifier`, else `metadata.user_id`.
    pub user: Option<String>,
    /// `metadata.session_id`, when present.
    pub session: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    user_id: Option<String>,
    session_id: Option<String>,
}

impl RequestView {
    /// Parses the view from a JSON request body.
    ///
    /// # Errors
    /// The body is not a JSON object, or `model` is not a string.
    pub fn parse(body: &[u8]) -> Result<RequestView, ViewError> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Err(e) => Err(ViewError::Json(e)),
                Ok(_) => Err(ViewError::NotObject),
            };
        }
        let top: TopLevel = serde_json::from_slice(body).map_err(ViewError::Json)?;
        let span = |raw: &RawValue| {
            let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
            (start, start + raw.get().len())
        };
        let model = match top.model {
            None => None,
            Some(raw) => {
                Some(serde_json::from_str::<String>(raw.get()).map_err(|_| ViewError::ModelType)?)
            }
        };
        let include_usage = top
            .stream_options
            .and_then(|raw| serde_json::from_str::<serde_json::Value>(raw.get()).ok())
            .and_then(|v| v.get("include_usage").and_then(|b| b.as_bool()))
            .unwrap_or(false);
        let meta = top
            .metadata
            .and_then(|raw| serde_json::from_str::<Metadata>(raw.get()).ok());
        let (meta_user, session) = meta.map_or((None, None), |m| (m.user_id, m.session_id));
        Ok(RequestView {
            model,
            model_span: top.model.map(span),
            stream: top.stream.unwrap_or(false),
            include_usage,
            stream_options_span: top.stream_options.map(span),
            user: top.user.or(top.safety_identifier).or(meta_user),
            session,
        })
    }

    /// The body to send upstream: the original bytes with at most two spans replaced.
    /// `model` replaces the model value; `want_usage` makes sure
    /// `stream_options.include_usage` is true. Returns the original `Bytes` (no copy) when
    /// nothing changes.
    pub fn patch(&self, body: &Bytes, model: Option<&str>, want_usage: bool) -> Bytes {
        let mut edits: Vec<(usize, usize, String)> = Vec::with_capacity(2);
        if let (Some(m), Some(span)) = (model, self.model_span) {
            edits.push((span.0, span.1, json_string(m)));
        }
        if want_usage && !self.include_usage {
            edits.push(self.usage_edit(body));
        }
        if edits.is_empty() {
            return body.clone();
        }
        edits.sort_by_key(|e| e.0);
        let mut out = BytesMut::with_capacity(body.len() + 48);
        let mut at = 0;
        for (start, end, text) in edits {
            out.extend_from_slice(&body[at..start]);
            out.extend_from_slice(text.as_bytes());
            at = end;
        }
        out.extend_from_slice(&body[at..]);
        out.freeze()
    }

    /// The edit that turns `include_usage` on: rewrite the `stream_options` object when present
    /// (keeping its other keys), else insert the member right after the opening brace.
    fn usage_edit(&self, body: &[u8]) -> (usize, usize, String) {
        if let Some((start, end)) = self.stream_options_span {
            let parsed = serde_json::from_slice::<serde_json::Value>(&body[start..end]).ok();
            if let Some(serde_json::Value::Object(mut map)) = parsed {
                map.insert("include_usage".into(), serde_json::Value::Bool(true));
                return (start, end, serde_json::Value::Object(map).to_string());
            }
            return (start, end, r#"{"include_usage":true}"#.into());
        }
        let brace = body.iter().position(|b| *b == b'{').map_or(0, |i| i + 1);
        let empty = body[brace..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'}');
        let sep = if empty { "" } else { "," };
        (
            brace,
            brace,
            format!(r#""stream_options":{{"include_usage":true}}{sep}"#),
        )
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patched(body: &str, model: Option<&str>, usage: bool) -> String {
        let b = Bytes::from(body.to_owned());
        let v = RequestView::parse(&b).expect("valid");
        String::from_utf8(v.patch(&b, model, usage).to_vec()).expect("utf8")
    }

    #[test]
    fn unchanged_body_is_the_same_bytes() {
        let body = r#"{ "model" : "m",  "messages":[] , "x": 1.50 }"#;
        assert_eq!(patched(body, None, false), body);
    }

    #[test]
    fn alias_rewrite_touches_only_the_model_value() {
        let body = r#"{"messages":[{"role":"user","content":"model"}], "model" : "fast", "n":1}"#;
        assert_eq!(
            patched(body, Some("openai/gpt-4o-mini"), false),
            r#"{"messages":[{"role":"user","content":"model"}], "model" : "openai/gpt-4o-mini", "n":1}"#
        );
    }

    #[test]
    fn include_usage_is_inserted_or_merged() {
        assert_eq!(
            patched(r#"{"model":"m","stream":true}"#, None, true),
            r#"{"stream_options":{"include_usage":true},"model":"m","stream":true}"#
        );
        assert_eq!(
            patched(
                r#"{"stream":true,"stream_options":{"include_obfuscation":false}}"#,
                None,
                true
            ),
            r#"{"stream":true,"stream_options":{"include_obfuscation":false,"include_usage":true}}"#
        );
        let asked = r#"{"stream":true,"stream_options":{"include_usage":true}}"#;
        assert_eq!(patched(asked, None, true), asked);
        assert_eq!(
            patched("{}", None, true),
            r#"{"stream_options":{"include_usage":true}}"#
        );
    }

    #[test]
    fn view_reads_identity_fields() {
        let v =
            RequestView::parse(br#"{"model":"m","metadata":{"user_id":"u1","session_id":"s1"}}"#)
                .expect("valid");
        assert_eq!(v.user.as_deref(), Some("u1"));
        assert_eq!(v.session.as_deref(), Some("s1"));
        let v = RequestView::parse(br#"{"user":"u2","safety_identifier":"h"}"#).expect("valid");
        assert_eq!(v.user.as_deref(), Some("u2"));
    }

    #[test]
    fn bad_bodies_are_refused() {
        assert!(matches!(
            RequestView::parse(b"[1]"),
            Err(ViewError::NotObject)
        ));
        assert!(matches!(RequestView::parse(b"{"), Err(ViewError::Json(_))));
        assert!(matches!(
            RequestView::parse(br#"{"model":3}"#),
            Err(ViewError::ModelType)
        ));
        assert!(matches!(RequestView::parse(b""), Err(ViewError::Json(_))));
    }
}
