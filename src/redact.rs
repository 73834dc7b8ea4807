//! Last-line redaction of text that leaves the process or is kept: captured prompts and answers
//! (store, trace exporter) and every detector match snippet. Masks API keys, bearer tokens,
//! JWTs, private-key blocks, `key=value` secrets, e-mail addresses, payment card numbers that
//! pass the Luhn check, IBANs that pass the mod-97 check and US social security numbers.
//!
//! Trade-off: a handful of regexes in two passes (linear time, compiled once) catch the common
//! shapes; they are a safety net behind the producer's own redaction, not a DLP engine. Names
//! and free-form secrets are not recognised; a digit run that fails its checksum is kept, so
//! order numbers and timestamps stay readable.

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

/// Numbers that are personal data when their checksum says so: card numbers (13–19 digits,
/// spaces or dashes between), IBANs, US SSNs.
const NUMBERS: &str = concat!(
    r"(?P<card>\b[0-9](?:[ -]?[0-9]){12,18}\b)",
    r"|(?P<iban>\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b)",
    r"|(?P<ssn>\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b)",
);

fn numbers() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(NUMBERS).expect("the number patterns are constant and valid"))
}

/// Masks secrets, e-mail addresses and checksum-valid personal numbers in `text` (borrowed
/// back unchanged when none is found).
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = matcher().replace_all(text, MASK);
    if !secrets.bytes().any(|b| b.is_ascii_digit()) {
        return secrets;
    }
    let masked = numbers().replace_all(&secrets, |c: &regex::Captures| {
        let m = c.get(0).map_or("", |m| m.as_str());
        let personal = if c.name("card").is_some() {
            luhn(m)
        } else if c.name("iban").is_some() {
            iban(m)
        } else {
            true
        };
        if personal {
            MASK.to_owned()
        } else {
            m.to_owned()
        }
    });
    match masked {
        Cow::Borrowed(_) => secrets,
        Cow::Owned(s) => Cow::Owned(s),
    }
}

/// The Luhn check over the digits of `s`.
fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2, d * 2) {
            (1, x) if x > 9 => x - 9,
            (1, x) => x,
            _ => d,
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The IBAN mod-97 check (ISO 13616) over `s` without spaces.
fn iban(s: &str) -> bool {
    let compact: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() < 15 {
        return false;
    }
    let rotated = compact[4..].iter().chain(&compact[..4]);
    let mut rem: u32 = 0;
    for c in rotated {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rem = if v < 10 {
            (rem * 10 + v) % 97
        } else {
            (rem * 100 + v) % 97
        };
    }
    rem == 1
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
            ("card 4111 1111 1111 1111 ok", "card [REDACTED] ok"),
            ("card 4111-1111-1111-1111", "card [REDACTED]"),
            ("order 4111 1111 1111 1112", "order 4111 1111 1111 1112"),
            ("iban DE89 3704 0044 0532 0130 00.", "iban [REDACTED]."),
            ("iban GB82WEST12345698765432", "iban [REDACTED]"),
            (
                "ref DE00 3704 0044 0532 0130 00",
                "ref DE00 3704 0044 0532 0130 00",
            ),
            ("ssn 078-05-1120 here", "ssn [REDACTED] here"),
            ("at 2026-12-06 10:00", "at 2026-12-06 10:00"),
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
