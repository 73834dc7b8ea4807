//! The answers the proxy port makes itself: `/health`, `/ready`, `/v1/models` (aliases plus the
//! upstream's list) and the seed document's `POST /generate`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::body::ProxyBody;
use super::error::ProxyError;
use super::feedback::{Rating, Refusal, Requester};
use super::handle::{authenticate, forward, outbound, read_body, Done};
use super::record::Recorder;
use super::route::Route;
use super::runtime::Runtime;
use super::Proxy;
use crate::event::Endpoint;
use crate::llm::parse_answer;

/// How long a readiness answer is reused, so probes do not hammer the upstream.
const READY_TTL: Duration = Duration::from_secs(10);
/// Largest upstream answer gatehouse reads whole for `/v1/models` and `/generate`.
const READ_LIMIT: usize = 32 * 1024 * 1024;

fn json_response(status: StatusCode, body: Value) -> Response<Bytes> {
    let mut rsp = Response::new(Bytes::from(body.to_string()));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    rsp
}

fn unrecorded(rsp: Response<Bytes>) -> Response<ProxyBody> {
    let (parts, body) = rsp.into_parts();
    Response::from_parts(
        parts,
        ProxyBody::Full {
            data: Some(body),
            rec: None,
        },
    )
}

/// `/health`: the process is up.
pub fn health() -> Response<ProxyBody> {
    unrecorded(json_response(StatusCode::OK, json!({"status": "ok"})))
}

/// `/openapi.json`: this port's OpenAPI document, for the passthrough list now configured.
pub fn openapi(rt: &Runtime) -> Response<ProxyBody> {
    let doc = super::openapi::document(&rt.config.proxy.passthrough);
    unrecorded(json_response(StatusCode::OK, doc))
}

/// `/ready`: config loaded and the default upstream reachable (any HTTP answer counts). The
/// body also says whether the event store is writing (`store`: `ok` or `failing`, with the
/// records waiting and dropped).
///
/// A failing store does not make the proxy unready: readiness decides whether the pod gets
/// traffic, and the proxy still serves it (records wait in the store's retry buffer, then are
/// dropped and counted). Taking every replica out of the Service because a shared database or
/// a disk is down would turn a loss of records into an outage without freeing a byte. The
/// store is alerted on (`store_failing`) and shown here and in `gatehouse_store_failing`. The
/// store's error text stays out of this unauthenticated answer; it is in the log and alert.
pub async fn ready(proxy: &Proxy) -> Response<ProxyBody> {
    let rt = proxy.runtime.load_full();
    let cached = proxy.ready.lock().ok().and_then(|c| *c);
    let reachable = match cached {
        Some((at, ok)) if at.elapsed() < READY_TTL => ok,
        _ => {
            let ok = probe(&rt).await;
            if let Ok(mut c) = proxy.ready.lock() {
                *c = Some((Instant::now(), ok));
            }
            ok
        }
    };
    let (status, state) = if reachable {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "upstream unreachable")
    };
    let upstream = rt.default_upstream().map(|u| u.name.to_string());
    let store = proxy.metrics.store_health();
    unrecorded(json_response(
        status,
        json!({
            "status": state,
            "upstream": upstream,
            "store": if store.failing { "failing" } else { "ok" },
            "store_buffered": store.buffered,
            "store_dropped": store.dropped,
        }),
    ))
}

async fn probe(rt: &Runtime) -> bool {
    let Some(up) = rt.default_upstream() else {
        return true;
    };
    let out = super::upstream::Outbound {
        method: http::Method::GET,
        path: "/models".into(),
        headers: http::HeaderMap::new(),
        body: Bytes::new(),
        passthrough_auth: false,
    };
    let probe = up.send_once(&out);
    matches!(
        tokio::time::timeout(Duration::from_secs(3), probe).await,
        Ok(Ok(_))
    )
}

