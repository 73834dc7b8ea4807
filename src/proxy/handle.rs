//! The life of a proxied request, in order: **route → read request (bounded) → inspect request →
//! limit → forward → relay response → record**. Each phase is a short function; the request's
//! record lives in a `Recorder` created first and carried by whatever response is returned.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::body::{ProxyBody, Reading, Relay};
use super::error::ProxyError;
use super::record::Recorder;
use super::route::{route, Route};
use super::runtime::{Identity, Runtime, Target};
use super::upstream::{Outbound, Upstream};
use super::{extras, Proxy};
use crate::config::AuthMode;
use crate::detect::ResponseWindow;
use crate::event::{Blame, Endpoint, Exchange, Outcome};
use crate::llm::{RequestView, StreamKind};

/// Entry point for every request on the proxy listener.
pub async fn handle(proxy: Arc<Proxy>, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let rt = proxy.runtime.load_full();
    let normalised = normalise(&mut req);
    let route = route(req.method(), req.uri().path(), &rt.passthrough);
    match route {
        Route::Health => return extras::health(),
        Route::Ready => return extras::ready(&proxy).await,
        Route::OpenApi => return extras::openapi(&rt),
        Route::Feedback if normalised.is_ok() => return extras::feedback(&proxy, req).await,
        _ => {}
    }
    let id = super::id::request_id();
    let path = req.uri().path();
    let ex = Exchange::new(
        id,
        req.method().as_str(),
        crate::redact::cap(path, MAX_PATH_BYTES),
    );
    let mut rec = Recorder::begin(proxy.records.clone(), proxy.metrics.clone(), ex);
    if let Err(e) = normalised {
        return error_response(rec, &e);
    }
    let result = match route {
        Route::Inference(endpoint) => inference(&proxy, &rt, &mut rec, endpoint, req).await,
        Route::Generate => extras::generate(&proxy, &rt, &mut rec, req).await,
        Route::Models | Route::Model => extras::models(&proxy, &rt, &mut rec, route, req).await,
        Route::Passthrough => passthrough(&proxy, &rt, &mut rec, req).await,
        Route::NotFound if req.uri().path().starts_with("/api/") => Err(ProxyError::AdminRoute {
            path: req.uri().path().to_owned(),
            admin: rt.config.admin.listen.clone(),
        }),
        Route::NotFound | Route::Health | Route::Ready | Route::OpenApi | Route::Feedback => {
            Err(ProxyError::NotFound {
                method: req.method().to_string(),
                path: req.uri().path().to_owned(),
            })
        }
        Route::MethodNotAllowed => Err(ProxyError::MethodNotAllowed {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
        }),
    };
    let rate = rec.rate_headers();
    let mut rsp = match result {
        Ok(Done::Relay(rsp)) => attach(rec, rsp, rt.capture.as_ref()),
        Ok(Done::Made(rsp)) => made(rec, rsp, Outcome::Ok),
        Err(e) => error_response(rec, &e),
    };
    if let Some(rate) = rate {
        super::limit::set_headers(rsp.headers_mut(), &rate);
    }
    rsp
}

/// Longest request path routed (the record, the store and the upstream each keep it).
pub const MAX_PATH_BYTES: usize = 2048;

/// Longest model name, end-user id or session id accepted: each reaches the record, the store
/// and the analytics, so a client cannot make them grow without bound.
pub const MAX_ID_BYTES: usize = 256;

/// Refuses an id longer than [`MAX_ID_BYTES`].
///
/// # Errors
/// `InvalidField` naming the field.
fn bounded(field: &str, value: Option<&str>) -> Result<(), ProxyError> {
    match value {
        Some(v) if v.len() > MAX_ID_BYTES => Err(ProxyError::InvalidField(format!(
            "{field} is longer than {MAX_ID_BYTES} bytes"
        ))),
        _ => Ok(()),
    }
}

