//! Decoding: bounded unpacking of encoded runs for a rescan.
//!
//! Owns finding base64, hex, URL-%, HTML-entity and `\u`/`\x` escape runs in
//! the ORIGINAL text and decoding them to text the detector scans again.
//! Decoders only run where a candidate run exists (a cheap byte pass finds
//! base64/hex runs; the token pass runs only if `%`, `&` or `\` occur), and
//! every call is bounded by a byte budget and a run count. The caller bounds
//! depth. Trade-off: decoded text that is not mostly printable UTF-8 is
//! dropped, so binary blobs (hashes, images) cost one decode and no scan.
//! Misses: encodings split by whitespace ("49 67 6e"), rot13, custom ciphers.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

/// One decoded run: its span in the searched text and what it decodes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub span: (usize, usize),
    pub kind: &'static str,
    pub text: String,
}

/// Shortest base64 run worth decoding: 20 chars is 15 bytes of text.
const MIN_B64: usize = 20;
const MIN_HEX: usize = 16;
/// Fewest escapes in one token before we treat it as an encoded payload.
const MIN_ESCAPES: usize = 3;
/// Most runs decoded per text.
const MAX_RUNS: usize = 32;

const CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const B64: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, CONFIG);
const B64_URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, CONFIG);

/// Finds and decodes encoded runs in `text`, spending at most `budget` bytes. True when it
/// stopped short: the budget or the run count ran out, so encoded text may be left undecoded.
pub fn decode_runs(text: &str, budget: &mut usize, out: &mut Vec<Decoded>) -> bool {
    alphabet_runs(text, budget, out);
    if memchr::memchr3(b'%', b'&', b'\\', text.as_bytes()).is_some() {
        escape_runs(text, budget, out);
    }
    *budget == 0 || out.len() >= MAX_RUNS
}

const fn b64_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'-' | b'_');
        i += 1;
    }
    t
}

static B64_CHARS: [bool; 256] = b64_table();

fn is_b64(c: u8) -> bool {
    B64_CHARS[usize::from(c)]
}

/// Finds maximal runs of base64/hex bytes at least `MIN_B64.min(MIN_HEX)`
/// long. Any such run covers a whole aligned 8-byte block, so only blocks
/// made entirely of alphabet bytes are looked at closely; prose and code
/// rarely have one.
fn alphabet_runs(text: &str, budget: &mut usize, out: &mut Vec<Decoded>) {
    const BLOCK: usize = 8;
    const _: () = assert!(MIN_HEX >= 2 * BLOCK - 1 && MIN_B64 >= 2 * BLOCK - 1);
    let b = text.as_bytes();
    let mut at = 0;
    while at + BLOCK <= b.len() && out.len() < MAX_RUNS && *budget > 0 {
        if !b[at..at + BLOCK].iter().all(|&c| is_b64(c)) {
            at += BLOCK;
            continue;
        }
        let mut start = at;
        while start > 0 && is_b64(b[start - 1]) {
            start -= 1;
        }
        let mut end = at + BLOCK;
        while end < b.len() && is_b64(b[end]) {
            end += 1;
        }
        if end - start >= MIN_B64.min(MIN_HEX) {
            try_run(&text[start..end], start, budget, out);
        }
        at = end.next_multiple_of(BLOCK);
    }
}

fn try_run(run: &str, at: usize, budget: &mut usize, out: &mut Vec<Decoded>) {
    let trimmed = run.trim_matches(|c| matches!(c, '-' | '_' | '='));
    let at = at + (run.len() - run.trim_start_matches(['-', '_', '=']).len());
    let span = (at, at + trimmed.len());
    let is_hex = trimmed.len() >= MIN_HEX && trimmed.bytes().all(|c| c.is_ascii_hexdigit());
    let decoded = if is_hex {
        hex(trimmed).map(|t| ("hex", t))
    } else if trimmed.len() >= MIN_B64 && looks_b64(trimmed) {
        base64(trimmed).map(|t| ("base64", t))
    } else {
        None
    };
    if let Some((kind, text)) = decoded {
        accept(span, kind, text, budget, out);
    }
}

/// Base64 text mixes cases or digits; plain words and paths rarely do over 20 chars.
fn looks_b64(s: &str) -> bool {
    let upper = s.bytes().filter(u8::is_ascii_uppercase).count();
    let lower = s.bytes().filter(u8::is_ascii_lowercase).count();
    upper > 0 && lower > 0 && upper + lower > s.len() / 2
}

