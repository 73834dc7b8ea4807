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

use serde_json::Value;

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
pub fn extract(endpoint: ScanEndpoint, body: &Value) -> ScanInput {
    let mut out = Out::default();
    match endpoint {
        ScanEndpoint::ChatCompletions => chat(body, &mut out),
        ScanEndpoint::Completions => strings(body.get("prompt"), Role::User, &mut out),
        ScanEndpoint::Embeddings => strings(body.get("input"), Role::User, &mut out),
        ScanEndpoint::Responses => responses(body, &mut out),
        ScanEndpoint::Other => {
            chat(body, &mut out);
            strings(body.get("prompt"), Role::User, &mut out);
            responses(body, &mut out);
        }
    }
    ScanInput { segments: out.0 }
}

#[derive(Default)]
struct Out(Vec<Segment>);

impl Out {
    fn push(&mut self, role: Role, text: &str) {
        if !text.is_empty() && self.0.len() < MAX_SEGMENTS {
            self.0.push(Segment {
                role,
                text: text.to_owned(),
            });
        }
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

fn chat(body: &Value, out: &mut Out) {
    let Some(msgs) = body.get("messages").and_then(Value::as_array) else {
        return;
    };
    for msg in msgs {
        let role = role_of(msg.get("role").and_then(Value::as_str));
        content(msg.get("content"), role, out);
        if let Some(calls) = msg.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                let args = call.pointer("/function/arguments").and_then(Value::as_str);
                out.push(Role::ToolArgs, args.unwrap_or(""));
            }
        }
        let legacy = msg
            .pointer("/function_call/arguments")
            .and_then(Value::as_str);
        out.push(Role::ToolArgs, legacy.unwrap_or(""));
    }
}

/// String content, or an array of parts with a `text` field.
fn content(v: Option<&Value>, role: Role, out: &mut Out) {
    match v {
        Some(Value::String(s)) => out.push(role, s),
        Some(Value::Array(parts)) => {
            for p in parts {
                match p {
                    Value::String(s) => out.push(role, s),
                    Value::Object(_) => {
                        let text = p.get("text").and_then(Value::as_str);
                        out.push(role, text.unwrap_or(""));
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// A string, or an array of strings; token arrays (numbers) are ignored.
fn strings(v: Option<&Value>, role: Role, out: &mut Out) {
    match v {
        Some(Value::String(s)) => out.push(role, s),
        Some(Value::Array(items)) => {
            for s in items.iter().filter_map(Value::as_str) {
                out.push(role, s);
            }
        }
        _ => {}
    }
}

fn responses(body: &Value, out: &mut Out) {
    if let Some(s) = body.get("instructions").and_then(Value::as_str) {
        out.push(Role::System, s);
    }
    match body.get("input") {
        Some(Value::String(s)) => out.push(Role::User, s),
        Some(Value::Array(items)) => items.iter().for_each(|item| response_item(item, out)),
        _ => {}
    }
}

fn response_item(item: &Value, out: &mut Out) {
    let text = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or("");
    match item.get("type").and_then(Value::as_str) {
        Some("function_call_output" | "custom_tool_call_output") => {
            out.push(Role::Tool, text("output"))
        }
        Some("function_call") => out.push(Role::ToolArgs, text("arguments")),
        Some("custom_tool_call") => out.push(Role::ToolArgs, text("input")),
        _ => {
            let role = role_of(item.get("role").and_then(Value::as_str));
            content(item.get("content"), role, out);
        }
    }
}
