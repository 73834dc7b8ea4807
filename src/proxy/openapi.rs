//! The OpenAPI 3.1 document of the proxy port: the OpenAI-compatible inference routes, the
//! passthrough paths `proxy.passthrough` allows, the seed's `/generate`, `/v1/feedback`,
//! `/v1/models`, `/health` and `/ready`, the OpenAI-shaped error body and every
//! `x-gatehouse-error` kind (from [`Kind::ALL`], so a new kind is documented by being declared).
//!
//! The admin document is generated from its axum handlers' annotations; the proxy's routes are
//! phases of one hyper service (`handle`), so this one is written here as JSON, beside the
//! route table, and a test checks every path in it against `route::route`. Bodies are
//! described, not specified: gatehouse forwards the provider's request and answer as they are,
//! so their schema is the provider's (OpenAI's), not ours.

use serde_json::{json, Map, Value};

use super::kind::Kind;
use crate::config::passthrough::parse_rule;

/// The document for a proxy whose passthrough allow-list is `passthrough` (`proxy.passthrough`
/// entries; ones that do not parse are left out, as the validated config has none).
pub fn document(passthrough: &[String]) -> Value {
    let mut paths = Map::new();
    for (path, summary) in INFERENCE {
        paths.insert(path.into(), json!({ "post": inference(path, summary) }));
    }
    paths.insert("/v1/models".into(), json!({ "get": models(false) }));
    paths.insert("/v1/models/{id}".into(), json!({ "get": models(true) }));
    paths.insert("/generate".into(), json!({ "post": generate() }));
    paths.insert("/v1/feedback".into(), json!({ "post": feedback() }));
    paths.insert("/health".into(), json!({ "get": health() }));
    paths.insert("/ready".into(), json!({ "get": ready() }));
    paths.insert("/openapi.json".into(), json!({ "get": self_doc() }));
    for rule in passthrough.iter().filter_map(|e| parse_rule(e).ok()) {
        let method = rule.method.as_str().to_ascii_lowercase();
        let mut add = |path: String, deeper: bool| {
            let item = paths.entry(path).or_insert_with(|| json!({}));
            item[method.as_str()] = passthrough_op(&rule.method, &rule.prefix, deeper);
        };
        add(rule.prefix.clone(), false);
        if rule.deeper {
            add(format!("{}/{{path}}", rule.prefix), true);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "gatehouse proxy API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The OpenAI-compatible port apps send their SDK calls to (base_url `http://<proxy>/v1`). Inference requests are scanned, then forwarded to the upstream byte-for-byte but for the model alias, the `Authorization` header (gateway key → upstream key, unless `auth.mode: passthrough`) and, on streamed chat and completions calls, `stream_options.include_usage`; answers come back as the upstream sent them, streams as streams. Upstream errors pass through untouched. Errors gatehouse makes itself are OpenAI-shaped (`Error`) and carry an `x-gatehouse-error` header naming their kind (`GatehouseErrorKind`). Every response carries `x-gatehouse-request-id`. The admin API (analytics, security, reports) is on the admin port, not here."
        },
        "security": [{ "gateway_key": [] }],
        "tags": [
            { "name": "inference", "description": "OpenAI-compatible calls, scanned and forwarded" },
            { "name": "models", "description": "The configured aliases and the default upstream's models" },
            { "name": "passthrough", "description": "Other /v1/* paths `proxy.passthrough` allows, forwarded unread to the default upstream" },
            { "name": "seed", "description": "The seed document's endpoint" },
            { "name": "feedback", "description": "Quality feedback on an earlier answer" },
            { "name": "meta", "description": "Health, readiness and this document" }
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "gateway_key": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A gateway key (`auth.keys`); with `auth.mode: passthrough` the upstream's own key, with `auth.mode: open` or no keys on loopback none."
                }
            },
            "schemas": {
                "Error": error_schema(),
                "GatehouseErrorKind": kind_schema(),
                "GenerateRequest": generate_request(),
                "GenerateResponse": generate_response(),
                "Feedback": feedback_schema()
            }
        }
    })
}

/// The inference routes: path and summary.
const INFERENCE: [(&str, &str); 4] = [
    (
        "/v1/chat/completions",
        "Chat completion (plain or streamed)",
    ),
    ("/v1/completions", "Text completion (plain or streamed)"),
    ("/v1/embeddings", "Embeddings"),
    ("/v1/responses", "Responses API (plain or streamed)"),
];

fn open_security() -> Value {
    json!([{}])
}

/// A reference to a component schema.
fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The error answer gatehouse makes for `status`, with its header.
fn error_response(what: &str) -> Value {
    json!({
        "description": what,
        "headers": {
            "x-gatehouse-error": {
                "description": "The kind of error (absent on an upstream's own error, which passes through untouched)",
                "schema": schema("GatehouseErrorKind")
            }
        },
        "content": { "application/json": { "schema": schema("Error") } }
    })
}

