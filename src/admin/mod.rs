//! The admin listener's router: `/health`, `/metrics` and the `/api/*` analytics, security,
//! request-log, export, feedback, quota, alert, report, threshold and virtual-key routes. Thin handlers: parse and
//! check parameters, call `analytics`/`store`/`report`, serialise. Nothing imports `admin`.
//!
//! Also serves the dashboard (`/dashboard`), the API docs (`/docs`), the OpenAPI document
//! generated from the handlers' annotations (`/openapi.json`) and the proxy port's document
//! (`/openapi-proxy.json`, built by the proxy and handed in by `app`).
//!
//! Auth: a Bearer token on every route but `/health`, the sign-in routes and the static pages
//! (the scheme in any case, as RFC 9110 says; compared in constant time), or the session cookie
//! a browser got from `POST /api/session` (see `session`). Wrong tokens are rate limited per
//! client (`limit`), and state-changing requests on the cookie must come from the admin's own
//! pages (`origin`). With no token configured every route is open — `config` validation only
//! allows that on a loopback listener; a configured token that is blank opens nothing.
//! `/metrics` needs the token too unless `public_metrics` is set, for scrapers that cannot send
//! one.

mod alerts;
mod assets;
mod error;
mod keys;
mod limit;
mod openapi;
mod origin;
pub mod params;
mod quotas;
mod reports;
mod routes;
mod security;
pub mod session;
mod stream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Extensions, HeaderMap};
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
    /// The proxy port's OpenAPI document as now configured (`app` wires it to the proxy's
    /// runtime), served at `/openapi-proxy.json`; `None` answers 404.
    pub proxy_openapi: Option<ProxyDocFn>,
    /// Applies the store's virtual keys to this replica's proxy (`app` wires it); awaited
    /// after every change through `/api/keys`, so it applies here before the answer. `None`:
    /// no proxy to tell (the other replicas read the store at their next sync anyway).
    pub keys_synced: Option<KeysSyncFn>,
    /// The limits and their counters now, with at most the given number of end users (`app`
    /// wires it to the proxy's runtime), for `/api/quotas`; `None` answers 503.
    pub quotas: Option<QuotasFn>,
}

/// Re-reads the virtual keys into the proxy; see [`AdminState::keys_synced`].
pub type KeysSyncFn = Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

/// Reads the live limits (`None` once the proxy has stopped).
pub type QuotasFn = Arc<dyn Fn(usize) -> Option<crate::quota::QuotaView> + Send + Sync>;

/// Builds the proxy port's OpenAPI document (`None` once the proxy has stopped).
pub type ProxyDocFn = Arc<dyn Fn() -> Option<serde_json::Value> + Send + Sync>;

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
    limit: Arc<limit::SignInLimit>,
}

/// How a request presented itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// No token is configured: everything is open.
    Open,
    /// The right token in `Authorization: Bearer`.
    Bearer,
    /// A token in `Authorization: Bearer`, but not the right one.
    WrongBearer,
    /// A live session cookie.
    Cookie,
    /// Neither.
    Anonymous,
}

impl Auth {
    fn new(token: Option<Secret>) -> Auth {
        Auth {
            // Surrounding whitespace is never part of a token (files end in a newline).
            token: token.map(|t| Secret::new(t.expose().trim())),
            sessions: session::sessions(),
            limit: Arc::default(),
        }
    }

    /// True when `given` is the configured token. Never for a blank token on either side:
    /// `config` refuses a blank one, and if one got here anyway it must open nothing.
    fn token_matches(&self, given: &str) -> bool {
        let Some(token) = self.token.as_ref().filter(|t| !t.is_blank()) else {
            return false;
        };
        let given = given.trim();
        !given.is_empty() && constant_time_eq(given.as_bytes(), token.expose().as_bytes())
    }

    fn access(&self, headers: &HeaderMap) -> Access {
        let bearer = bearer(headers);
        match (&self.token, bearer) {
            // With no token there is nothing to check, but a Bearer client is still no
            // browser (see `origin`).
            (None, Some(_)) => Access::Bearer,
            (None, None) => Access::Open,
            (Some(_), Some(b)) if self.token_matches(b) => Access::Bearer,
            (Some(_), Some(_)) => Access::WrongBearer,
            (Some(_), None)
                if session::cookie(headers).is_some_and(|id| self.sessions.check(id)) =>
            {
                Access::Cookie
            }
            (Some(_), None) => Access::Anonymous,
        }
    }

