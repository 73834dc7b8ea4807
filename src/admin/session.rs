//! Browser sign-in for the admin API: `POST /api/session` trades the admin token for a session
//! cookie, so the dashboard (and `EventSource`, which cannot send headers) never keeps the token.
//!
//! The cookie (`gatehouse_admin`) holds a random 256-bit id, is `HttpOnly` (page scripts cannot
//! read it) and `SameSite=Strict` (other sites cannot make the browser send it). SameSite is
//! not the whole CSRF defence: a page on another port of the same host is the same site, so
//! state-changing requests on the cookie are also checked for their origin (`origin`), and
//! sign-in and sign-out are too. Wrong tokens count against the client's sign-in budget
//! (`limit`). It has no `Secure` flag because the
//! admin listener speaks plain HTTP; keep it on loopback or behind TLS. Sessions live in
//! memory: at most `MAX_SESSIONS` (the oldest is evicted), each for `SESSION_TTL`, all gone on
//! restart. Ids are compared in constant time against every live session.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, Extensions, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{client, constant_time_eq, origin, AdminError, Auth};

pub const COOKIE: &str = "gatehouse_admin";
const MAX_SESSIONS: usize = 64;
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Live browser sessions.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<Vec<(String, Instant)>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Instant)>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session id (64 hex digits); `None` if the OS has no randomness to give.
    fn create(&self) -> Option<String> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).ok()?;
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let mut live = self.lock();
        let now = Instant::now();
        live.retain(|(_, exp)| *exp > now);
        if live.len() >= MAX_SESSIONS {
            live.remove(0);
        }
        live.push((id.clone(), now + SESSION_TTL));
        Some(id)
    }

    /// True when `id` is a live session (every entry is compared, in constant time).
    pub fn check(&self, id: &str) -> bool {
        let now = Instant::now();
        self.lock().iter().fold(false, |hit, (s, exp)| {
            hit | (constant_time_eq(s.as_bytes(), id.as_bytes()) & (*exp > now))
        })
    }

    fn remove(&self, id: &str) {
        self.lock()
            .retain(|(s, _)| !constant_time_eq(s.as_bytes(), id.as_bytes()));
    }
}

/// The session id in a request's `Cookie` header, if any.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Sign-in body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The admin token (`admin.token`).
    pub token: String,
}

/// Whether this browser is signed in.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionStatus {
    /// False when no admin token is configured (loopback only): everything is open.
    pub auth_required: bool,
    pub authenticated: bool,
}

fn status(auth: &Auth, authenticated: bool) -> Json<SessionStatus> {
    Json(SessionStatus {
        auth_required: auth.token.is_some(),
        authenticated,
    })
}

fn set_cookie(value: &str, max_age: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .ok()
}

/// Signs in: trades the admin token for an `HttpOnly`, `SameSite=Strict` session cookie.
#[utoipa::path(post, path = "/api/session", tag = "session", security(()),
    request_body = SignIn,
    responses(
        (status = 200, description = "Signed in; the `gatehouse_admin` cookie is set", body = SessionStatus),
        (status = 400, description = "Body is not `{\"token\": string}`"),
        (status = 401, description = "Wrong token"),
        (status = 403, description = "Sent from another origin"),
        (status = 429, description = "Too many wrong tokens from this address; see `Retry-After`"),
    ))]
pub(super) async fn sign_in(
    State(auth): State<Auth>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Result<Json<SignIn>, JsonRejection>,
) -> Result<Response, AdminError> {
    if !origin::allowed(&Method::POST, &headers) {
        return Err(AdminError::CrossOrigin);
    }
    let Json(body) = body.map_err(|e| {
        AdminError::BadRequest(format!("expected {{\"token\": string}}: {}", e.body_text()))
    })?;
    if auth.token.is_none() {
        return Ok(status(&auth, true).into_response());
    }
    let client = client(&extensions);
    auth.may_try(client)?;
    if !auth.token_matches(&body.token) {
        auth.failed(client);
        return Err(AdminError::Unauthorized);
    }
    let cookie = auth
        .sessions
        .create()
        .and_then(|id| set_cookie(&id, SESSION_TTL.as_secs()))
        .ok_or_else(|| AdminError::Unavailable("no randomness for a session id".into()))?;
    let mut rsp = status(&auth, true).into_response();
    rsp.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(rsp)
}

/// Whether this browser (its cookie) or this client (its Bearer token) is signed in.
#[utoipa::path(get, path = "/api/session", tag = "session", security(()),
    responses((status = 200, description = "Sign-in state", body = SessionStatus)))]
pub(super) async fn session(State(auth): State<Auth>, headers: HeaderMap) -> Response {
    let ok = auth.allows(&headers);
    status(&auth, ok).into_response()
}

/// Signs out: forgets the session and clears the cookie.
#[utoipa::path(delete, path = "/api/session", tag = "session", security(()),
    responses((status = 200, description = "Signed out", body = SessionStatus),
        (status = 403, description = "Sent from another origin")))]
pub(super) async fn sign_out(State(auth): State<Auth>, headers: HeaderMap) -> Response {
    if !origin::allowed(&Method::DELETE, &headers) {
        return AdminError::CrossOrigin.into_response();
    }
    if let Some(id) = cookie(&headers) {
        auth.sessions.remove(id);
    }
    let mut rsp = status(&auth, auth.token.is_none()).into_response();
    if let Some(v) = set_cookie("", 0) {
        rsp.headers_mut().insert(header::SET_COOKIE, v);
    }
    rsp
}

/// The shared sessions, for the router.
pub fn sessions() -> Arc<Sessions> {
    Arc::new(Sessions::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_random_checked_and_removable() {
        let s = Sessions::default();
        let a = s.create().expect("id");
        let b = s.create().expect("id");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(s.check(&a) && s.check(&b));
        assert!(!s.check("") && !s.check(&a[..63]));
        s.remove(&a);
        assert!(!s.check(&a) && s.check(&b));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; gatehouse_admin=abc; x=1"),
        );
        assert_eq!(cookie(&h), Some("abc"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("gatehouse_adminx=abc"),
        );
        assert_eq!(cookie(&h), None);
    }
}