/// `GET /v1/models`: the aliases, then what the default upstream lists. `GET /v1/models/{id}`:
/// an alias answered here, anything else from the upstream.
pub async fn models(
    proxy: &Proxy,
    rt: &Runtime,
    rec: &mut Recorder,
    route: Route,
    req: Request<Incoming>,
) -> Result<Done, ProxyError> {
    rec.ex().endpoint = Endpoint::Models;
    let (parts, body, _) = authenticate(proxy, rt, rec, req)?;
    let _ = read_body(rt, rec, &parts, body).await?;
    if route == Route::Model {
        let id = parts
            .uri
            .path()
            .trim_start_matches("/v1/models/")
            .to_owned();
        if rt.alias_names().contains(&id.as_str()) {
            return Ok(Done::Made(json_response(StatusCode::OK, alias_object(&id))));
        }
    }
    let Some(upstream) = rt.default_upstream().cloned() else {
        let data: Vec<Value> = rt.alias_names().into_iter().map(alias_object).collect();
        return Ok(Done::Made(json_response(
            StatusCode::OK,
            json!({"object": "list", "data": data}),
        )));
    };
    let path = super::handle::upstream_path(&parts.uri);
    let out = outbound(rt, parts, path, Bytes::new());
    let relayed = forward(rt, rec, &upstream, &out).await?;
    if route == Route::Model || !relayed.rsp.status().is_success() {
        return Ok(Done::Relay(relayed));
    }
    let listed = read_whole(relayed.rsp.into_body()).await;
    let upstream_list: Vec<Value> = serde_json::from_slice::<Value>(&listed)
        .ok()
        .and_then(|mut v| v.get_mut("data").map(Value::take))
        .and_then(|v| match v {
            Value::Array(a) => Some(a),
            _ => None,
        })
        .unwrap_or_default();
    let mut data: Vec<Value> = rt.alias_names().into_iter().map(alias_object).collect();
    data.extend(upstream_list);
    Ok(Done::Made(json_response(
        StatusCode::OK,
        json!({"object": "list", "data": data}),
    )))
}

fn alias_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "gatehouse"})
}

async fn read_whole(body: Incoming) -> Bytes {
    match Limited::new(body, READ_LIMIT).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    }
}

/// The seed's `POST /generate` `{model_name, messages, ...}` → `{result, latency, model, usage}`.
/// Every other field a chat completion takes (`max_tokens`, `temperature`, `top_p`, `stop`,
/// `tools`, ...) is passed on as sent; the end user is `user` or `user_id`. With
/// `"stream": true` the answer is the upstream's chat-completion event stream, relayed as the
/// chat route relays it.
pub async fn generate(
    proxy: &Proxy,
    rt: &Runtime,
    rec: &mut Recorder,
    req: Request<Incoming>,
) -> Result<Done, ProxyError> {
    rec.ex().endpoint = Endpoint::Generate;
    let (parts, body, key) = authenticate(proxy, rt, rec, req)?;
    let body = read_body(rt, rec, &parts, body).await?;
    let expected =
        "expected {\"model_name\": string, \"messages\": array, ...chat completion fields}";
    let mut fields: serde_json::Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| ProxyError::InvalidField(format!("{expected}: {e}")))?;
    let model_name = match fields.remove("model_name") {
        Some(Value::String(m)) => m,
        _ => {
            return Err(ProxyError::InvalidField(format!(
                "{expected}: \"model_name\" must be a string"
            )))
        }
    };
    if !fields.get("messages").is_some_and(Value::is_array) {
        return Err(ProxyError::InvalidField(
            "\"messages\" must be an array".into(),
        ));
    }
    if let Some(id) = fields.remove("user_id") {
        fields.entry("user").or_insert(id);
    }
    let stream = fields
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let include_usage = fields
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if stream {
        fields.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let user = match fields.get("user") {
        Some(Value::String(u)) => Some(u.as_str()),
        Some(_) => return Err(ProxyError::InvalidField("\"user\" must be a string".into())),
        None => None,
    };
    let target = super::handle::resolve(rt, rec, Some(&model_name), user, None)?;
    super::limit::check_model(key.as_ref(), &model_name, &target)?;
    rec.ex().stream = stream;
    fields.insert("model".into(), Value::String(target.model.to_string()));
    let chat = Bytes::from(Value::Object(fields).to_string());
    super::handle::capture_prompt(rt, rec, &chat);
    super::handle::inspect_request(proxy, rt, rec, &chat).await?;
    super::limit::admit(proxy, rt, rec, key.as_ref(), chat.len())?;
    let mut out = outbound(rt, parts, "/chat/completions".into(), chat);
    out.method = http::Method::POST;
    out.headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let relayed = forward(rt, rec, &target.upstream, &out).await?;
    if stream {
        let strip_usage = !include_usage;
        return super::handle::answer(rt, rec, Endpoint::ChatCompletions, relayed, strip_usage)
            .await;
    }
    if !relayed.rsp.status().is_success() {
        return Ok(Done::Relay(relayed));
    }
    let answer_bytes = read_whole(relayed.rsp.into_body()).await;
    let answer = parse_answer(&answer_bytes);
    let latency = rec.started().elapsed().as_secs_f64();
    let ex = rec.ex();
    ex.usage = answer.usage.unwrap_or_default();
    ex.cost = answer.cost;
    ex.response_model = answer.model.clone();
    ex.response_chars = Some(answer.text_chars);
    ex.ttft = ex.ttfb;
    if let Some(mut text) = rt.capture.and_then(|c| c.answer()) {
        text.push(&answer.text);
        text.finish(ex);
    }
    let usage = json!({
        "prompt_tokens": ex.usage.prompt_tokens,
        "completion_tokens": ex.usage.completion_tokens,
        "total_tokens": ex.usage.total(),
    });
    let model = answer.model.unwrap_or(model_name);
    let body = json!({"result": answer.text, "latency": latency, "model": model, "usage": usage});
    Ok(Done::Made(json_response(StatusCode::OK, body)))
}

