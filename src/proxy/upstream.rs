//! Upstreams: a named OpenAI-compatible base URL with its key, extra headers, timeouts, retry
//! policy and its own pooled HTTP client; and `send`, which makes the attempts.
//!
//! Retries happen only before the first response byte reaches the client: on connect errors,
//! 429 and 5xx, with exponential back-off and jitter (a `retry-after` up to the back-off cap is
//! honoured). When the retries of one upstream are spent, its fallbacks are tried in order. The
//! answer of the last attempt is passed through untouched, whatever it is.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::error::ProxyError;
use crate::config::{Secret, UpstreamConfig};

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Longest back-off between two attempts, and the largest `retry-after` honoured.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// An upstream, built from validated config.
pub struct Upstream {
    pub name: Arc<str>,
    /// Base URL without a trailing slash, e.g. `https://openrouter.ai/api/v1`.
    base: String,
    key: Option<Secret>,
    headers: Vec<(HeaderName, HeaderValue)>,
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    pub total: Duration,
    retries: u32,
    backoff: Duration,
    /// Filled in after all upstreams exist (fallbacks may point at each other).
    pub fallbacks: Vec<Arc<str>>,
    client: HttpClient,
}

/// What the caller asks an upstream for.
pub struct Outbound {
    pub method: Method,
    /// Path below `/v1`, with query, e.g. `/chat/completions?x=1`.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Send the client's `Authorization` unchanged instead of the upstream key.
    pub passthrough_auth: bool,
}

impl Upstream {
    /// Builds an upstream and its client. The key is read now; a missing key is returned as a
    /// warning (the upstream will answer 401 itself).
    pub fn build(name: &str, c: &UpstreamConfig) -> (Upstream, Option<String>) {
        let source = match (&c.api_key_file, &c.api_key_env) {
            (Some(f), None) => crate::config::SecretSource::File(f.clone()),
            _ => crate::config::SecretSource::Env(c.key_env(name)),
        };
        let (key, warning) = match source.read() {
            Ok(k) => (Some(k), None),
            Err(e) => (None, Some(format!("upstream {name}: no API key: {e}"))),
        };
        let headers = c
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::from_bytes(k.as_bytes()).ok()?,
                    HeaderValue::from_str(v).ok()?,
                ))
            })
            .collect();
        let secs = Duration::from_secs_f64;
        let up = Upstream {
            name: Arc::from(name),
            base: c.base_url.trim_end_matches('/').to_owned(),
            key,
            headers,
            connect: secs(c.timeouts.connect_secs),
            first_byte: secs(c.timeouts.first_byte_secs),
            idle: secs(c.timeouts.idle_secs),
            total: secs(c.timeouts.total_secs),
            retries: c.retries,
            backoff: Duration::from_millis(c.backoff_ms),
            fallbacks: c.fallbacks.iter().map(|f| Arc::from(f.as_str())).collect(),
            client: client(secs(c.timeouts.connect_secs)),
        };
        (up, warning)
    }

    /// True when an API key was read for this upstream.
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// Host and port, for readiness checks and logs.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Makes up to `1 + retries` attempts on this upstream. Returns the last response, or the
    /// last error when no attempt got one.
    ///
    /// # Errors
    /// Connect failure, protocol failure, or no response headers within `first_byte`.
    pub async fn send(
        &self,
        out: &Outbound,
        attempts: &mut u32,
    ) -> Result<Response<Incoming>, ProxyError> {
        let mut attempt = 0;
        loop {
            *attempts += 1;
            let result = self.send_once(out).await;
            let wait = match &result {
                Ok(rsp) if attempt < self.retries && retryable(rsp.status()) => {
                    self.backoff(attempt, retry_after(rsp.headers()))
                }
                Err(ProxyError::Connect { .. }) if attempt < self.retries => {
                    self.backoff(attempt, None)
                }
                _ => return result,
            };
            tracing::debug!(upstream = %self.name, attempt, ?wait, "retrying upstream");
            if let Ok(rsp) = result {
                // Read the refused answer off the wire so the connection can be reused.
                let _ = tokio::time::timeout(self.idle, rsp.into_body().collect()).await;
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One attempt, no retries.
    ///
    /// # Errors
    /// As `send`.
    pub async fn send_once(&self, out: &Outbound) -> Result<Response<Incoming>, ProxyError> {
        let req = self.request(out);
        match tokio::time::timeout(self.first_byte, self.client.request(req)).await {
            Err(_) => Err(ProxyError::FirstByteTimeout {
                upstream: self.name.to_string(),
                secs: self.first_byte.as_secs_f64(),
            }),
            Ok(Err(e)) if e.is_connect() => Err(ProxyError::Connect {
                upstream: self.name.to_string(),
                source: e,
            }),
            Ok(Err(e)) => Err(ProxyError::UpstreamProtocol {
                upstream: self.name.to_string(),
                source: e,
            }),
            Ok(Ok(rsp)) => Ok(rsp),
        }
    }

    /// The upstream request: the client's headers minus hop-by-hop and gateway headers, the
    /// upstream's key and extra headers, and the body as given.
    fn request(&self, out: &Outbound) -> Request<Full<Bytes>> {
        let uri: Uri = format!("{}{}", self.base, out.path)
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"));
        let mut req = Request::new(Full::new(out.body.clone()));
        *req.method_mut() = out.method.clone();
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        super::headers::copy_request_headers(&out.headers, h, out.passthrough_auth);
        for (k, v) in &self.headers {
            if !h.contains_key(k) {
                h.insert(k.clone(), v.clone());
            }
        }
        if !out.passthrough_auth {
            if let Some(v) = self.key.as_ref().and_then(|k| bearer(k.expose())) {
                h.insert(http::header::AUTHORIZATION, v);
            }
        }
        req
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .backoff
            .saturating_mul(1 << attempt.min(16))
            .min(MAX_BACKOFF);
        // Jitter: between half and all of the exponential step.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let jittered = exp / 2 + exp.mul_f64(f64::from(nanos % 1000) / 2000.0);
        retry_after
            .filter(|r| *r <= MAX_BACKOFF)
            .unwrap_or(jittered)
    }
}

fn bearer(key: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {key}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

fn retryable(status: http::StatusCode) -> bool {
    status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = h
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok()?.parse::<f64>().ok())
    {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    let secs = h
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .parse::<f64>()
        .ok()?;
    Some(Duration::from_secs_f64(secs.max(0.0)))
}

/// A pooled HTTP/1.1 + HTTP/2 client with rustls and the webpki roots.
fn client(connect_timeout: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(https)
}
