//! The admin API's one error type and its one `IntoResponse`: every failure becomes
//! `{"error": {"message": "...", "type": "..."}}` with the right status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::{analytics, store};

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A query parameter or body is wrong; the message says which and why.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The thing exists but is in a state that forbids the change (a revoked key).
    #[error("{0}")]
    Conflict(String),
    #[error("missing or invalid admin token")]
    Unauthorized,
    /// Too many wrong tokens from this client; try again after `retry_after`.
    #[error("too many wrong admin tokens from this address; try again in {} s", retry_after_secs(*.retry_after))]
    TooManyAttempts { retry_after: std::time::Duration },
    /// A state-changing request on the session cookie from another origin.
    #[error("cross-origin request refused: send it from the admin's own pages, or use Authorization: Bearer")]
    CrossOrigin,
    /// The feature the route needs is switched off (e.g. detection).
    #[error("{0}")]
    Unavailable(String),
    #[error("store")]
    Store(#[from] store::Error),
    #[error("analytics")]
    Analytics(#[from] analytics::Error),
}

impl AdminError {
    fn status_and_type(&self) -> (StatusCode, &'static str) {
        match self {
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found_error"),
            AdminError::Conflict(_) => (StatusCode::CONFLICT, "conflict_error"),
            AdminError::Unauthorized => (StatusCode::UNAUTHORIZED, "authentication_error"),
            AdminError::TooManyAttempts { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error")
            }
            AdminError::CrossOrigin => (StatusCode::FORBIDDEN, "permission_error"),
            AdminError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            AdminError::Store(store::Error::InvalidFeedback(_)) => {
                (StatusCode::BAD_REQUEST, "invalid_request_error")
            }
            AdminError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
            AdminError::Analytics(analytics::Error::NotEnoughHistory { .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "insufficient_data")
            }
            AdminError::Analytics(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        }
    }

    fn message(&self) -> String {
        match self {
            AdminError::Store(store::Error::InvalidFeedback(m)) => (*m).to_owned(),
            AdminError::Analytics(e @ analytics::Error::NotEnoughHistory { .. }) => e.to_string(),
            AdminError::Store(_) | AdminError::Analytics(_) => {
                "internal error reading the event store".to_owned()
            }
            other => other.to_string(),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_type();
        if status.is_server_error() {
            // Logged once, here, where it is handled (with the source chain).
            let chain = error_chain(&self);
            tracing::error!(error = %chain, "admin request failed");
        }
        let body = serde_json::json!({"error": {"message": self.message(), "type": kind}});
        let mut rsp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            rsp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let AdminError::TooManyAttempts { retry_after } = self {
            rsp.headers_mut()
                .insert(header::RETRY_AFTER, retry_after_secs(retry_after).into());
        }
        rsp
    }
}

/// Whole seconds to wait, rounded up (`Retry-After` has no fractions; 0 would invite a retry
/// that is still refused).
fn retry_after_secs(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
