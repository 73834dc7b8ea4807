//! The one place proxy errors become HTTP responses: for each variant its status, its `kind`
//! (the `x-gatehouse-error` header value and metric label) and whose fault it was. The body has
//! the OpenAI error shape so SDKs raise the right exception class.
//!
//! Upstream error *responses* are not here: they pass through untouched. These are the answers
//! gatehouse makes itself.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

use super::kind::Kind;
use crate::event::{Blame, Outcome};
use crate::llm::ViewError;
use crate::quota::{Reason, Rejection};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route for {method} {path}")]
    NotFound { method: String, path: String },
    #[error("{path} is served on the admin port ({admin}), not on the proxy port")]
    AdminRoute { path: String, admin: String },
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("the path has a \"..\" segment; gatehouse does not route such paths")]
    BadPath,
    #[error("the path is longer than {limit} bytes")]
    PathTooLong { limit: usize },
    #[error("gatehouse could not inspect this body ({reason}), so it was not forwarded")]
    Unscannable { reason: String },
    #[error("missing or invalid gateway API key")]
    Unauthorized,
    #[error("content-type must be application/json")]
    UnsupportedMediaType,
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the request body sent nothing for {secs} s")]
    BodyTimeout { secs: u64 },
    #[error("reading the request body failed")]
    BodyRead(#[source] hyper::Error),
    #[error("{0}")]
    InvalidBody(#[source] ViewError),
    #[error("{0}")]
    InvalidField(String),
    #[error("the request has no \"model\"")]
    MissingModel,
    #[error("the model {model:?} does not exist on this gateway")]
    UnknownModel { model: String },
    #[error("the request was blocked by the security policy ({reason})")]
    Blocked {
        status: StatusCode,
        /// The threat categories found (empty when only a cool-down blocked it).
        categories: Vec<&'static str>,
        /// The categories, or why the request was blocked without any.
        reason: String,
        snippet: Option<String>,
    },
    #[error("the answer was blocked by the security policy ({category})")]
    ResponseBlocked {
        status: StatusCode,
        category: &'static str,
    },
    #[error("the answer is larger than {limit} bytes and cannot be scanned")]
    ResponseTooLarge { limit: usize },
    #[error("could not connect to upstream {upstream}")]
    Connect {
        upstream: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("upstream {upstream} sent no response within {secs} s")]
    FirstByteTimeout { upstream: String, secs: f64 },
    #[error("upstream {upstream} failed")]
    UpstreamProtocol {
        upstream: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("no request with this request_id to rate (ids are only yours to rate)")]
    UnknownRequest,
    #[error("this request has been rated already")]
    AlreadyRated,
    #[error("feedback cannot be stored right now")]
    FeedbackUnavailable,
    #[error("the model {model:?} is not allowed for this key")]
    ModelNotAllowed { model: String },
    #[error("{}", .0.message)]
    RateLimited(Box<Rejection>),
    #[error("{}", .0.message)]
    QuotaExceeded(Box<Rejection>),
}

impl From<Rejection> for ProxyError {
    fn from(r: Rejection) -> ProxyError {
        match r.reason {
            Reason::Budget => ProxyError::QuotaExceeded(Box::new(r)),
            Reason::Requests | Reason::Tokens | Reason::Concurrent => {
                ProxyError::RateLimited(Box::new(r))
            }
        }
    }
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NotFound { .. } | ProxyError::AdminRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::BadPath | ProxyError::Unscannable { .. } => StatusCode::BAD_REQUEST,
            ProxyError::PathTooLong { .. } => StatusCode::URI_TOO_LONG,
            ProxyError::Unauthorized => StatusCode::UNAUTHORIZED,
            ProxyError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyRead(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ProxyError::InvalidBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::InvalidField(_) => StatusCode::BAD_REQUEST,
            ProxyError::MissingModel => StatusCode::BAD_REQUEST,
            ProxyError::UnknownModel { .. } => StatusCode::NOT_FOUND,
            ProxyError::Blocked { status, .. } => *status,
            ProxyError::ResponseBlocked { status, .. } => *status,
            ProxyError::ResponseTooLarge { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Connect { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::FirstByteTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::UpstreamProtocol { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UnknownRequest => StatusCode::NOT_FOUND,
            ProxyError::AlreadyRated => StatusCode::CONFLICT,
            ProxyError::FeedbackUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::ModelNotAllowed { .. } => StatusCode::FORBIDDEN,
            ProxyError::RateLimited(_) | ProxyError::QuotaExceeded(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
        }
    }

    /// The `x-gatehouse-error` value and metric label.
    pub fn kind(&self) -> &'static str {
        self.error_kind().as_str()
    }

    /// The kind of this error (see [`Kind`]).
    pub fn error_kind(&self) -> Kind {
        match self {
            ProxyError::NotFound { .. } | ProxyError::AdminRoute { .. } => Kind::NotFound,
            ProxyError::MethodNotAllowed { .. } => Kind::MethodNotAllowed,
            ProxyError::BadPath => Kind::InvalidPath,
            ProxyError::PathTooLong { .. } => Kind::PathTooLong,
            ProxyError::Unscannable { .. } => Kind::UnscannableBody,
            ProxyError::Unauthorized => Kind::Unauthorized,
            ProxyError::UnsupportedMediaType => Kind::UnsupportedMediaType,
            ProxyError::BodyTooLarge { .. } => Kind::BodyTooLarge,
            ProxyError::BodyRead(_) => Kind::BodyRead,
            ProxyError::BodyTimeout { .. } => Kind::BodyTimeout,
            ProxyError::InvalidBody(_) => Kind::InvalidJson,
            ProxyError::InvalidField(_) => Kind::InvalidField,
            ProxyError::MissingModel => Kind::MissingModel,
            ProxyError::UnknownModel { .. } => Kind::UnknownModel,
            ProxyError::Blocked { .. } => Kind::PromptBlocked,
            ProxyError::ResponseBlocked { .. } => Kind::ResponseBlocked,
            ProxyError::ResponseTooLarge { .. } => Kind::ResponseTooLarge,
            ProxyError::Connect { .. } => Kind::UpstreamConnect,
            ProxyError::FirstByteTimeout { .. } => Kind::UpstreamTimeout,
            ProxyError::UpstreamProtocol { .. } => Kind::UpstreamProtocol,
            ProxyError::UnknownRequest => Kind::UnknownRequest,
            ProxyError::AlreadyRated => Kind::AlreadyRated,
            ProxyError::FeedbackUnavailable => Kind::FeedbackUnavailable,
            ProxyError::ModelNotAllowed { .. } => Kind::ModelNotAllowed,
            ProxyError::RateLimited(_) => Kind::RateLimited,
            ProxyError::QuotaExceeded(_) => Kind::QuotaExceeded,
        }
    }

    pub fn blame(&self) -> Blame {
        match self {
            ProxyError::NotFound { .. }
            | ProxyError::AdminRoute { .. }
            | ProxyError::MethodNotAllowed { .. }
            | ProxyError::BadPath
            | ProxyError::PathTooLong { .. }
            | ProxyError::Unscannable { .. }
            | ProxyError::Unauthorized
            | ProxyError::UnsupportedMediaType
            | ProxyError::BodyTooLarge { .. }
            | ProxyError::BodyRead(_)
            | ProxyError::BodyTimeout { .. }
            | ProxyError::InvalidBody(_)
            | ProxyError::InvalidField(_)
            | ProxyError::MissingModel
            | ProxyError::UnknownModel { .. }
            | ProxyError::UnknownRequest
            | ProxyError::AlreadyRated
            | ProxyError::Blocked { .. }
            | ProxyError::ModelNotAllowed { .. }
            | ProxyError::RateLimited(_)
            | ProxyError::QuotaExceeded(_) => Blame::Client,
            ProxyError::ResponseBlocked { .. }
            | ProxyError::ResponseTooLarge { .. }
            | ProxyError::Connect { .. }
            | ProxyError::FirstByteTimeout { .. }
            | ProxyError::UpstreamProtocol { .. } => Blame::Upstream,
            ProxyError::FeedbackUnavailable => Blame::Gateway,
        }
    }

    pub fn outcome(&self) -> Outcome {
        if let ProxyError::Blocked { .. } | ProxyError::ResponseBlocked { .. } = self {
            return Outcome::Blocked;
        }
        match self.blame() {
            Blame::Client => Outcome::Rejected,
            Blame::Upstream | Blame::Gateway => Outcome::Failed,
        }
    }

    /// The OpenAI error `type`.
    fn error_type(&self) -> &'static str {
        match self {
            // OpenAI's own: the kind of limit, or `insufficient_quota` for money.
            ProxyError::RateLimited(r) if r.reason == Reason::Tokens => return "tokens",
            ProxyError::RateLimited(_) => return "requests",
            ProxyError::QuotaExceeded(_) => return "insufficient_quota",
            _ => {}
        }
        match self.status().as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            400..=499
                if matches!(
                    self,
                    ProxyError::Blocked { .. } | ProxyError::ResponseBlocked { .. }
                ) =>
            {
                "permission_error"
            }
            404 | 400 | 405 | 408 | 409 | 413 | 414 | 415 => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// The OpenAI error `code`.
    fn code(&self) -> &'static str {
        match self {
            ProxyError::Unauthorized => "invalid_api_key",
            ProxyError::UnknownModel { .. } => "model_not_found",
            ProxyError::Blocked { .. } => "prompt_blocked",
            ProxyError::ResponseBlocked { .. } => "response_blocked",
            ProxyError::RateLimited(_) => "rate_limit_exceeded",
            ProxyError::QuotaExceeded(_) => "insufficient_quota",
            other => other.kind(),
        }
    }

    /// The response body, OpenAI-shaped.
    pub fn body(&self) -> Bytes {
        let mut error = serde_json::json!({
            "message": self.to_string(),
            "type": self.error_type(),
            "param": serde_json::Value::Null,
            "code": self.code(),
        });
        if let ProxyError::Blocked {
            categories,
            snippet,
            ..
        } = self
        {
            error["categories"] = categories.clone().into();
            if let Some(s) = snippet {
                error["snippet"] = s.as_str().into();
            }
        }
        Bytes::from(serde_json::json!({ "error": error }).to_string())
    }

    /// The full response (status, headers, body) gatehouse sends for this error.
    pub fn to_response(&self, request_id: &str) -> Response<Bytes> {
        let mut rsp = Response::new(self.body());
        *rsp.status_mut() = self.status();
        let h = rsp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert("x-gatehouse-error", HeaderValue::from_static(self.kind()));
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert("x-gatehouse-request-id", v);
        }
        if let ProxyError::RateLimited(r) | ProxyError::QuotaExceeded(r) = self {
            h.insert(http::header::RETRY_AFTER, r.retry_after_secs.into());
            super::limit::set_headers(h, &r.headers);
        }
        if let ProxyError::RateLimited(r) | ProxyError::QuotaExceeded(r) = self {
            if !r.retryable {
                // A spent budget, or a request larger than its limit: waiting will not help,
                // so tell the SDK not to retry.
                h.insert("x-should-retry", HeaderValue::from_static("false"));
            }
        }
        if matches!(self, ProxyError::Unauthorized) {
            h.insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
        }
        rsp
    }
}
