//! Extract: the texts a request makes the model read, as a [`ScanInput`].
//!
//! Owns a read-only walk over an OpenAI-compatible request body (chat
//! completions, completions, embeddings, responses). It never re-serialises
//! or changes the body. Covers string and array-of-parts content, tool-call
//! arguments, tool results, `instructions`, and string/array prompts and
//! inputs; token arrays are ignored (there is no text to read). Unknown
//! shapes yield fewer segments, never an error: the proxy forwards bodies it
//! does not understand. Trade-off: roles we do not know are scanned as user
//! text (full weight) rather than skipped.

use super::json::{Doc, JsonView};
use super::verdict::{Role, ScanInput, Segment};

/// Which API a body belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScanEndpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    /// Unknown path: try every known field.
    Other,
}

/// Most segments taken from one body; the proxy bounds body size, this bounds work.
const MAX_SEGMENTS: usize = 4096;

/// Builds the scan input for `body` sent to `endpoint`.
pub fn extract(endpoint: ScanEndpoint, body: &serde_json::Value) -> ScanInput {
    extract_from(endpoint, body)
}

/// Why a body's texts could not all be read: the proxy refuses such a body rather than forward
/// what it has not scanned.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    /// Not JSON text the detector can read: invalid UTF-8, a lone surrogate escape, nesting
    /// deeper than the parser's limit.
    #[error("the body is not JSON gatehouse can read: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the body has more than {MAX_SEGMENTS} texts")]
    TooManyTexts,
}

/// Builds the scan input straight from a body's bytes (the proxy's path: one borrowed parse,
/// see [`super::json`]).
///
/// # Errors
/// The body could not be read whole (see [`Unreadable`]).
pub fn extract_json(endpoint: ScanEndpoint, body: &[u8]) -> Result<ScanInput, Unreadable> {
    let doc = Doc::parse(body)?;
    let mut out = Out::default();
    extract_into(endpoint, &doc, &mut out);
    if out.overflow {
        return Err(Unreadable::TooManyTexts);
    }
    Ok(ScanInput {
        segments: out.texts,
    })
}

fn extract_from<J: JsonView>(endpoint: ScanEndpoint, body: &J) -> ScanInput {
    let mut out = Out::default();
    extract_into(endpoint, body, &mut out);
    ScanInput {
        segments: out.texts,
    }
}

fn extract_into<J: JsonView>(endpoint: ScanEndpoint, body: &J, out: &mut Out) {
    match endpoint {
        ScanEndpoint::ChatCompletions => chat(body, out),
        ScanEndpoint::Completions => strings(body.get("prompt"), Role::User, out),
        ScanEndpoint::Embeddings => strings(body.get("input"), Role::User, out),
        ScanEndpoint::Responses => responses(body, out),
        ScanEndpoint::Other => {
            chat(body, out);
            strings(body.get("prompt"), Role::User, out);
            responses(body, out);
        }
    }
}

#[derive(Default)]
struct Out {
    texts: Vec<Segment>,
    /// A text was left out because the body had more than `MAX_SEGMENTS`.
    overflow: bool,
}

impl Out {
    fn push(&mut self, role: Role, text: &str) {
        if text.is_empty() {
            return;
        }
        if self.texts.len() >= MAX_SEGMENTS {
            self.overflow = true;
            return;
        }
        self.texts.push(Segment {
            role,
            text: text.to_owned(),
        });
    }
}

fn role_of(name: Option<&str>) -> Role {
    match name {
        Some("system" | "developer") => Role::System,
        Some("assistant") => Role::Assistant,
        Some("tool" | "function") => Role::Tool,
        _ => Role::User,
    }
}

/// `v[a][b]` as a string.
fn str_at<'v, J: JsonView>(v: &'v J, a: &str, b: &str) -> Option<&'v str> {
    v.get(a)?.get(b)?.as_str()
}

fn chat<J: JsonView>(body: &J, out: &mut Out) {
    let Some(msgs) = body.get("messages").and_then(J::as_array) else {
        return;
    };
    for msg in msgs {
        let role = role_of(msg.get("role").and_then(J::as_str));
        content(msg.get("content"), role, out);
        if let Some(calls) = msg.get("tool_calls").and_then(J::as_array) {
            for call in calls {
                let args = str_at(call, "function", "arguments");
                out.push(Role::ToolArgs, args.unwrap_or(""));
            }
        }
        let legacy = str_at(msg, "function_call", "arguments");
        out.push(Role::ToolArgs, legacy.unwrap_or(""));
    }
}