fn base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    // A length of 4n+1 cannot be base64; drop the stray char instead of failing.
    let s = if s.len() % 4 == 1 {
        &s[..s.len() - 1]
    } else {
        s
    };
    if s.contains(['-', '_']) {
        B64_URL.decode(s).ok()
    } else {
        B64.decode(s).ok()
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let b = &b[..b.len() - b.len() % 2];
    b.chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

fn nibble(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn accept(
    span: (usize, usize),
    kind: &'static str,
    bytes: Vec<u8>,
    budget: &mut usize,
    out: &mut Vec<Decoded>,
) {
    let Ok(text) = String::from_utf8(bytes) else {
        return;
    };
    let printable = text
        .chars()
        .filter(|c| !c.is_control() || c.is_whitespace())
        .count();
    if text.len() < 4 || printable * 10 < text.chars().count() * 9 {
        return;
    }
    let take = text.len().min(*budget);
    *budget -= take;
    let mut end = take;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.push(Decoded {
        span,
        kind,
        text: text[..end].to_owned(),
    });
}

/// Looks only at tokens that contain a trigger byte, so code full of `&`
/// and `\\` costs one pass plus the tokens around the triggers.
fn escape_runs(text: &str, budget: &mut usize, out: &mut Vec<Decoded>) {
    let b = text.as_bytes();
    let is_sep = |c: u8| c.is_ascii_whitespace() || c == b'"' || c == b'\'';
    let mut next = 0;
    for i in memchr::memchr3_iter(b'%', b'&', b'\\', b) {
        if i < next || out.len() >= MAX_RUNS || *budget == 0 {
            continue;
        }
        let mut start = i;
        while start > 0 && !is_sep(b[start - 1]) {
            start -= 1;
        }
        let mut end = i;
        while end < b.len() && !is_sep(b[end]) {
            end += 1;
        }
        next = end;
        let tok = &text[start..end];
        if tok.len() >= 6 {
            if let Some((kind, bytes)) = decode_token(tok) {
                accept((start, end), kind, bytes, budget, out);
            }
        }
    }
}

fn decode_token(tok: &str) -> Option<(&'static str, Vec<u8>)> {
    if tok.matches('%').count() >= MIN_ESCAPES {
        percent(tok).map(|t| ("url", t))
    } else if tok.matches("\\u").count() >= MIN_ESCAPES || tok.matches("\\x").count() >= MIN_ESCAPES
    {
        backslash(tok).map(|t| ("escape", t.into_bytes()))
    } else if tok.matches('&').count() >= MIN_ESCAPES && tok.contains(';') {
        Some(("html", entities(tok).into_bytes()))
    } else {
        None
    }
}

fn percent(tok: &str) -> Option<Vec<u8>> {
    let b = tok.as_bytes();
    let (mut out, mut i) = (Vec::with_capacity(b.len()), 0);
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (nibble(b[i + 1]), nibble(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    Some(out)
}

fn backslash(tok: &str) -> Option<String> {
    let mut out = String::with_capacity(tok.len());
    let mut rest = tok;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (width, skip) = match after.as_bytes().first() {
            Some(b'u') => (4, 1),
            Some(b'x') => (2, 1),
            _ => (0, 0),
        };
        let digits = after.get(skip..skip + width).filter(|_| width > 0);
        match digits
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .and_then(char::from_u32)
        {
            Some(c) => {
                out.push(c);
                rest = &after[skip + width..];
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Some(out)
}

fn entities(tok: &str) -> String {
    let mut out = String::with_capacity(tok.len());
    let mut rest = tok;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let semi = after.find(';').filter(|&s| s <= 10);
        let c = semi.and_then(|s| entity(&after[..s]));
        match (semi, c) {
            (Some(s), Some(c)) => {
                out.push(c);
                rest = &after[s + 1..];
            }
            _ => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    let num = |s: &str, radix| u32::from_str_radix(s, radix).ok().and_then(char::from_u32);
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some(' '),
        _ => match name.strip_prefix('#') {
            Some(n) => match n.strip_prefix(['x', 'X']) {
                Some(h) => num(h, 16),
                None => num(n, 10),
            },
            None => None,
        },
    }
}
