//! Regex rules: secrets and PII, the formats phrases cannot express.
//!
//! Owns compiling regex rules into two `RegexSet`s and running them on the
//! ORIGINAL text (case matters for key formats). Secret formats carry literal
//! prefixes (`AKIA`, `sk-`, `ghp_`, `-----BEGIN`), so the regex engine's
//! literal prefilter makes a whole-text pass cheap. PII formats (emails,
//! phones, cards, IBANs) start with character classes, which would make a
//! whole-text pass cost several ns per byte, so they run only inside
//! windows around an `@` or a run of 7+ digits. Individual regexes run only
//! for rules their set reported. `whole_message` rules judge a whole short message (anchored
//! payload shapes): their set runs only on texts of at most [`SHORT_MESSAGE`] bytes that hold
//! a byte payloads are made of ([`is_payload_byte`]); `opening` rules (anchored at the start)
//! run only on a text's first [`OPENING`] bytes, when those hold such a byte. Trade-off: a PII
//! value with fewer than 7 digits and no `@` is never looked at; none of our PII formats has
//! one.

use regex::{Regex, RegexSet};

use super::matcher::Hit;
use super::normalise::floor_boundary;
use super::policy::Check;

/// A validated regex rule, before compiling.
#[derive(Clone, Debug)]
pub struct RegexSpec {
    pub rule: u32,
    pub pattern: String,
    pub check: Option<Check>,
    /// Run only in candidate windows (PII) instead of the whole text.
    pub windowed: bool,
    /// Run only on whole short messages (at most [`SHORT_MESSAGE`] bytes).
    pub whole_message: bool,
    /// Run only on a text's first [`OPENING`] bytes.
    pub opening: bool,
}

struct Compiled {
    set: RegexSet,
    rules: Vec<(u32, Regex, Option<Check>)>,
}

/// Most hits kept per rule per text.
const MAX_PER_RULE: usize = 16;
/// Digits within a short stretch that open a PII window.
const WINDOW_DIGITS: u32 = 7;
/// Largest gap (bytes) between digits of one number ("+1 (555) 123-4567").
const DIGIT_GAP: usize = 3;

impl Compiled {
    fn build(specs: &[&RegexSpec]) -> Result<Compiled, regex::Error> {
        let set = RegexSet::new(specs.iter().map(|s| s.pattern.as_str()))?;
        let mut rules = Vec::new();
        for s in specs {
            rules.push((s.rule, Regex::new(&s.pattern)?, s.check));
        }
        Ok(Compiled { set, rules })
    }

    fn hits(&self, text: &str, offset: usize, out: &mut Vec<Hit>) {
        if self.rules.is_empty() {
            return;
        }
        for i in self.set.matches(text).iter() {
            let (rule, re, check) = &self.rules[i];
            let found = re.find_iter(text).filter(|m| passes(*check, m.as_str()));
            for m in found.take(MAX_PER_RULE) {
                let hit = Hit {
                    rule: *rule,
                    start: offset + m.start(),
                    end: offset + m.end(),
                };
                if !out.contains(&hit) {
                    out.push(hit);
                }
            }
        }
    }
}

/// The longest message a `whole_message` rule looks at.
pub const SHORT_MESSAGE: usize = 160;

/// Bytes an injection payload is made of (quotes, shell and SQL metacharacters, `$`
/// operators, `%` escapes): a short message without any of them is not a payload, so the
/// short-message rules skip it (an ordinary short turn then costs no regex search).
fn is_payload_byte(b: u8) -> bool {
    matches!(
        b,
        b'\'' | b'"' | b'`' | b';' | b'|' | b'&' | b'$' | b'%' | b'\\' | b'=' | b'#' | b'(' | b'<'
    ) || b >= 0x80
}

/// The bytes of a text an `opening` rule looks at.
pub const OPENING: usize = 96;

/// Every regex rule, compiled.
pub struct RegexRules {
    whole: Compiled,
    windowed: Compiled,
    /// `whole_message` rules.
    short: Compiled,
    /// `opening` rules.
    opening: Compiled,
}

impl RegexRules {
    /// Compiles the specs.
    ///
    /// # Errors
    /// A pattern fails to compile or the set exceeds the size limit.
    pub fn build(specs: &[RegexSpec]) -> Result<RegexRules, regex::Error> {
        let (opening, specs): (Vec<&RegexSpec>, Vec<&RegexSpec>) =
            specs.iter().partition(|s| s.opening);
        let (short, rest): (Vec<&RegexSpec>, Vec<&RegexSpec>) =
            specs.into_iter().partition(|s| s.whole_message);
        let (win, whole): (Vec<&RegexSpec>, Vec<&RegexSpec>) =
            rest.into_iter().partition(|s| s.windowed);
        Ok(RegexRules {
            whole: Compiled::build(&whole)?,
            windowed: Compiled::build(&win)?,
            short: Compiled::build(&short)?,
            opening: Compiled::build(&opening)?,
        })
    }

    /// Hits in `text`, in its byte offsets.
    pub fn hits(&self, text: &str, out: &mut Vec<Hit>) {
        self.whole.hits(text, 0, out);
        if text.len() <= SHORT_MESSAGE && text.bytes().any(is_payload_byte) {
            self.short.hits(text, 0, out);
        }
        if !self.opening.rules.is_empty() {
            let head = &text[..floor_boundary(text, OPENING)];
            if head.bytes().any(is_payload_byte) {
                self.opening.hits(head, 0, out);
            }
        }
        if self.windowed.rules.is_empty() {
            return;
        }
        for (s, e) in windows(text) {
            self.windowed.hits(&text[s..e], s, out);
        }
    }
}