    /// True when the request carries the token as `Authorization: Bearer`, or a live session
    /// cookie; always when no token is configured.
    fn allows(&self, headers: &HeaderMap) -> bool {
        matches!(
            self.access(headers),
            Access::Open | Access::Bearer | Access::Cookie
        )
    }

    /// Whether `client` may present a token now.
    ///
    /// # Errors
    /// `TooManyAttempts` while the client's wrong tries are used up.
    fn may_try(&self, client: IpAddr) -> Result<(), AdminError> {
        self.limit
            .check(client, Instant::now())
            .map_err(|retry_after| AdminError::TooManyAttempts { retry_after })
    }

    fn failed(&self, client: IpAddr) {
        self.limit.fail(client, Instant::now());
    }
}

/// The credential of an `Authorization: Bearer <token>` header; the scheme is matched in any
/// case (RFC 9110 §11.1), as the proxy port does.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The client's limiter key, from the connection (see `limit::client_key`).
fn client(extensions: &Extensions) -> IpAddr {
    limit::client_key(
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| *a),
    )
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
        .routes(routes!(quotas::quotas))
        .routes(routes!(stream::events))
        .routes(routes!(alerts::list))
        .routes(routes!(alerts::rules))
        .routes(routes!(alerts::test))
        .routes(routes!(reports::list))
        .routes(routes!(reports::read))
        .routes(routes!(reports::generate))
        .routes(routes!(reports::recommendations))
        .routes(routes!(reports::thresholds, reports::set_thresholds))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::read, keys::update, keys::revoke))
        .routes(routes!(keys::rotate));
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
    let auth = Auth::new(state.token.clone());
    let (api, doc) = api_routes(&state, &auth).split_for_parts();
    let json = doc.to_pretty_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "the OpenAPI document could not be serialised");
        "{}".to_owned()
    });
    api.merge(assets::router(json))
        .route(
            "/openapi-proxy.json",
            axum::routing::get(assets::proxy_openapi),
        )
        .fallback(routes::not_found)
        .with_state(state)
}

/// Middleware: rejects a request that carries neither the token (`Authorization: Bearer`) nor
/// a live session cookie (401, JSON error); a client whose wrong tokens are used up (429); and
/// a state-changing request on the cookie (or on a token-less admin) from another origin (403).
pub async fn require_auth(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    let client = client(req.extensions());
    let access = auth.access(req.headers());
    if matches!(access, Access::Bearer | Access::WrongBearer) {
        if let Err(e) = auth.may_try(client) {
            return e.into_response();
        }
    }
    match access {
        Access::Bearer => {}
        Access::WrongBearer => {
            auth.failed(client);
            return AdminError::Unauthorized.into_response();
        }
        Access::Anonymous => return AdminError::Unauthorized.into_response(),
        Access::Open | Access::Cookie => {
            if !origin::allowed(req.method(), req.headers()) {
                return AdminError::CrossOrigin.into_response();
            }
        }
    }
    next.run(req).await
}

/// Compares without an early exit on the first differing byte. Both sides are hashed first, so
/// not even the length leaks.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
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

    fn with_authorization(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().expect("header"));
        h
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let auth = Auth::new(Some(Secret::new("0123456789abcdef")));
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let h = with_authorization(&format!("{scheme} 0123456789abcdef"));
            assert_eq!(auth.access(&h), Access::Bearer, "{scheme}");
        }
        let wrong = with_authorization("Basic 0123456789abcdef");
        assert_eq!(auth.access(&wrong), Access::Anonymous);
    }

    /// REGRESSION: a blank configured token matched a blank presented one.
    #[test]
    fn a_blank_token_opens_nothing() {
        for configured in ["", "  "] {
            let auth = Auth::new(Some(Secret::new(configured)));
            assert!(!auth.token_matches(""), "{configured:?}");
            assert!(!auth.token_matches(" "), "{configured:?}");
            assert!(!auth.allows(&with_authorization("Bearer ")));
            assert!(!auth.allows(&HeaderMap::new()));
        }
        let auth = Auth::new(Some(Secret::new("0123456789abcdef\n")));
        assert!(auth.token_matches("0123456789abcdef"), "trimmed");
        assert!(!auth.token_matches(""));
    }
}
