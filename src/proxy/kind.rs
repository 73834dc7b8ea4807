//! Every kind of error gatehouse names: the `x-gatehouse-error` header on an answer it made
//! itself (`ProxyError::kind`), the `code` of the error event that ends a stream which failed
//! mid-way, the `error_kind` of a record and the error metric label. One enum, so the proxy's
//! OpenAPI document lists them all from `Kind::ALL` and a new kind cannot go undocumented.

/// Declares `Kind`, its wire names and descriptions, and `Kind::ALL` from one list, so `ALL`
/// cannot miss a variant.
macro_rules! kinds {
    ($($variant:ident = $name:literal: $what:literal,)*) => {
        /// One kind of error gatehouse names.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Kind {
            $(#[doc = $what] $variant,)*
        }

        impl Kind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            /// The name on the wire (`x-gatehouse-error`, the record, the metric label).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)*
                }
            }

            /// What it means, for the API documentation.
            pub fn describe(self) -> &'static str {
                match self {
                    $(Kind::$variant => $what,)*
                }
            }
        }
    };
}

kinds! {
    NotFound = "not_found": "404: no such route on the proxy port (an `/api/*` path names the admin address).",
    MethodNotAllowed = "method_not_allowed": "405: the route exists, but not for this method.",
    InvalidPath = "invalid_path": "400: the path has a `..` segment.",
    PathTooLong = "path_too_long": "414: the path is longer than 2048 bytes.",
    UnscannableBody = "unscannable_body": "400: the detector could not read every text of the body, so nothing was forwarded.",
    Unauthorized = "unauthorized": "401: missing or unknown gateway key.",
    UnsupportedMediaType = "unsupported_media_type": "415: the body is not `application/json`.",
    BodyTooLarge = "body_too_large": "413: the body is larger than `proxy.max_body_bytes`.",
    BodyRead = "body_read": "400: the request body could not be read.",
    BodyTimeout = "body_timeout": "408: the body sent nothing for `proxy.body_idle_secs`.",
    InvalidJson = "invalid_json": "400: the body is not the JSON this endpoint takes.",
    InvalidField = "invalid_field": "400: a field is malformed or too long (model, user, session ids: 256 bytes).",
    MissingModel = "missing_model": "400: the body has no `model`.",
    UnknownModel = "unknown_model": "404: no alias, route or default upstream for the model.",
    PromptBlocked = "prompt_blocked": "403 (or `detect.block_status`): the security policy blocked the request; it never reached the upstream.",
    ResponseBlocked = "response_blocked": "The security policy blocked the answer (response scanning): the status before a stream starts, else the error event that ends it.",
    ResponseTooLarge = "response_too_large": "502: the answer is too large to scan.",
    UpstreamConnect = "upstream_connect": "502: no upstream could be connected to.",
    UpstreamTimeout = "upstream_timeout": "504: the upstream sent no response headers within `first_byte_secs`.",
    UpstreamProtocol = "upstream_protocol": "502: the upstream broke the HTTP exchange.",
    UpstreamStatus = "upstream_status": "The upstream answered with an error status, passed through untouched: the record's kind only (no header).",
    UpstreamReset = "upstream_reset": "The upstream's answer broke off mid-way: the error event that ends the stream.",
    UpstreamIdleTimeout = "upstream_idle_timeout": "The upstream sent nothing for `idle_secs` mid-answer: the error event that ends the stream.",
    UpstreamTotalTimeout = "upstream_total_timeout": "The answer outlasted `total_secs`: the error event that ends the stream.",
    UpstreamStreamError = "upstream_stream_error": "The upstream's own stream carried an error event (record only; the event passes through).",
    UnknownRequest = "unknown_request": "404: `/v1/feedback` names no request of this key.",
    AlreadyRated = "already_rated": "409: the request has feedback already.",
    FeedbackUnavailable = "feedback_unavailable": "503: feedback cannot be stored right now.",
    ModelNotAllowed = "model_not_allowed": "403: the key's `models` allow-list does not name this model or alias.",
    RateLimited = "rate_limited": "429: a requests, tokens or concurrency limit (`quotas`, `auth.keys[].limits`) is reached; `Retry-After` says when to try again.",
    QuotaExceeded = "quota_exceeded": "429 `insufficient_quota`: a spend budget is used up until its period ends (`Retry-After`, `x-should-retry: false`).",
}

#[cfg(test)]
mod tests {
    use super::Kind;

    #[test]
    fn names_are_unique_snake_case() {
        let mut names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert!(names
            .iter()
            .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Kind::ALL.len(), "a name is used twice");
    }

    /// Every kind the proxy names goes through `Kind`: no `error_kind` or stream failure is
    /// spelled as a string literal, where it would escape `Kind::ALL` and the documentation.
    #[test]
    fn no_kind_is_spelled_outside_the_enum() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proxy");
        for entry in std::fs::read_dir(&dir).expect("src/proxy") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("kind.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            for bad in [
                "error_kind = Some(\"",
                "self.fail(\"",
                "x-gatehouse-error\", HeaderValue::from_static(\"",
            ] {
                assert!(
                    !text.contains(bad),
                    "{}: `{bad}`: name the kind with proxy::kind::Kind",
                    path.display()
                );
            }
        }
    }
}
