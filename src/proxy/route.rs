//! Routing of request paths to endpoints. The path is normalised once, before anything else
//! reads it (duplicate slashes, `.` segments, a trailing slash and encoded slashes or dots), so
//! every spelling of an inference path is routed, and scanned, as that path; a `..` segment is
//! refused. The inference endpoints are read (model, stream, user); other `/v1/*` paths pass
//! through to the default upstream unread only when the configured allow-list names them.

use std::borrow::Cow;

use http::Method;

use crate::config::passthrough::{parse_rule, PassthroughRule};
use crate::event::Endpoint;

/// What the handler does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Health,
    Ready,
    /// `GET /openapi.json`: this port's OpenAPI document.
    OpenApi,
    /// An inference call whose body names a model.
    Inference(Endpoint),
    /// `GET /v1/models`: aliases plus the upstream's list.
    Models,
    /// `GET /v1/models/{id}`.
    Model,
    /// The seed's `POST /generate`.
    Generate,
    /// `POST /v1/feedback`: a client's rating of an earlier answer, stored by gatehouse.
    Feedback,
    /// Any other `/v1/*` path, forwarded unread.
    Passthrough,
    NotFound,
    MethodNotAllowed,
}

/// A path gatehouse refuses to route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DotDot;

/// The canonical spelling of a request path: `%2F`/`%2E` decoded, empty and `.` segments
/// dropped (so no duplicate or trailing slash). Borrowed when the path is already canonical.
///
/// # Errors
/// `DotDot` when a segment is `..` (literally or encoded): such a path is never forwarded.
pub fn normalise_path(path: &str) -> Result<Cow<'_, str>, DotDot> {
    let encoded = path.contains('%');
    let canonical = !encoded
        && path.starts_with('/')
        && path.split('/').skip(1).enumerate().all(|(i, seg)| {
            (!seg.is_empty() || (i == 0 && path == "/")) && seg != "." && seg != ".."
        });
    if canonical {
        return Ok(Cow::Borrowed(path));
    }
    let decoded: Cow<str> = if encoded {
        Cow::Owned(decode_separators(path))
    } else {
        Cow::Borrowed(path)
    };
    let mut out = String::with_capacity(decoded.len() + 1);
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(DotDot),
            s => {
                out.push('/');
                out.push_str(s);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// `%2F` and `%2E` (either case) as the characters they encode; other escapes stay as sent.
fn decode_separators(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).unwrap_or(&rest[i..]);
        let taken = match esc.to_ascii_uppercase().as_str() {
            "%2F" => {
                out.push('/');
                3
            }
            "%2E" => {
                out.push('.');
                3
            }
            // Any other `%` is kept, and what follows it is read afresh (`%%2e` is `%.`).
            _ => {
                out.push('%');
                1
            }
        };
        rest = &rest[i + taken..];
    }
    out.push_str(rest);
    out
}

/// The `/v1/*` paths that pass through unread (`proxy.passthrough`).
#[derive(Clone, Debug, Default)]
pub struct Passthrough(Vec<PassthroughRule>);

impl Passthrough {
    /// Parses the configured entries.
    ///
    /// # Errors
    /// The first entry that is not `METHOD /v1/...`.
    pub fn parse(entries: &[String]) -> Result<Passthrough, String> {
        entries
            .iter()
            .map(|e| parse_rule(e))
            .collect::<Result<_, _>>()
            .map(Passthrough)
    }

    /// Whether `method path` (a normalised path) may pass through. `HEAD` goes where `GET` may.
    pub fn allows(&self, method: &Method, path: &str) -> bool {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.0.iter().any(|r| {
            r.method == *method
                && match path.strip_prefix(r.prefix.as_str()) {
                    Some("") => true,
                    Some(rest) => r.deeper && rest.starts_with('/') && rest.len() > 1,
                    None => false,
                }
        })
    }
}

