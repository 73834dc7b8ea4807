//! Cross-site request refusal for the admin API: a state-changing request (anything but GET,
//! HEAD, OPTIONS) that a browser could have sent with its ambient credential — the session
//! cookie, or nothing at all on a token-less loopback admin — must come from the admin's own
//! pages. Requests authenticated by `Authorization: Bearer` are exempt: a browser never adds
//! that header by itself, and a page on another origin cannot set it without a CORS preflight,
//! which the admin API never grants.
//!
//! The rule is the one Go's `net/http.CrossOriginProtection` uses: `Sec-Fetch-Site` when the
//! browser sends it (`same-origin` or `none` pass); else `Origin`, whose host must be the
//! request's `Host`; a request with neither comes from no browser made in the last decade, so
//! it passes. `SameSite=Strict` on the cookie is not enough alone: another port on the same
//! host is the same *site*, and the cookie goes along.
//!
//! Trade-off: behind a reverse proxy that rewrites `Host`, browsers without `Sec-Fetch-Site`
//! (Safari before 16.4) are refused; every current browser sends it.

use axum::http::{header, HeaderMap, Method};

/// True when the request may change state: a safe method, or a browser request from the admin's
/// own origin, or no browser at all.
pub fn allowed(method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    let value = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = value(header::HeaderName::from_static("sec-fetch-site")) {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = value(header::ORIGIN) else {
        return true;
    };
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    match (origin_host, value(header::HOST)) {
        (Some(o), Some(host)) => !o.is_empty() && o.eq_ignore_ascii_case(host),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, pairs: &[(&'static str, &'static str)]) -> bool {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("value"));
        }
        allowed(&method, &h)
    }

    /// Method, request headers, allowed.
    type Case = (Method, &'static [(&'static str, &'static str)], bool);

    const HOST: (&str, &str) = ("host", "127.0.0.1:8001");

    #[test]
    fn cross_origin_writes_are_refused_and_everything_else_passes() {
        let cases: &[Case] = &[
            (
                Method::GET,
                &[("origin", "https://evil.example"), HOST],
                true,
            ),
            (Method::POST, &[HOST], true),
            (
                Method::POST,
                &[("origin", "http://127.0.0.1:8001"), HOST],
                true,
            ),
            (
                Method::POST,
                &[("origin", "http://127.0.0.1:8001/"), HOST],
                true,
            ),
            (
                Method::POST,
                &[("origin", "https://evil.example"), HOST],
                false,
            ),
            (
                Method::POST,
                &[("origin", "http://127.0.0.1:3000"), HOST],
                false,
            ),
            (Method::POST, &[("origin", "null"), HOST], false),
            (
                Method::DELETE,
                &[("origin", "http://127.0.0.1:8001")],
                false,
            ),
            (
                Method::PUT,
                &[("sec-fetch-site", "same-origin"), HOST],
                true,
            ),
            (Method::POST, &[("sec-fetch-site", "none")], true),
            (
                Method::POST,
                &[("sec-fetch-site", "same-site"), HOST],
                false,
            ),
            (
                Method::POST,
                &[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "http://127.0.0.1:8001"),
                    HOST,
                ],
                false,
            ),
        ];
        for (method, headers, want) in cases {
            assert_eq!(
                check(method.clone(), headers),
                *want,
                "{method} {headers:?}"
            );
        }
    }
}
