//! The syntax of `proxy.passthrough` entries: `METHOD /v1/path`, where a final `/*` stands for
//! one or more further segments. Parsed here, once, for validation and for the proxy's router.

use http::Method;

/// One allowed passthrough route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassthroughRule {
    pub method: Method,
    /// A canonical path under `/v1/` (no empty, `.` or `..` segments, no `*`).
    pub prefix: String,
    /// Whether deeper paths (`prefix/...`) match too.
    pub deeper: bool,
}

/// Parses one entry.
///
/// # Errors
/// A message naming the entry and the expected form.
pub fn parse_rule(entry: &str) -> Result<PassthroughRule, String> {
    let bad = || format!("{entry:?} is not \"METHOD /v1/path\" (a final /* matches deeper paths)");
    let (m, p) = entry.trim().split_once(' ').ok_or_else(bad)?;
    let method = Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()).map_err(|_| bad())?;
    let p = p.trim();
    let (prefix, deeper) = match p.strip_suffix("/*") {
        Some(prefix) => (prefix, true),
        None => (p, false),
    };
    let canonical = prefix.strip_prefix("/v1/").is_some_and(|rest| {
        rest.split('/')
            .all(|s| !matches!(s, "" | "." | "..") && !s.contains(['*', '%']))
    });
    if !canonical {
        return Err(bad());
    }
    Ok(PassthroughRule {
        method,
        prefix: prefix.to_owned(),
        deeper,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_or_say_what_is_wrong() {
        let r = parse_rule("get /v1/files/*").expect("parses");
        assert_eq!(
            (r.method, r.prefix.as_str(), r.deeper),
            (Method::GET, "/v1/files", true)
        );
        for bad in [
            "/v1/files",
            "GET v1/files",
            "GET /v2/x",
            "GET /v1/a/*/b",
            "GET /v1//x",
            "GET /v1/../x",
            "GET /v1/",
        ] {
            let e = parse_rule(bad).expect_err(bad);
            assert!(e.contains("METHOD /v1/path"), "{e}");
        }
    }
}