/// Rewrites the request's path to its canonical spelling (see [`super::route::normalise_path`])
/// so routing, scanning, the record and the upstream all see one path.
///
/// # Errors
/// `BadPath` for a `..` segment; the path is left as sent.
fn normalise(req: &mut Request<Incoming>) -> Result<(), ProxyError> {
    let uri = req.uri();
    if uri.path().len() > MAX_PATH_BYTES {
        return Err(ProxyError::PathTooLong {
            limit: MAX_PATH_BYTES,
        });
    }
    let path = match super::route::normalise_path(uri.path()) {
        Ok(std::borrow::Cow::Borrowed(_)) => return Ok(()),
        Ok(std::borrow::Cow::Owned(p)) => p,
        Err(_) => return Err(ProxyError::BadPath),
    };
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().map_err(|_| ProxyError::BadPath)?);
    *req.uri_mut() = http::Uri::from_parts(parts).map_err(|_| ProxyError::BadPath)?;
    Ok(())
}

/// What a phase sequence ends with.
pub enum Done {
    /// The upstream's response, to relay.
    Relay(Relayed),
    /// A response gatehouse made itself.
    Made(Response<Bytes>),
}

/// An upstream response and how to read it on the way through.
pub struct Relayed {
    pub rsp: Response<Incoming>,
    pub reading: Reading,
    pub upstream: Arc<Upstream>,
    /// Scanning of the answer's text, when configured.
    pub scan: Option<super::body::ResponseScan>,
}

/// Chat, completions, embeddings and responses calls.
async fn inference(
    proxy: &Proxy,
    rt: &Runtime,
    rec: &mut Recorder,
    endpoint: Endpoint,
    req: Request<Incoming>,
) -> Result<Done, ProxyError> {
    rec.ex().endpoint = endpoint;
    let (parts, body, key) = authenticate(proxy, rt, rec, req)?;
    check_json(&parts.headers)?;
    let body = read_body(rt, rec, &parts, body).await?;
    let view = RequestView::parse(&body).map_err(ProxyError::InvalidBody)?;
    let target = resolve(
        rt,
        rec,
        view.model.as_deref(),
        view.user.as_deref(),
        view.session.as_deref(),
    )?;
    super::limit::check_model(key.as_ref(), view.model.as_deref().unwrap_or(""), &target)?;
    rec.ex().stream = view.stream;
    capture_prompt(rt, rec, &body);
    inspect_request(proxy, rt, rec, &body).await?;
    super::limit::admit(proxy, rt, rec, key.as_ref(), body.len())?;
    // The body bytes that may change, and why: the alias becomes the upstream's model id; a
    // streamed chat/completions call asks for usage so the record has token counts.
    let wants_usage =
        view.stream && matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions);
    let upstream_model = target.is_alias.then_some(&*target.model);
    let out_body = view.patch(&body, upstream_model, wants_usage);
    let path = upstream_path(&parts.uri);
    let out = outbound(rt, parts, path, out_body);
    let relayed = forward(rt, rec, &target.upstream, &out).await?;
    answer(
        rt,
        rec,
        endpoint,
        relayed,
        wants_usage && !view.include_usage,
    )
    .await
}

/// How an upstream answer is relayed: opaque on failure, event by event for a stream (without
/// the usage chunk gatehouse asked for when `strip_usage`), and scanned when response scanning
/// is on.
pub async fn answer(
    rt: &Runtime,
    rec: &mut Recorder,
    endpoint: Endpoint,
    relayed: Relayed,
    strip_usage: bool,
) -> Result<Done, ProxyError> {
    let reading = match (
        relayed.rsp.status().is_success(),
        is_event_stream(&relayed.rsp),
    ) {
        (false, _) => Reading::Opaque,
        (true, true) => Reading::Events {
            kind: if endpoint == Endpoint::Responses {
                StreamKind::Responses
            } else {
                StreamKind::Chunks
            },
            strip_usage,
        },
        (true, false) => Reading::Plain,
    };
    let scanning = rt.guard.as_ref().filter(|g| g.scan_responses);
    match (scanning, &reading) {
        (Some(g), Reading::Events { .. }) => {
            let scan = super::body::ResponseScan {
                window: ResponseWindow::new(&g.detector),
                shadow: g.detector.settings().shadow,
            };
            Ok(Done::Relay(Relayed {
                reading,
                scan: Some(scan),
                ..relayed
            }))
        }
        (Some(g), Reading::Plain) => super::guard::scan_plain_answer(g, rec, relayed).await,
        _ => Ok(Done::Relay(Relayed { reading, ..relayed })),
    }
}

