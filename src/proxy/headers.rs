//! Which headers cross the proxy. Only hop-by-hop headers, `Host`, `Content-Length` (recomputed),
//! the client's `Authorization` (replaced by the upstream key unless passing through) and
//! gatehouse's own `x-gatehouse-*` headers are dropped; `Accept-Encoding` becomes `identity` so
//! the gateway can read usage from the answer (the answer's content is the same, only not
//! compressed). Everything else is forwarded as received, in both directions.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// The hop-by-hop test for the headers of `h`: the fixed list plus whatever its `Connection`
/// header names. The `Connection` tokens are read once per message, not once per header (a
/// lookup per header was a measurable share of the proxy's per-request instructions).
fn hop_by_hop(h: &HeaderMap) -> impl Fn(&HeaderName) -> bool + '_ {
    let named: Vec<&str> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    move |name: &HeaderName| {
        HOP_BY_HOP.contains(&name.as_str())
            || named.iter().any(|t| t.eq_ignore_ascii_case(name.as_str()))
    }
}

/// Client request headers → upstream request headers.
pub fn copy_request_headers(from: &HeaderMap, to: &mut HeaderMap, passthrough_auth: bool) {
    let hop = hop_by_hop(from);
    to.reserve(from.len() + 1);
    for (name, value) in from {
        let drop = hop(name)
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            || name == header::ACCEPT_ENCODING
            || (name == header::AUTHORIZATION && !passthrough_auth)
            || name.as_str().starts_with("x-gatehouse-");
        if !drop {
            to.append(name.clone(), value.clone());
        }
    }
    to.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
}

/// Upstream response headers → client response headers. `keep_length` is false when the body
/// may be changed (a stripped usage chunk) and the length would be wrong.
pub fn copy_response_headers(from: &HeaderMap, to: &mut HeaderMap, keep_length: bool) {
    let hop = hop_by_hop(from);
    to.reserve(from.len() + 2);
    for (name, value) in from {
        if hop(name) || (!keep_length && name == header::CONTENT_LENGTH) {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_headers_lose_only_what_they_must() {
        let mut from = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer gw-key"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("host", "gatehouse"),
            ("x-gatehouse-user", "u1"),
            ("openai-organization", "org-1"),
            ("x-stainless-lang", "python"),
            ("accept-encoding", "gzip"),
        ] {
            from.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let mut to = HeaderMap::new();
        copy_request_headers(&from, &mut to, false);
        let names: Vec<&str> = to.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            ["openai-organization", "x-stainless-lang", "accept-encoding"]
        );
        let mut to = HeaderMap::new();
        copy_request_headers(&from, &mut to, true);
        assert_eq!(to["authorization"], "Bearer gw-key");
    }
}
