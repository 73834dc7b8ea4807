//! The admin listener: `/health`, `/metrics` and the admin API, on its own address.
//!
//! Every route but `/health` requires `Authorization: Bearer <admin token>` when a token is
//! configured (config validation makes a token mandatory off loopback); the comparison is
//! constant-time. Errors are JSON `{"error": {"message", "type"}}`.

mod security;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::config::Secret;
use crate::detect::{ScanInput, Verdict};
use crate::telemetry::metrics::Metrics;

/// Scans a request the way the proxy would (`app` wires it to the live detector): `None`
/// when detection is off.
pub type ScanFn = Arc<dyn Fn(&ScanInput, Option<&str>) -> Option<Verdict> + Send + Sync>;

#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub token: Option<Secret>,
    pub scan: ScanFn,
}

pub fn router(state: AdminState) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/security/analyze", post(security::analyze))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .merge(protected)
        .with_state(state)
}

/// A JSON error answer for the admin API.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let kind = if status.is_client_error() {
        "invalid_request_error"
    } else {
        "server_error"
    };
    let body = serde_json::json!({"error": {"message": message.into(), "type": kind}});
    (status, axum::Json(body)).into_response()
}

async fn require_token(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let Some(token) = &s.token else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
        next.run(req).await
    } else {
        let mut rsp = error(StatusCode::UNAUTHORIZED, "missing or invalid admin token");
        rsp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        rsp
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

async fn metrics(State(s): State<AdminState>, headers: HeaderMap) -> impl IntoResponse {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let (content_type, body) = s.metrics.render(openmetrics);
    ([(header::CONTENT_TYPE, content_type)], body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_compares_whole_values() {
        use super::constant_time_eq as eq;
        assert!(eq(b"token", b"token"));
        assert!(!eq(b"token", b"tokem"));
        assert!(!eq(b"tok", b"token"));
        assert!(!eq(b"", b"token"));
        assert!(!eq(b"tokenx", b"token"));
    }
}