/// Runs the detector over what the model will read, when detection is on.
pub async fn inspect_request(
    proxy: &Proxy,
    rt: &Runtime,
    rec: &mut Recorder,
    body: &Bytes,
) -> Result<(), ProxyError> {
    match &rt.guard {
        Some(guard) => super::guard::inspect(guard, proxy.behaviour.as_ref(), rec.ex(), body).await,
        None => Ok(()),
    }
}

/// Keeps the head of the prompt in the record, when text capture is on.
pub fn capture_prompt(rt: &Runtime, rec: &mut Recorder, body: &[u8]) {
    if let Some(c) = &rt.capture {
        c.prompt(rec.ex(), body);
    }
}

/// Any other `/v1/*` path: forwarded to the default upstream, unread.
async fn passthrough(
    proxy: &Proxy,
    rt: &Runtime,
    rec: &mut Recorder,
    req: Request<Incoming>,
) -> Result<Done, ProxyError> {
    let (parts, body, _) = authenticate(proxy, rt, rec, req)?;
    let body = read_body(rt, rec, &parts, body).await?;
    let upstream = rt
        .default_upstream()
        .cloned()
        .ok_or_else(|| ProxyError::NotFound {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
        })?;
    let path = upstream_path(&parts.uri);
    let out = outbound(rt, parts, path, body);
    let relayed = forward(rt, rec, &upstream, &out).await?;
    Ok(Done::Relay(Relayed {
        reading: Reading::Opaque,
        ..relayed
    }))
}

/// Checks the gateway key and fills in who is calling; returns the key's identity, if a key
/// named the caller.
pub fn authenticate(
    proxy: &Proxy,
    rt: &Runtime,
    rec: &mut Recorder,
    req: Request<Incoming>,
) -> Result<(http::request::Parts, Incoming, Option<Identity>), ProxyError> {
    let (parts, body) = req.into_parts();
    let identity = rt
        .identify(bearer(&parts.headers), &proxy.keys, super::limit::now_ms())
        .map_err(|_| ProxyError::Unauthorized)?;
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let session = header("x-gatehouse-session");
    bounded("X-Gatehouse-Session", session.as_deref())?;
    bounded("X-Gatehouse-User", header("x-gatehouse-user").as_deref())?;
    let ex = rec.ex();
    ex.session = session;
    match &identity {
        // Without keys, whoever calls names the user (nothing to check it against).
        None => ex.user = header("x-gatehouse-user"),
        // A key names its user; the client's end-user id (header, then the body's `user`) is
        // recorded only when the key trusts it, and is otherwise never read. With no end-user
        // id the key's user is recorded (see `Recorder`).
        Some(id) => {
            if id.trusts_end_users {
                ex.user = header("x-gatehouse-user");
            } else {
                ex.user = Some(id.user.to_string());
            }
            ex.key_user = Some(id.user.to_string());
            ex.team = id.team.as_ref().map(|t| t.to_string());
        }
    }
    Ok((parts, body, identity))
}

/// The key of an `Authorization: Bearer <key>` header (scheme matched case-insensitively).
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

fn check_json(headers: &http::HeaderMap) -> Result<(), ProxyError> {
    match headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or(""))
    {
        None => Ok(()),
        Some(ct)
            if ct
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json") =>
        {
            Ok(())
        }
        Some(_) => Err(ProxyError::UnsupportedMediaType),
    }
}