/// The statuses gatehouse itself answers a forwarded call with, and why.
fn forwarded_errors() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "400",
            "invalid JSON, a missing or malformed field, an unscannable body, a `..` path",
        ),
        ("401", "missing or unknown gateway key"),
        (
            "403",
            "blocked by the security policy (`prompt_blocked`, with `categories` and `snippet`)",
        ),
        (
            "404",
            "unknown model (only when no upstream is the default)",
        ),
        ("408", "the body stalled for `proxy.body_idle_secs`"),
        ("413", "body larger than `proxy.max_body_bytes`"),
        ("414", "path longer than 2048 bytes"),
        ("415", "content type is not application/json"),
        (
            "502",
            "no upstream reachable, or its answer broke the HTTP exchange",
        ),
        (
            "504",
            "no response headers from the upstream within `first_byte_secs`",
        ),
    ]
}

/// The success answer plus gatehouse's errors.
fn responses(ok: Value, errors: &[(&str, &str)]) -> Value {
    let mut r = Map::new();
    r.insert("200".into(), ok);
    for (status, what) in errors {
        r.insert((*status).into(), error_response(what));
    }
    r.insert(
        "default".into(),
        json!({ "description": "The upstream's own answer (any status), passed through untouched" }),
    );
    Value::Object(r)
}

fn inference(path: &str, summary: &str) -> Value {
    let streams = path != "/v1/embeddings";
    let mut ok = json!({
        "description": "The upstream's answer, byte-for-byte (an OpenAI-shaped object)",
        "content": { "application/json": { "schema": { "type": "object" } } }
    });
    if streams {
        ok["description"] = json!("The upstream's answer, byte-for-byte; with `\"stream\": true` its server-sent events, each relayed as it arrives (a stream that fails mid-way ends with an `error` event whose `code` is a `GatehouseErrorKind`)");
        ok["content"]["text/event-stream"] = json!({ "schema": { "type": "string" } });
    }
    json!({
        "tags": ["inference"],
        "summary": summary,
        "description": "Scanned (every text the model will read), then forwarded to the upstream the model routes to. `model` may be an alias (`models.aliases`); the end user is `X-Gatehouse-User`, `user`, `safety_identifier` or `metadata.user_id` when the key trusts its clients.",
        "requestBody": {
            "required": true,
            "description": "The provider's request body, as the OpenAI API defines it",
            "content": { "application/json": { "schema": {
                "type": "object",
                "required": ["model"],
                "properties": { "model": { "type": "string", "description": "An alias or an upstream model id (at most 256 bytes)" } }
            } } }
        },
        "responses": responses(ok, &forwarded_errors())
    })
}

fn models(one: bool) -> Value {
    let mut op = json!({
        "tags": ["models"],
        "summary": if one { "One model: an alias or what the default upstream says" } else { "The configured aliases, then the default upstream's list" },
        "responses": responses(
            json!({ "description": "An OpenAI model list (or one model)", "content": { "application/json": { "schema": { "type": "object" } } } }),
            &[("401", "missing or unknown gateway key"), ("404", "no such model"), ("502", "no upstream reachable (`upstream_connect`)"), ("504", "no answer within `first_byte_secs`")],
        )
    });
    if one {
        op["parameters"] = json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" }, "description": "Model id or alias (may contain `/`)" }]);
    }
    op
}

fn generate() -> Value {
    json!({
        "tags": ["seed"],
        "summary": "The seed's generate call: {model_name, messages} → {result, latency, model, usage}",
        "description": "Scanned and forwarded as a chat completion. Every other chat completion field (`max_tokens`, `temperature`, `top_p`, `stop`, `tools`, ...) is passed on; the end user is `user` or `user_id`; with `\"stream\": true` the answer is the upstream's chat completion event stream.",
        "requestBody": { "required": true, "content": { "application/json": { "schema": schema("GenerateRequest") } } },
        "responses": responses(
            json!({ "description": "The answer text and its figures (or, streamed, the event stream)", "content": {
                "application/json": { "schema": schema("GenerateResponse") },
                "text/event-stream": { "schema": { "type": "string" } }
            } }),
            &forwarded_errors(),
        )
    })
}

fn feedback() -> Value {
    json!({
        "tags": ["feedback"],
        "summary": "Rate an earlier answer of this key",
        "description": "Only a request that exists, made with the same gateway key, once.",
        "requestBody": { "required": true, "content": { "application/json": { "schema": schema("Feedback") } } },
        "responses": {
            "202": { "description": "Stored", "content": { "application/json": { "schema": { "type": "object", "properties": { "status": { "const": "accepted" } } } } } },
            "400": error_response("bad JSON, a score outside 0..1, a missing or over-long request_id"),
            "401": error_response("missing or unknown gateway key"),
            "404": error_response("no such request of this key (`unknown_request`), or no store"),
            "409": error_response("rated already (`already_rated`)"),
            "503": error_response("feedback cannot be stored right now")
        }
    })
}

fn health() -> Value {
    json!({
        "tags": ["meta"], "summary": "The process is up", "security": open_security(),
        "responses": { "200": { "description": "`{\"status\": \"ok\"}`" } }
    })
}

