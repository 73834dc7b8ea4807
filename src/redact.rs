//! Last-line redaction of captured text, shared by the store and the trace exporter: masks API
//! keys, bearer tokens, JWTs, private-key blocks, `key=value` secrets and e-mail addresses before
//! text is stored or leaves the process.
//!
//! Trade-off: a handful of regexes in one pass (linear time, compiled once) catch the common
//! shapes; they are a safety net behind the producer's own redaction, not a DLP engine. Names,
//! phone numbers and free-form secrets are not recognised.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;

/// What a masked span is replaced with.
pub const MASK: &str = "[REDACTED]";

/// Secret and e-mail shapes. ASCII classes only (the crate builds regex without Unicode tables).
const PATTERNS: &[&str] = &[
    // OpenAI / Anthropic / OpenRouter style keys: sk-..., sk-ant-..., sk-or-v1-...
    r"sk-[A-Za-z0-9_-]{16,}",
    // AWS access key ids.
    r"AKIA[0-9A-Z]{16}",
    // GitHub tokens.
    r"gh[pousr]_[A-Za-z0-9]{20,}",
    // Slack tokens.
    r"xox[abprs]-[A-Za-z0-9-]{10,}",
    // Google API keys.
    r"AIza[0-9A-Za-z_-]{35}",
    // JWTs.
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    // Bearer tokens.
    r"[Bb]earer[ \t]+[A-Za-z0-9._~+/-]{16,}=*",
    // PEM private keys.
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[^-]*-----END [A-Z ]*PRIVATE KEY-----",
    // key=value / key: value secrets.
    r#"(?:[Aa][Pp][Ii][_-]?[Kk][Ee][Yy]|[Ss][Ee][Cc][Rr][Ee][Tt]|[Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd]|[Tt][Oo][Kk][Ee][Nn])["']?[ \t]*[:=][ \t]*["']?[^ \t\r\n"',;]{6,}"#,
    // E-mail addresses.
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
];

fn matcher() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(&PATTERNS.join("|")).expect("the redaction patterns are constant and valid")
    })
}

/// Masks secrets and e-mail addresses in `text` (borrowed back unchanged when none is found).
pub fn redact(text: &str) -> Cow<'_, str> {
    matcher().replace_all(text, MASK)
}

/// `text` cut to at most `max_bytes`, at a char boundary.
pub fn cap(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_common_secret_shapes() {
        let cases = [
            (
                "key sk-or-v1-abcdefghijklmnop1234 here",
                "key [REDACTED] here",
            ),
            ("mail bob.smith@example.com now", "mail [REDACTED] now"),
            (
                "Authorization: Bearer abcdefghijklmnopqrstuvwxyz",
                "Authorization: [REDACTED]",
            ),
            ("aws AKIAABCDEFGHIJKLMNOP", "aws [REDACTED]"),
            ("password=hunter2hunter2", "[REDACTED]"),
            ("API_KEY: 'abcdef123456'", "[REDACTED]'"),
            ("nothing to see", "nothing to see"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "input {input:?}");
        }
    }

    #[test]
    fn cap_cuts_at_a_char_boundary() {
        assert_eq!(cap("héllo", 2), "h");
        assert_eq!(cap("héllo", 3), "hé");
        assert_eq!(cap("abc", 10), "abc");
    }
}