/// Routes a normalised path (see [`normalise_path`]).
pub fn route(method: &Method, path: &str, passthrough: &Passthrough) -> Route {
    let post = method == Method::POST;
    let get = method == Method::GET || method == Method::HEAD;
    let inference = |e| {
        if post {
            Route::Inference(e)
        } else {
            Route::MethodNotAllowed
        }
    };
    match path {
        "/health" | "/healthz" if get => Route::Health,
        "/ready" | "/readyz" if get => Route::Ready,
        "/health" | "/healthz" | "/ready" | "/readyz" => Route::MethodNotAllowed,
        "/openapi.json" if get => Route::OpenApi,
        "/openapi.json" => Route::MethodNotAllowed,
        "/generate" if post => Route::Generate,
        "/generate" => Route::MethodNotAllowed,
        "/v1/chat/completions" => inference(Endpoint::ChatCompletions),
        "/v1/completions" => inference(Endpoint::Completions),
        "/v1/embeddings" => inference(Endpoint::Embeddings),
        "/v1/responses" => inference(Endpoint::Responses),
        "/v1/models" if get => Route::Models,
        "/v1/models" => Route::MethodNotAllowed,
        "/v1/feedback" if post => Route::Feedback,
        "/v1/feedback" => Route::MethodNotAllowed,
        p if p.starts_with("/v1/models/") && get => Route::Model,
        p if p.starts_with("/v1/") && passthrough.allows(method, p) => Route::Passthrough,
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_path_normalises_to_one() {
        let cases = [
            ("/v1/chat/completions", Ok("/v1/chat/completions")),
            ("/v1/chat/completions/", Ok("/v1/chat/completions")),
            ("/v1//chat/completions", Ok("/v1/chat/completions")),
            ("//v1/chat//completions//", Ok("/v1/chat/completions")),
            ("/v1/chat%2Fcompletions", Ok("/v1/chat/completions")),
            ("/v1/chat%2fcompletions", Ok("/v1/chat/completions")),
            ("/v1/./chat/completions", Ok("/v1/chat/completions")),
            ("/v1/%2E/chat/completions", Ok("/v1/chat/completions")),
            ("/v1/files/a%20b", Ok("/v1/files/a%20b")),
            ("/v1/x%2", Ok("/v1/x%2")),
            ("/", Ok("/")),
            ("", Ok("/")),
            ("/v1/models/../chat/completions", Err(DotDot)),
            ("/v1/%2e%2e/admin", Err(DotDot)),
            ("/v1/.%2E/admin", Err(DotDot)),
        ];
        for (raw, want) in cases {
            assert_eq!(
                normalise_path(raw).as_deref().map_err(|e| *e),
                want,
                "{raw}"
            );
        }
        assert!(matches!(normalise_path("/v1/models"), Ok(Cow::Borrowed(_))));
    }

    proptest::proptest! {
        /// Any path normalises to a canonical one (no empty, `.` or `..` segment, no encoded
        /// slash), idempotently, or is refused for a `..`.
        #[test]
        fn prop_normalised_paths_are_canonical(path in "(/|%2[fFeE]|\\.|\\.\\.|[a-z]{1,3}|%[0-9a-fA-F]{0,2}){0,12}") {
            match normalise_path(&path) {
                Ok(p) => {
                    proptest::prop_assert!(p.starts_with('/'));
                    proptest::prop_assert!(!p.contains("//"), "{}", p);
                    proptest::prop_assert!(p == "/" || !p.ends_with('/'), "{}", p);
                    for seg in p.split('/').skip(1) {
                        proptest::prop_assert!(seg != "." && seg != "..", "{}", p);
                    }
                    let lower = p.to_ascii_lowercase();
                    proptest::prop_assert!(!lower.contains("%2f") && !lower.contains("%2e"), "{}", p);
                    let again = normalise_path(&p);
                    proptest::prop_assert_eq!(again.as_deref(), Ok(&*p));
                }
                Err(DotDot) => {
                    let decoded = path.to_ascii_lowercase().replace("%2e", ".").replace("%2f", "/");
                    proptest::prop_assert!(decoded.split('/').any(|s| s == ".."), "{}", path);
                }
            }
        }
    }

    #[test]
    fn only_listed_paths_pass_through() {
        let p = Passthrough::parse(&["GET /v1/files".into(), "get /v1/files/*".into()])
            .expect("parses");
        assert!(p.allows(&Method::GET, "/v1/files"));
        assert!(p.allows(&Method::HEAD, "/v1/files/file-1/content"));
        assert!(!p.allows(&Method::POST, "/v1/files"));
        assert!(!p.allows(&Method::DELETE, "/v1/files/file-1"));
        assert!(!p.allows(&Method::GET, "/v1/filesx"));
        assert_eq!(route(&Method::POST, "/v1/files", &p), Route::NotFound);
        assert_eq!(route(&Method::GET, "/v1/files/f", &p), Route::Passthrough);
    }

    #[test]
    fn routes() {
        let cases = [
            (
                Method::POST,
                "/v1/chat/completions",
                Route::Inference(Endpoint::ChatCompletions),
            ),
            (Method::GET, "/v1/chat/completions", Route::MethodNotAllowed),
            (
                Method::POST,
                "/v1/responses",
                Route::Inference(Endpoint::Responses),
            ),
            (Method::GET, "/v1/responses/resp_1", Route::NotFound),
            (Method::POST, "/v1/files", Route::NotFound),
            (Method::GET, "/v1/models", Route::Models),
            (Method::GET, "/v1/models/qwendeepseek", Route::Model),
            (Method::POST, "/generate", Route::Generate),
            (Method::GET, "/health", Route::Health),
            (Method::GET, "/v2/x", Route::NotFound),
        ];
        for (m, p, want) in cases {
            assert_eq!(route(&m, p, &Passthrough::default()), want, "{m} {p}");
        }
    }
}
