//! Normalisation: the folded view of a text that phrase matching runs on.
//!
//! Owns the mapping from a raw segment to a lowercase, confusable-folded,
//! leetspeak-folded string with single spaces, plus an offset map back to the
//! original bytes so every match can be reported against what the user sent.
//! It also records what it had to strip (zero-width, bidi, tag and variation
//! characters, homoglyphs) because hiding text is itself a signal.
//!
//! Trade-offs: we use compatibility decomposition with combining marks dropped
//! (NFKD minus marks) instead of NFKC, because "ignöre" should match "ignore";
//! patterns go through the same function, so accented phrases still match
//! themselves. Leetspeak is folded only inside tokens that contain a letter,
//! so "h4ck" becomes "hack" but "2024" stays a number. The ASCII path skips
//! Unicode tables entirely; the offset map is only built when the output can
//! drift from the input (whitespace runs or non-ASCII input).
//! What it misses: confusables outside the hand table, and words split by
//! characters we keep (the letters-only projection in [`squash`] covers the
//! common spacing and punctuation tricks).

use unicode_normalization::char::decompose_compatible;

use super::confusables::fold_confusable;

/// What the normaliser removed or folded; counts are saturating.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Obfuscation {
    /// Zero-width, bidi-control and variation-selector characters removed.
    pub invisible: u32,
    /// Unicode tag characters (U+E0000..U+E007F) removed.
    pub tag_chars: u32,
    /// Characters folded from a look-alike script to Latin.
    pub confusables: u32,
    /// ASCII smuggled in tag characters, decoded (bounded).
    pub tag_payload: String,
}

/// The folded text plus a map from its bytes back to original byte offsets.
#[derive(Clone, Debug, Default)]
pub struct Normalised {
    /// Folded text that phrase patterns are matched against.
    pub text: String,
    /// `map[i]` is the original byte offset of the char that produced byte `i`;
    /// `None` means the identity map.
    map: Option<Vec<u32>>,
    /// Whatever was stripped or folded on the way.
    pub flags: Obfuscation,
}

/// Cap on tag-smuggled bytes we keep for a rescan; more is no more evidence.
const MAX_TAG_PAYLOAD: usize = 4096;

impl Normalised {
    /// Original byte offset of the char that produced normalised byte `i`.
    pub fn orig_offset(&self, i: usize) -> usize {
        match &self.map {
            None => i,
            Some(m) => m.get(i).copied().map_or(usize::MAX, |o| o as usize),
        }
    }

    /// Maps a normalised byte range to a byte range of `original` that
    /// starts and ends on char boundaries.
    pub fn orig_span(&self, original: &str, start: usize, end: usize) -> (usize, usize) {
        let len = original.len();
        let s = self.orig_offset(start).min(len);
        let last = self.orig_offset(end.saturating_sub(1).max(start)).min(len);
        let e = original
            .get(last..)
            .and_then(|t| t.chars().next())
            .map_or(len, |c| last + c.len_utf8());
        (s, e.max(s))
    }
}

/// Normalises `input` for matching. Idempotent: `normalise(normalise(x).text).text == normalise(x).text`.
pub fn normalise(input: &str) -> Normalised {
    let mut out = if input.is_ascii() {
        ascii_path(input)
    } else {
        unicode_path(input)
    };
    let mut bytes = std::mem::take(&mut out.text).into_bytes();
    fold_leet(&mut bytes);
    out.text =
        String::from_utf8(bytes).expect("leet folding replaces ASCII bytes with ASCII bytes");
    out
}

fn ascii_path(input: &str) -> Normalised {
    let mut text = input.as_bytes().to_ascii_lowercase();
    let mut prev_ws = false;
    let mut runs = false;
    for c in &mut text {
        let ws = c.is_ascii_whitespace();
        runs |= ws && prev_ws;
        prev_ws = ws;
        if ws {
            *c = b' ';
        }
    }
    if !runs {
        return Normalised {
            text: String::from_utf8(text).expect("ASCII in, ASCII out"),
            map: None,
            flags: Obfuscation::default(),
        };
    }
    let mut w = Writer::with_capacity(text.len());
    for (i, &c) in text.iter().enumerate() {
        w.push(c as char, i);
    }
    w.finish(Obfuscation::default())
}

fn ascii_fold(c: u8) -> u8 {
    if c.is_ascii_whitespace() {
        b' '
    } else {
        c.to_ascii_lowercase()
    }
}