/// Reads the request body, refusing more than the configured limit and a body that goes
/// `proxy.body_idle_secs` without a byte.
pub async fn read_body(
    rt: &Runtime,
    rec: &mut Recorder,
    parts: &http::request::Parts,
    body: Incoming,
) -> Result<Bytes, ProxyError> {
    let limit = rt.max_body;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    let idle = std::time::Duration::from_secs(rt.config.proxy.body_idle_secs);
    let mut body = Limited::new(body, limit);
    let mut chunks: Vec<Bytes> = Vec::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(ProxyError::BodyTimeout {
                    secs: idle.as_secs(),
                })
            }
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => {
                return Err(match e.downcast::<hyper::Error>() {
                    Ok(h) => ProxyError::BodyRead(*h),
                    Err(_) => ProxyError::BodyTooLarge { limit },
                })
            }
        };
        if let Ok(data) = frame.into_data() {
            chunks.push(data);
        }
    }
    let bytes = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => Bytes::from(chunks.concat()),
    };
    rec.ex().bytes_in = bytes.len() as u64;
    Ok(bytes)
}

/// The model, its target upstream, and the identity fields the body carries.
/// The body's end user and session fill in what the headers and key left open (each bounded);
/// then the model is resolved to its upstream. Shared by the inference routes and `/generate`.
pub fn resolve(
    rt: &Runtime,
    rec: &mut Recorder,
    model: Option<&str>,
    user: Option<&str>,
    session: Option<&str>,
) -> Result<Target, ProxyError> {
    bounded("model", model)?;
    let ex = rec.ex();
    if ex.user.is_none() {
        bounded("user", user)?;
        ex.user = user.map(str::to_owned);
    }
    if ex.session.is_none() {
        bounded("metadata.session_id", session)?;
        ex.session = session.map(str::to_owned);
    }
    let model = model.ok_or(ProxyError::MissingModel)?;
    ex.model = Some(model.to_owned());
    let target = rt.target(model).ok_or_else(|| ProxyError::UnknownModel {
        model: model.to_owned(),
    })?;
    ex.upstream_model = Some(target.model.to_string());
    ex.model_known = target.is_alias;
    ex.upstream = Some(target.upstream.name.clone());
    Ok(target)
}

/// The path below the upstream's base URL: the client's path without `/v1`, with its query.
pub fn upstream_path(uri: &http::Uri) -> String {
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    pq.strip_prefix("/v1").unwrap_or(pq).to_owned()
}

pub fn outbound(rt: &Runtime, parts: http::request::Parts, path: String, body: Bytes) -> Outbound {
    Outbound {
        method: parts.method,
        path,
        headers: parts.headers,
        body,
        passthrough_auth: rt.auth_mode == AuthMode::Passthrough,
    }
}

/// Sends upstream: the target's attempts, then its fallbacks while the answer is a failure.
pub async fn forward(
    rt: &Runtime,
    rec: &mut Recorder,
    first: &Arc<Upstream>,
    out: &Outbound,
) -> Result<Relayed, ProxyError> {
    let mut attempts = 0;
    let mut upstream = first.clone();
    let mut result = upstream.send(out, &mut attempts).await;
    for name in &first.fallbacks {
        let failed = match &result {
            Ok(rsp) => {
                rsp.status() == StatusCode::TOO_MANY_REQUESTS || rsp.status().is_server_error()
            }
            Err(_) => true,
        };
        let Some(next) = rt.upstream(name).filter(|_| failed) else {
            break;
        };
        tracing::info!(from = %upstream.name, to = %next.name, "falling back to another upstream");
        drop(result);
        upstream = next.clone();
        result = upstream.send(out, &mut attempts).await;
    }
    let ex = rec.ex();
    ex.attempts = attempts;
    ex.upstream = Some(upstream.name.clone());
    let rsp = result?;
    let ttfb = rec.started().elapsed();
    let ex = rec.ex();
    ex.ttfb = Some(ttfb);
    ex.status = rsp.status().as_u16();
    let h = rsp.headers();
    ex.upstream_request_id = ["x-request-id", "x-generation-id"]
        .iter()
        .find_map(|n| h.get(*n).and_then(|v| v.to_str().ok()).map(str::to_owned));
    if !rsp.status().is_success() {
        ex.outcome = Outcome::UpstreamError;
        ex.error_kind = Some(super::kind::Kind::UpstreamStatus.as_str());
        let blame = rsp.status() == StatusCode::TOO_MANY_REQUESTS || rsp.status().is_server_error();
        ex.blame = Some(if blame {
            Blame::Upstream
        } else {
            Blame::Client
        });
    }
    Ok(Relayed {
        rsp,
        reading: Reading::Opaque,
        upstream,
        scan: None,
    })
}