/// String content, or an array of parts with a `text` field.
fn content<J: JsonView>(v: Option<&J>, role: Role, out: &mut Out) {
    let Some(v) = v else {
        return;
    };
    if let Some(s) = v.as_str() {
        out.push(role, s);
    } else if let Some(parts) = v.as_array() {
        for p in parts {
            if let Some(s) = p.as_str() {
                out.push(role, s);
            } else if p.is_object() {
                let text = p.get("text").and_then(J::as_str);
                out.push(role, text.unwrap_or(""));
            }
        }
    }
}

/// A string, or an array of strings; token arrays (numbers) are ignored.
fn strings<J: JsonView>(v: Option<&J>, role: Role, out: &mut Out) {
    let Some(v) = v else {
        return;
    };
    if let Some(s) = v.as_str() {
        out.push(role, s);
    } else if let Some(items) = v.as_array() {
        for s in items.iter().filter_map(J::as_str) {
            out.push(role, s);
        }
    }
}

fn responses<J: JsonView>(body: &J, out: &mut Out) {
    if let Some(s) = body.get("instructions").and_then(J::as_str) {
        out.push(Role::System, s);
    }
    let Some(input) = body.get("input") else {
        return;
    };
    if let Some(s) = input.as_str() {
        out.push(Role::User, s);
    } else if let Some(items) = input.as_array() {
        items.iter().for_each(|item| response_item(item, out));
    }
}

fn response_item<J: JsonView>(item: &J, out: &mut Out) {
    let text = |k: &str| item.get(k).and_then(J::as_str).unwrap_or("");
    match item.get("type").and_then(J::as_str) {
        Some("function_call_output" | "custom_tool_call_output") => {
            out.push(Role::Tool, text("output"))
        }
        Some("function_call") => out.push(Role::ToolArgs, text("arguments")),
        Some("custom_tool_call") => out.push(Role::ToolArgs, text("input")),
        _ => {
            let role = role_of(item.get("role").and_then(J::as_str));
            content(item.get("content"), role, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The borrowed path must see exactly what the `Value` path sees.
    #[test]
    fn borrowed_and_value_extraction_agree() {
        let bodies = [
            r#"{"model":"m","messages":[{"role":"system","content":"be nice"},{"role":"user","content":[{"type":"text","text":"hi \u0041\n"},"raw part",{"type":"image_url","image_url":{"url":"x"}}]},{"role":"assistant","content":null,"tool_calls":[{"id":"1","function":{"name":"f","arguments":"{\"a\":1}"}}],"function_call":{"arguments":"legacy"}},{"role":"tool","content":"result"}]}"#,
            r#"{"prompt":["one","two",3],"input":"emb"}"#,
            r#"{"instructions":"sys","input":[{"type":"function_call_output","output":"out"},{"type":"function_call","arguments":"args"},{"type":"custom_tool_call","input":"ci"},{"role":"developer","content":[{"type":"input_text","text":"dev"}]}]}"#,
            r#"{"messages":"not an array","prompt":{"x":1},"input":[1,2]}"#,
        ];
        let endpoints = [
            ScanEndpoint::ChatCompletions,
            ScanEndpoint::Completions,
            ScanEndpoint::Embeddings,
            ScanEndpoint::Responses,
            ScanEndpoint::Other,
        ];
        for body in bodies {
            let value: serde_json::Value = serde_json::from_str(body).expect("valid");
            for e in endpoints {
                let want: Vec<(Role, String)> = extract(e, &value)
                    .segments
                    .into_iter()
                    .map(|s| (s.role, s.text))
                    .collect();
                let got: Vec<(Role, String)> = extract_json(e, body.as_bytes())
                    .expect("valid")
                    .segments
                    .into_iter()
                    .map(|s| (s.role, s.text))
                    .collect();
                assert_eq!(got, want, "{e:?} {body}");
            }
        }
        assert!(extract_json(ScanEndpoint::Other, b"{not json").is_err());
        // Where `Value` keeps the last of a repeated key, the proxy's path refuses the body.
        let repeated = br#"{"messages":[{"role":"user","content":"first"}],"messages":[]}"#;
        assert!(extract_json(ScanEndpoint::ChatCompletions, repeated).is_err());
    }
}
