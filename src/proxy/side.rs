//! Side calls: requests the gateway makes on its own behalf (the report's LLM call) to a routed
//! upstream. They use the upstream's key, extra headers and retries, but not the request path:
//! they are never scanned, never recorded as user traffic, and carry `X-Title` so the provider
//! can tell them apart.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method};
use http_body_util::BodyExt;

use super::error::ProxyError;
use super::upstream::Outbound;
use super::Runtime;

/// Why a side call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SideError {
    #[error("no upstream routes model {0}")]
    NoRoute(String),
    #[error("upstream request failed")]
    Upstream(#[source] ProxyError),
    #[error("reading the upstream answer failed")]
    Body(#[source] hyper::Error),
    #[error("upstream answer not complete within {0:?}")]
    Timeout(Duration),
}

/// POSTs `body` (a JSON object with `model`, which is resolved like a client's and rewritten to
/// the upstream model) to `path` below the routed upstream's base URL. Returns the status and the
/// whole answer body.
///
/// # Errors
/// No route for the model, no answer, or the answer took longer than `total`.
pub async fn post_json(
    rt: &Runtime,
    path: &str,
    mut body: serde_json::Value,
    title: &'static str,
    total: Duration,
) -> Result<(u16, Bytes), SideError> {
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let target = rt.target(&model).ok_or(SideError::NoRoute(model))?;
    body["model"] = serde_json::Value::from(&*target.model);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("x-title", HeaderValue::from_static(title));
    let out = Outbound {
        method: Method::POST,
        path: path.to_owned(),
        headers,
        body: Bytes::from(body.to_string()),
        passthrough_auth: false,
    };
    let call = async {
        let mut attempts = 0;
        let rsp = target
            .upstream
            .send(&out, &mut attempts)
            .await
            .map_err(SideError::Upstream)?;
        let status = rsp.status().as_u16();
        let body = rsp.into_body().collect().await.map_err(SideError::Body)?;
        Ok((status, body.to_bytes()))
    };
    tokio::time::timeout(total, call)
        .await
        .unwrap_or(Err(SideError::Timeout(total)))
}