fn ready() -> Value {
    json!({
        "tags": ["meta"], "summary": "Config loaded and the default upstream reachable (cached 10 s)", "security": open_security(),
        "responses": {
            "200": { "description": "`{status: \"ready\", upstream, store: \"ok\"|\"failing\", store_buffered, store_dropped}`; a failing store does not make the proxy unready" },
            "503": { "description": "`{status: \"upstream unreachable\", ...}`" }
        }
    })
}

fn self_doc() -> Value {
    json!({
        "tags": ["meta"], "summary": "This document", "security": open_security(),
        "responses": { "200": { "description": "OpenAPI 3.1", "content": { "application/json": { "schema": { "type": "object" } } } } }
    })
}

fn passthrough_op(method: &http::Method, prefix: &str, deeper: bool) -> Value {
    let mut op = json!({
        "tags": ["passthrough"],
        "summary": if deeper { format!("Any path under {prefix}, forwarded unread") } else { format!("{method} {prefix}, forwarded unread") },
        "description": "Allowed by `proxy.passthrough`; forwarded to the default upstream without being read or scanned. Any other /v1/* path is 404.",
        "responses": {
            "default": { "description": "The upstream's answer, passed through untouched" },
            "401": error_response("missing or unknown gateway key"),
            "502": error_response("no upstream reachable")
        }
    });
    if deeper {
        op["parameters"] = json!([{ "name": "path", "in": "path", "required": true, "schema": { "type": "string" }, "description": "The rest of the path (may contain `/`)" }]);
    }
    op
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "description": "The OpenAI error shape, so SDKs raise their usual exception classes.",
        "required": ["error"],
        "properties": { "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": { "type": "string" },
                "type": { "type": "string", "enum": ["invalid_request_error", "authentication_error", "permission_error", "server_error"] },
                "param": { "type": ["string", "null"] },
                "code": { "type": "string", "description": "The kind (`GatehouseErrorKind`), but `invalid_api_key` for unauthorized and `model_not_found` for unknown_model, as OpenAI names them" },
                "categories": { "type": "array", "items": { "type": "string" }, "description": "prompt_blocked only: the threat categories found" },
                "snippet": { "type": "string", "description": "prompt_blocked only: a short, masked excerpt of what matched" }
            }
        } }
    })
}

fn kind_schema() -> Value {
    let list: Vec<String> = Kind::ALL
        .iter()
        .map(|k| format!("- `{}`: {}", k.as_str(), k.describe()))
        .collect();
    json!({
        "type": "string",
        "description": format!("Every kind of error gatehouse names, in the `x-gatehouse-error` header, the `code` of a stream's error event and the request record:\n\n{}", list.join("\n")),
        "enum": Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>()
    })
}

fn generate_request() -> Value {
    json!({
        "type": "object",
        "required": ["model_name", "messages"],
        "properties": {
            "model_name": { "type": "string", "description": "An alias or upstream model id" },
            "messages": { "type": "array", "items": { "type": "object" }, "description": "Chat messages, as chat completions take them" },
            "user": { "type": "string" },
            "user_id": { "type": "string", "description": "The end user, as `user`" },
            "stream": { "type": "boolean" }
        },
        "additionalProperties": { "description": "Any other chat completion field, passed on" }
    })
}

fn generate_response() -> Value {
    json!({
        "type": "object",
        "properties": {
            "result": { "type": "string", "description": "The answer text" },
            "latency": { "type": "number", "description": "Seconds" },
            "model": { "type": "string", "description": "The model the upstream ran" },
            "usage": { "type": "object", "description": "The upstream's token usage" }
        }
    })
}

fn feedback_schema() -> Value {
    json!({
        "type": "object",
        "required": ["request_id", "score"],
        "properties": {
            "request_id": { "type": "string", "description": "The `x-gatehouse-request-id` of the answer rated (at most 128 bytes)" },
            "score": { "type": "number", "minimum": 0, "maximum": 1, "description": "1 good, 0 bad" },
            "comment": { "type": ["string", "null"] }
        }
    })
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::super::route::{route, Passthrough, Route};
    use super::*;

    /// Every documented operation is one the router serves, and every kind is listed.
    #[test]
    fn every_documented_path_is_routed() {
        let entries = vec!["GET /v1/files".to_owned(), "GET /v1/files/*".to_owned()];
        let passthrough = Passthrough::parse(&entries).expect("entries");
        let doc = document(&entries);
        let paths = doc["paths"].as_object().expect("paths");
        for (path, item) in paths {
            let concrete = path
                .replace("{id}", "openai/gpt-4o")
                .replace("{path}", "file-1");
            for method in item.as_object().expect("operations").keys() {
                let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method");
                let r = route(&m, &concrete, &passthrough);
                assert!(
                    !matches!(r, Route::NotFound | Route::MethodNotAllowed),
                    "{method} {path} is documented but routed to {r:?}"
                );
            }
        }
        assert!(paths.contains_key("/v1/files/{path}"));
        let kinds = doc["components"]["schemas"]["GatehouseErrorKind"]["enum"]
            .as_array()
            .expect("kinds");
        assert_eq!(kinds.len(), Kind::ALL.len());
    }
}
