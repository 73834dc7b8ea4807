//! The admin listener's router: `/health`, `/metrics` and the `/api/*` analytics, security,
//! request-log, export, feedback, alert, report and threshold routes. Thin handlers: parse and
//! check parameters, call `analytics`/`store`/`report`, serialise. Nothing imports `admin`.
//!
//! Also serves the dashboard (`/dashboard`), the API docs (`/docs`) and the OpenAPI document
//! generated from the handlers' annotations (`/openapi.json`).
//!
//! Auth: a Bearer token on every route but `/health`, the sign-in routes and the static pages
//! (constant-time comparison), or the session cookie a browser got from `POST /api/session`
//! (see `session`). With no token
//! configured every route is open — `config` validation only allows that on a loopback
//! listener. `/metrics` needs the token too unless `public_metrics` is set, for scrapers that
//! cannot send one.

mod alerts;
mod assets;
mod error;
mod openapi;
pub mod params;
mod reports;
mod routes;
mod security;
pub mod session;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::broadcast;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::analytics::{FeedItem, Live};
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
    /// The live feed (`app` publishes one summary per finished request), for
    /// `/api/events/stream`.
    pub feed: broadcast::Sender<Arc<FeedItem>>,
    /// Alert rules and delivery; `None` when alerts are disabled.
    pub alerts: Option<Arc<crate::alerts::Handle>>,
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

/// Who may call the guarded routes: the token's holder, or a browser signed in with it.
#[derive(Clone)]
pub struct Auth {
    token: Option<Secret>,
    sessions: Arc<session::Sessions>,
}

impl Auth {
    /// True when the request carries the token as `Authorization: Bearer`, or a live session
    /// cookie; always when no token is configured.
    fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(b) = bearer {
            return constant_time_eq(b.trim().as_bytes(), token.expose().as_bytes());
        }
        session::cookie(headers).is_some_and(|id| self.sessions.check(id))
    }
}

/// The documented routes, each registered with its handler's OpenAPI description, so the
/// router and `/openapi.json` cannot disagree.
fn api_routes(state: &AdminState, auth: &Auth) -> OpenApiRouter<AdminState> {
    let guard = middleware::from_fn_with_state(auth.clone(), require_auth);
    let api = OpenApiRouter::new()
        .routes(routes!(routes::usage))
        .routes(routes!(routes::forecast))
        .routes(routes!(routes::live))
        .routes(routes!(routes::security_events))
        .routes(routes!(routes::security_summary))
        .routes(routes!(security::analyze))
        .routes(routes!(routes::requests))
        .routes(routes!(routes::request))
        .routes(routes!(routes::export))
        .routes(routes!(routes::feedback))
        .routes(routes!(routes::feedback_summary))
        .routes(routes!(stream::events))
        .routes(routes!(alerts::list))
        .routes(routes!(alerts::rules))
        .routes(routes!(alerts::test))
        .routes(routes!(reports::list))
        .routes(routes!(reports::read))
        .routes(routes!(reports::generate))
        .routes(routes!(reports::recommendations))
        .routes(routes!(reports::thresholds, reports::set_thresholds));
    let metrics = OpenApiRouter::new().routes(routes!(routes::metrics));
    let guarded = if state.public_metrics {
        api.layer(guard).merge(metrics)
    } else {
        api.merge(metrics).layer(guard)
    };
    let sessions: OpenApiRouter<AdminState> = OpenApiRouter::new()
        .routes(routes!(
            session::sign_in,
            session::session,
            session::sign_out
        ))
        .with_state(auth.clone());
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(routes::health))
        .merge(sessions)
        .merge(guarded)
}

/// The admin router (state applied): the API, `/openapi.json`, `/docs` and `/dashboard`.
pub fn router(state: AdminState) -> Router {
    let auth = Auth {
        token: state.token.clone(),
        sessions: session::sessions(),
    };
    let (api, doc) = api_routes(&state, &auth).split_for_parts();
    let json = doc.to_pretty_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "the OpenAPI document could not be serialised");
        "{}".to_owned()
    });
    api.merge(assets::router(json))
        .fallback(routes::not_found)
        .with_state(state)
}

/// Middleware: rejects a request that carries neither the token (`Authorization: Bearer`) nor
/// a live session cookie (401, JSON error). Passes everything through when no token is set.
pub async fn require_auth(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    if auth.allows(req.headers()) {
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
