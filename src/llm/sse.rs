//! Server-sent events framing: splits a byte stream into whole events at blank lines, however the
//! network cut it, and reads an event's `event:` and `data:` fields (WHATWG rules: `\n`, `\r\n`
//! or `\r` line ends; one optional space after the colon; several `data:` lines joined by `\n`;
//! lines starting with `:` are comments).
//!
//! Memory is bounded: an event longer than the cap is handed out unsplit as an oversized piece
//! (`Piece::Oversized`) so the relay can forward it without understanding it.

use bytes::{Bytes, BytesMut};

/// Longest event held while waiting for its end. OpenAI chunks are a few hundred bytes; a
/// Responses-API `response.completed` event repeats the whole answer, hence the generous cap.
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// Accumulates stream bytes and hands out whole events.
#[derive(Debug, Default)]
pub struct SseSplitter {
    buf: BytesMut,
    /// Bytes of `buf` already searched for a boundary (so each byte is scanned once).
    scanned: usize,
}

/// What the splitter hands out.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// One whole event, terminator included.
    Event(Bytes),
    /// Bytes of an event longer than `MAX_EVENT_BYTES`, forwarded without parsing.
    Oversized(Bytes),
}

impl SseSplitter {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next whole event, if one is complete.
    pub fn next_piece(&mut self) -> Option<Piece> {
        if let Some(end) = self.boundary() {
            self.scanned = 0;
            return Some(Piece::Event(self.buf.split_to(end).freeze()));
        }
        if self.buf.len() > MAX_EVENT_BYTES {
            self.scanned = 0;
            return Some(Piece::Oversized(self.buf.split().freeze()));
        }
        None
    }

    /// Bytes held back waiting for the end of an event (a stream that ends without a blank
    /// line leaves them here).
    pub fn take_rest(&mut self) -> Bytes {
        self.scanned = 0;
        self.buf.split().freeze()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// End offset of the first event: after two consecutive line terminators.
    fn boundary(&mut self) -> Option<usize> {
        let b = &self.buf[..];
        // Step back so a terminator pair split across pushes is still found.
        let mut i = self.scanned.saturating_sub(3);
        while i < b.len() {
            // Jump to the next line terminator (memchr scans a word at a time).
            let Some(skip) = memchr::memchr2(b'\n', b'\r', &b[i..]) else {
                break;
            };
            i += skip;
            let after_first = match (b[i], b.get(i + 1)) {
                (b'\n', _) => i + 1,
                (b'\r', Some(b'\n')) => i + 2,
                (b'\r', None) => {
                    // A lone \r at the end may be the start of \r\n: wait for more bytes.
                    self.scanned = i;
                    return None;
                }
                (b'\r', _) => i + 1,
                _ => {
                    i += 1;
                    continue;
                }
            };
            match (b.get(after_first), b.get(after_first + 1)) {
                (Some(b'\n'), _) => return Some(after_first + 1),
                (Some(b'\r'), Some(b'\n')) => return Some(after_first + 2),
                (Some(b'\r'), Some(_)) => return Some(after_first + 1),
                (Some(b'\r'), None) | (None, _) => {
                    self.scanned = i;
                    return None;
                }
                _ => i = after_first,
            }
        }
        self.scanned = b.len();
        None
    }
}

/// The fields of one event that gatehouse reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    pub event: Option<&'a [u8]>,
    /// The data lines joined; borrowed when there is a single line.
    pub data: Option<std::borrow::Cow<'a, [u8]>>,
}

/// Reads `event:` and `data:` from one whole event.
pub fn fields(event: &[u8]) -> Fields<'_> {
    let mut out = Fields::default();
    for line in lines(event) {
        if line.is_empty() || line[0] == b':' {
            continue;
        }
        let (name, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => (&line[..i], strip_space(&line[i + 1..])),
            None => (line, &b""[..]),
        };
        match name {
            b"event" => out.event = Some(value),
            b"data" => {
                out.data = Some(match out.data.take() {
                    None => std::borrow::Cow::Borrowed(value),
                    Some(prev) => {
                        let mut joined = prev.into_owned();
                        joined.push(b'\n');
                        joined.extend_from_slice(value);
                        std::borrow::Cow::Owned(joined)
                    }
                })
            }
            _ => {}
        }
    }
    out
}

/// The pieces between `\n` and `\r` bytes (as `split` on either would give them), found with
/// memchr rather than a byte-at-a-time closure.
fn lines(mut rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match memchr::memchr2(b'\n', b'\r', rest) {
            Some(i) => {
                let line = &rest[..i];
                rest = &rest[i + 1..];
                Some(line)
            }
            None => {
                done = true;
                Some(rest)
            }
        }
    })
}

fn strip_space(v: &[u8]) -> &[u8] {
    v.strip_prefix(b" ").unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(input: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut s = SseSplitter::default();
        let mut out = Vec::new();
        for chunk in input {
            s.push(chunk);
            while let Some(Piece::Event(e)) = s.next_piece() {
                out.push(e.to_vec());
            }
        }
        out
    }

    #[test]
    fn splits_at_blank_lines_whatever_the_cuts() {
        let stream: &[u8] = b"data: a\n\ndata: b\r\n\r\n: comment\n\ndata: c\r\rdata: [DONE]\n\n";
        let whole = events(&[stream]);
        assert_eq!(whole.len(), 5);
        assert_eq!(whole.concat(), stream);
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(events(&[a, b]), whole, "cut at {cut}");
        }
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(events(&bytewise), whole);
    }

    #[test]
    fn reads_fields() {
        let f = fields(b"event: response.completed\ndata: {\"a\":1}\n\n");
        assert_eq!(f.event, Some(&b"response.completed"[..]));
        assert_eq!(f.data.as_deref(), Some(&b"{\"a\":1}"[..]));
        let f = fields(b"data:x\ndata: y\n\n");
        assert_eq!(f.data.as_deref(), Some(&b"x\ny"[..]));
        assert_eq!(fields(b": keep-alive\n\n").data, None);
    }

    #[test]
    fn oversized_events_are_handed_out_unsplit() {
        let mut s = SseSplitter::default();
        s.push(&vec![b'x'; MAX_EVENT_BYTES + 1]);
        assert!(
            matches!(s.next_piece(), Some(Piece::Oversized(b)) if b.len() == MAX_EVENT_BYTES + 1)
        );
        assert!(s.is_empty());
    }
}