fn is_event_stream(rsp: &Response<Incoming>) -> bool {
    rsp.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// The upstream's response with its body relayed and the record attached.
fn attach(
    mut rec: Recorder,
    r: Relayed,
    capture: Option<&super::capture::TextCapture>,
) -> Response<ProxyBody> {
    let (parts, body) = r.rsp.into_parts();
    let strip = r.scan.is_some()
        || matches!(
            r.reading,
            Reading::Events {
                strip_usage: true,
                ..
            }
        );
    let mut rsp = Response::new(ProxyBody::Full {
        data: None,
        rec: None,
    });
    *rsp.status_mut() = parts.status;
    *rsp.version_mut() = http::Version::HTTP_11;
    super::headers::copy_response_headers(&parts.headers, rsp.headers_mut(), !strip);
    request_id_header(&mut rsp, &rec.ex().id);
    let answer = capture
        .and_then(|c| c.answer())
        .filter(|_| !matches!(r.reading, Reading::Opaque));
    let relay = Relay::new(body, rec, r.reading, r.upstream.idle, r.upstream.total)
        .with_scan(r.scan)
        .with_answer(answer);
    *rsp.body_mut() = ProxyBody::Relay(Box::new(relay));
    rsp
}

/// A gatehouse-made response that is not an error.
pub fn made(mut rec: Recorder, rsp: Response<Bytes>, outcome: Outcome) -> Response<ProxyBody> {
    let ex = rec.ex();
    ex.status = rsp.status().as_u16();
    ex.outcome = outcome;
    let id = ex.id.clone();
    let (parts, body) = rsp.into_parts();
    let mut rsp = Response::from_parts(parts, ProxyBody::full(body, rec));
    request_id_header(&mut rsp, &id);
    rsp
}

fn error_response(mut rec: Recorder, e: &ProxyError) -> Response<ProxyBody> {
    let ex = rec.ex();
    ex.status = e.status().as_u16();
    ex.outcome = e.outcome();
    ex.error_kind = Some(e.kind());
    ex.blame = Some(e.blame());
    if e.blame() != Blame::Client {
        tracing::warn!(request_id = %ex.id, kind = e.kind(), error = %e, "request failed");
    }
    let (parts, body) = e.to_response(&ex.id).into_parts();
    Response::from_parts(parts, ProxyBody::full(body, rec))
}

fn request_id_header<B>(rsp: &mut Response<B>, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        rsp.headers_mut().insert("x-gatehouse-request-id", v);
    }
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn bearer_reads_the_key_whatever_the_scheme_case() {
        let cases = [
            ("Bearer k1", Some("k1")),
            ("bearer k2 ", Some("k2")),
            ("BEARER k3", Some("k3")),
            ("Basic dXNlcg==", None),
            ("Bearer", None),
        ];
        for (value, want) in cases {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::AUTHORIZATION, value.parse().expect("header"));
            assert_eq!(bearer(&h), want, "{value:?}");
        }
        assert_eq!(bearer(&http::HeaderMap::new()), None);
    }
}
