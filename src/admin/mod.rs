//! The admin listener's router: `/health`, `/metrics` and the `/api/*` analytics, security,
//! request-log, export, feedback, report and threshold routes. Thin handlers: parse and check
//! parameters, call `analytics`/`store`/`report`, serialise. Nothing imports `admin`.
//!
//! Auth: a Bearer token on every route but `/health` (constant-time comparison). With no token
//! configured every route is open — `config` validation only allows that on a loopback
//! listener. `/metrics` needs the token too unless `public_metrics` is set, for scrapers that
//! cannot send one.

mod error;
pub mod params;
mod reports;
mod routes;
mod security;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::analytics::Live;
use crate::config::Secret;
use crate::detect::{ScanInput, Verdict};
use crate::store::Store;
use crate::telemetry::metrics::Metrics;

pub use error::AdminError;

/// What the admin handlers need.
#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    /// Bearer token; `None` leaves every route open (loopback only).
    pub token: Option<Secret>,
    /// Serve `/metrics` without the token.
    pub public_metrics: bool,
    /// The live detector, for `/api/security/analyze`.
    pub scan: ScanFn,
    /// The analysis agent; `None` answers the report routes with 503.
    pub reports: Option<crate::report::Reporter>,
}

/// Scans a request the way the proxy would (`app` wires it to the live detector): `None`
/// when detection is off.
pub type ScanFn = Arc<dyn Fn(&ScanInput) -> Option<Verdict> + Send + Sync>;

/// True when a listener on `addr` must have a token (anything but loopback).
pub fn auth_required(addr: SocketAddr) -> bool {
    !addr.ip().is_loopback()
}

/// The admin router (state applied).
pub fn router(state: AdminState) -> Router {
    let auth = middleware::from_fn_with_state(state.token.clone(), require_token);
    let api = Router::new()
        .route("/api/usage/analytics", get(routes::usage))
        .route("/api/usage/forecast", get(routes::forecast))
        .route("/api/usage/live", get(routes::live))
        .route("/api/security/events", get(routes::security_events))
        .route("/api/security/summary", get(routes::security_summary))
        .route("/api/security/analyze", post(security::analyze))
        .route("/api/requests", get(routes::requests))
        .route("/api/requests/{id}", get(routes::request))
        .route("/api/export", get(routes::export))
        .route("/api/feedback", post(routes::feedback))
        .route("/api/feedback/summary", get(routes::feedback_summary))
        .route("/api/reports", get(reports::list))
        .route("/api/reports/generate", post(reports::generate))
        .route("/api/reports/{id}", get(reports::read))
        .route("/api/recommendations", get(reports::recommendations))
        .route(
            "/api/config/thresholds",
            get(reports::thresholds).post(reports::set_thresholds),
        );
    let metrics = Router::new().route("/metrics", get(routes::metrics));
    let guarded = if state.public_metrics {
        api.layer(auth).merge(metrics)
    } else {
        api.merge(metrics).layer(auth)
    };
    Router::new()
        .route("/health", get(routes::health))
        .merge(guarded)
        .fallback(routes::not_found)
        .with_state(state)
}

/// Middleware: rejects a request without `Authorization: Bearer <token>` (401, JSON error).
/// Passes everything through when `token` is `None`.
pub async fn require_token(
    State(token): State<Option<Secret>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(presented.trim().as_bytes(), token.expose().as_bytes()) {
        next.run(req).await
    } else {
        AdminError::Unauthorized.into_response()
    }
}

/// Compares without an early exit on the first differing byte (only the length leaks).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(auth_required("0.0.0.0:8001".parse().expect("addr")));
        assert!(!auth_required("[::1]:8001".parse().expect("addr")));
    }
}