fn unicode_path(input: &str) -> Normalised {
    let mut w = Writer::with_capacity(input.len());
    let mut flags = Obfuscation::default();
    let mut prev_latin = false;
    for (i, c) in input.char_indices() {
        let was_latin = std::mem::replace(&mut prev_latin, c.is_ascii_alphabetic());
        if c.is_ascii() {
            w.push(ascii_fold(c as u8) as char, i);
        } else if is_tag(c) {
            flags.tag_chars = flags.tag_chars.saturating_add(1);
            let v = c as u32 - 0xE0000;
            if (0x20..0x7F).contains(&v) && flags.tag_payload.len() < MAX_TAG_PAYLOAD {
                flags.tag_payload.push(char::from(v as u8));
            }
        } else if is_invisible(c) {
            flags.invisible = flags.invisible.saturating_add(1);
        } else {
            let next_latin = input[i + c.len_utf8()..]
                .chars()
                .next()
                .is_some_and(|n| n.is_ascii_alphabetic());
            fold_char(c, i, was_latin || next_latin, &mut w, &mut flags);
        }
    }
    w.finish(flags)
}

/// Decompose, lowercase, decompose again (lowercasing can recompose), drop
/// marks, fold confusables. A fold counts as obfuscation only when the char
/// sits next to a Latin letter (mixed script), so plain Russian or Greek text
/// is not flagged.
fn fold_char(c: char, at: usize, mixed: bool, w: &mut Writer, flags: &mut Obfuscation) {
    decompose_compatible(c, |d| {
        for l in d.to_lowercase() {
            decompose_compatible(l, |e| {
                if is_mark(e) || is_invisible(e) {
                    return;
                }
                if e.is_whitespace() {
                    w.push(' ', at);
                    return;
                }
                let f = fold_confusable(e);
                if f != e && mixed {
                    flags.confusables = flags.confusables.saturating_add(1);
                }
                w.push(f, at);
            })
        }
    });
}

struct Writer {
    text: String,
    map: Vec<u32>,
}

impl Writer {
    fn with_capacity(n: usize) -> Self {
        Writer {
            text: String::with_capacity(n),
            map: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, c: char, at: usize) {
        if c == ' ' && self.text.ends_with(' ') {
            return;
        }
        self.text.push(c);
        let at = u32::try_from(at).unwrap_or(u32::MAX);
        for _ in 0..c.len_utf8() {
            self.map.push(at);
        }
    }

    fn finish(self, flags: Obfuscation) -> Normalised {
        Normalised {
            text: self.text,
            map: Some(self.map),
            flags,
        }
    }
}

fn is_tag(c: char) -> bool {
    ('\u{E0000}'..='\u{E007F}').contains(&c)
}

/// Zero-width, bidi controls, variation selectors, soft hyphen and friends.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{E0100}'..='\u{E01EF}')
}

fn is_mark(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}'
        | '\u{FE20}'..='\u{FE2F}'
        | '\u{3099}'..='\u{309A}')
}

/// Folds 0 1 3 4 5 7 @ $ to letters inside tokens that contain an ASCII letter.
/// Only tokens around a leet byte are inspected, so plain prose costs one pass.
fn fold_leet(bytes: &mut [u8]) {
    let mut i = 0;
    while i < bytes.len() {
        if leet(bytes[i]).is_none() {
            i += 1;
            continue;
        }
        let mut start = i;
        while start > 0 && is_token_byte(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = i;
        while end < bytes.len() && is_token_byte(bytes[end]) {
            end += 1;
        }
        let token = &mut bytes[start..end.max(i + 1)];
        if token.iter().any(u8::is_ascii_alphabetic) {
            for b in token.iter_mut() {
                if let Some(l) = leet(*b) {
                    *b = l;
                }
            }
        }
        i = end.max(i + 1);
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'@' || b == b'$' || b >= 0x80
}

fn leet(b: u8) -> Option<u8> {
    Some(match b {
        b'0' => b'o',
        b'1' => b'i',
        b'3' => b'e',
        b'4' | b'@' => b'a',
        b'5' | b'$' => b's',
        b'7' => b't',
        _ => return None,
    })
}

/// Letters-only projection used against "i g n o r e" and "i.g.n.o.r.e".
/// Returns the projection and a map to byte offsets in `norm.text`.
pub fn squash(norm: &str) -> (String, Vec<u32>) {
    let mut s = String::with_capacity(norm.len());
    let mut map = Vec::with_capacity(norm.len());
    for (i, c) in norm.char_indices() {
        if c.is_alphanumeric() {
            s.push(c);
            let at = u32::try_from(i).unwrap_or(u32::MAX);
            map.extend(std::iter::repeat_n(at, c.len_utf8()));
        }
    }
    (s, map)
}

/// True when the text shows a run of single letters split by one separator,
/// the cheap trigger for running the letters-only projection.
pub fn looks_split(norm: &str) -> bool {
    const MIN_RUN: u32 = 5;
    let b = norm.as_bytes();
    let mut run = 0u32;
    let mut i = 0;
    while i < b.len() {
        let single = b[i].is_ascii_alphanumeric()
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && b.get(i + 1).is_none_or(|n| !n.is_ascii_alphanumeric());
        if single {
            run += 1;
            if run >= MIN_RUN {
                return true;
            }
            i += 2;
        } else {
            if b[i].is_ascii_alphanumeric() {
                run = 0;
            }
            i += 1;
        }
    }
    false
}