/// Merged byte ranges around `@` and digit runs, widened to token edges and
/// char boundaries.
pub fn windows(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut wins: Vec<(usize, usize)> = Vec::new();
    let (mut digits, mut first, mut last) = (0u32, 0usize, 0usize);
    let mut i = 0;
    while i < b.len() {
        // A block with no trigger byte changes nothing (a gap that long resets
        // the digit run anyway); the branch-free test vectorises.
        if i % TRIGGER_BLOCK == 0 {
            let end = b.len().min(i + TRIGGER_BLOCK);
            if !b[i..end].iter().fold(false, |a, &c| a | is_trigger(c)) {
                i = end;
                continue;
            }
        }
        let c = b[i];
        if c == b'@' {
            add(&mut wins, text, i.saturating_sub(80), i + 260);
        } else if c.is_ascii_digit() {
            if digits == 0 || i - last > DIGIT_GAP {
                digits = 0;
                first = i;
            }
            digits += 1;
            last = i;
            if digits >= WINDOW_DIGITS && wins.last().is_none_or(|w| i + 60 > w.1) {
                add(&mut wins, text, first.saturating_sub(40), i + 60);
            }
        }
        i += 1;
    }
    wins
}

const TRIGGER_BLOCK: usize = 32;

fn is_trigger(c: u8) -> bool {
    (c == b'@') | c.is_ascii_digit()
}

/// Adds `[start, end)` widened, merging with the last window. Amortised O(1) per call on runs
/// of triggers (a 4 MiB hex body calls it per digit): a range the last window already covers
/// costs nothing, and one that extends it widens only its new end.
fn add(wins: &mut Vec<(usize, usize)>, text: &str, start: usize, end: usize) {
    let end = end.min(text.len());
    if let Some(w) = wins.last_mut() {
        if start <= w.1 {
            if end > w.1 {
                w.1 = w.1.max(widen_end(text, end));
            }
            return;
        }
    }
    let (s, e) = widen(text, start, end);
    match wins.last_mut() {
        Some(w) if s <= w.1 => w.1 = w.1.max(e),
        _ => wins.push((s, e)),
    }
}

const MAX_WIDEN: usize = 64;

/// `[s, e)` widened to token edges (at most `MAX_WIDEN` bytes each way) and char boundaries.
fn widen(text: &str, mut s: usize, e: usize) -> (usize, usize) {
    let b = text.as_bytes();
    let s0 = s;
    while s > 0
        && s0 - s < MAX_WIDEN
        && (!text.is_char_boundary(s) || b[s - 1].is_ascii_alphanumeric())
    {
        s -= 1;
    }
    while !text.is_char_boundary(s) {
        s -= 1;
    }
    (s, widen_end(text, e))
}

/// An end `e` widened forward as [`widen`] does.
fn widen_end(text: &str, mut e: usize) -> usize {
    let b = text.as_bytes();
    let e0 = e;
    while e < b.len()
        && e - e0 < MAX_WIDEN
        && (!text.is_char_boundary(e) || b[e].is_ascii_alphanumeric())
    {
        e += 1;
    }
    while !text.is_char_boundary(e) {
        e += 1;
    }
    e
}

fn passes(check: Option<Check>, s: &str) -> bool {
    match check {
        None => true,
        Some(Check::Luhn) => luhn(s),
        Some(Check::Iban) => iban(s),
    }
}

/// Luhn checksum over the digits of `s` (13 to 19 digits, not all equal).
pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                (d * 2) % 9 + u32::from(d == 9) * 9
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// IBAN mod-97 check over `s` with spaces ignored.
pub fn iban(s: &str) -> bool {
    let c: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&c.len()) {
        return false;
    }
    let mut rem: u32 = 0;
    for ch in c[4..].iter().chain(&c[..4]) {
        let Some(v) = ch.to_digit(36) else {
            return false;
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pattern: &str, opening: bool) -> RegexSpec {
        RegexSpec {
            rule: 0,
            pattern: pattern.into(),
            check: None,
            windowed: false,
            whole_message: false,
            opening,
        }
    }

    /// An `opening` rule reads only the first [`OPENING`] bytes (cut on a char boundary), and
    /// an anchored pattern without a literal prefix stays out of the whole-text set.
    #[test]
    fn opening_rules_read_only_the_start() {
        let rules = RegexRules::build(&[spec(r"(?i)\A\s*<script\b", true)]).expect("compiles");
        let hits = |t: &str| {
            let mut out = Vec::new();
            rules.hits(t, &mut out);
            out.len()
        };
        assert_eq!(hits("<script src=//x.example/1.js>"), 1);
        assert_eq!(hits(&format!("{}<script>", " ".repeat(OPENING))), 0);
        assert_eq!(hits(&format!("{}<script>", "é".repeat(OPENING))), 0);
        assert_eq!(hits("Why does <script> run early?"), 0);
        assert!(rules.whole.rules.is_empty() && rules.opening.rules.len() == 1);
    }
}