/// Largest feedback body accepted.
const FEEDBACK_MAX: usize = 16 * 1024;
/// Longest wait for the store's answer to a rating.
const FEEDBACK_WAIT: Duration = Duration::from_secs(10);

/// `POST /v1/feedback` `{request_id, score, comment}` with the client's own key: validated here,
/// then checked and stored by the consumer `app` wired (see `feedback`): 202 once stored, 404
/// for an id that is unknown or not the caller's, 409 for one rated already. Not an inference,
/// so not recorded as an `Exchange`.
pub async fn feedback(proxy: &Proxy, req: Request<Incoming>) -> Response<ProxyBody> {
    match rate(proxy, req).await {
        Ok(()) => unrecorded(json_response(
            StatusCode::ACCEPTED,
            json!({"status": "accepted"}),
        )),
        Err(e) => {
            let (parts, body) = e.to_response("").into_parts();
            Response::from_parts(
                parts,
                ProxyBody::Full {
                    data: Some(body),
                    rec: None,
                },
            )
        }
    }
}

async fn rate(proxy: &Proxy, req: Request<Incoming>) -> Result<(), ProxyError> {
    let rt = proxy.runtime.load_full();
    let identity = rt
        .identify(
            super::handle::bearer(req.headers()),
            &proxy.keys,
            super::limit::now_ms(),
        )
        .map_err(|_| ProxyError::Unauthorized)?;
    let tx = proxy
        .feedback
        .as_ref()
        .ok_or_else(|| ProxyError::NotFound {
            method: "POST".into(),
            path: "/v1/feedback".into(),
        })?;
    // The rater is its key, as `handle::authenticate` records a request's key.
    let rater = identity.map(|id| Requester {
        user: Some(id.user.to_string()),
        team: id.team.map(|t| t.to_string()),
    });
    let body = Limited::new(req.into_body(), FEEDBACK_MAX)
        .collect()
        .await
        .map_err(|_| ProxyError::BodyTooLarge {
            limit: FEEDBACK_MAX,
        })?
        .to_bytes();
    let fb: crate::event::Feedback = serde_json::from_slice(&body).map_err(|e| {
        ProxyError::InvalidField(format!(
            "expected {{\"request_id\": string, \"score\": 0..1, \"comment\"?: string}}: {e}"
        ))
    })?;
    fb.validate()
        .map_err(|msg| ProxyError::InvalidField(msg.to_owned()))?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    let rating = Rating {
        feedback: fb,
        rater,
        reply,
    };
    tx.try_send(rating)
        .map_err(|_| ProxyError::FeedbackUnavailable)?;
    match tokio::time::timeout(FEEDBACK_WAIT, answer).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(Refusal::Unknown))) => Err(ProxyError::UnknownRequest),
        Ok(Ok(Err(Refusal::Rated))) => Err(ProxyError::AlreadyRated),
        Ok(Ok(Err(Refusal::Unavailable))) | Ok(Err(_)) | Err(_) => {
            Err(ProxyError::FeedbackUnavailable)
        }
    }
}
