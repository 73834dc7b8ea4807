//! Response bodies: a gatehouse-made answer (`Full`) or the upstream's answer relayed as it
//! arrives (`Relay`). Both carry the request's `Recorder`, so the record is sent when the body
//! ends or is dropped (client gone) — exactly once either way.
//!
//! The relay forwards each upstream chunk as soon as it arrives. For event streams it reads a
//! copy event by event (first token, usage, errors); only when gatehouse itself asked for usage
//! does it hold back partial events, so that it can drop the one usage-only chunk the client did
//! not ask for. Memory is bounded: the SSE splitter caps an event, the plain tee caps the copy.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::capture::AnswerText;
use super::kind::Kind;
use super::record::Recorder;
use crate::detect::{Action, Match, ResponseWindow, RiskLevel, Verdict};
use crate::event::{Blame, Exchange, Outcome};
use crate::llm::sse::{self, Piece, SseSplitter};
use crate::llm::{inspect_event, parse_answer, parse_usage, StreamKind};

fn join(a: Bytes, b: Bytes) -> Bytes {
    match (a.is_empty(), b.is_empty()) {
        (_, true) => a,
        (true, false) => b,
        (false, false) => [a, b].concat().into(),
    }
}

/// Puts a response-scanning hit into the request's verdict (critical; blocked unless shadow).
pub fn add_response_match(ex: &mut Exchange, m: Match, blocked: bool) {
    let mut v = ex
        .verdict
        .as_deref()
        .cloned()
        .unwrap_or_else(Verdict::clean);
    if !v.categories.contains(&m.category) {
        v.categories.push(m.category);
    }
    v.score = v.score.max(m.weight);
    v.level = RiskLevel::Critical;
    v.action = Action::Block;
    v.blocked = blocked;
    v.shadow |= !blocked;
    v.matches.push(m);
    ex.verdict = Some(std::sync::Arc::new(v));
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest plain (non-stream) answer kept whole to read usage and text; beyond it only the
/// tail is kept, which still holds `usage` in every OpenAI-compatible answer.
const PLAIN_KEEP: usize = 1024 * 1024;
const TAIL_KEEP: usize = 64 * 1024;

pub enum ProxyBody {
    Full {
        data: Option<Bytes>,
        rec: Option<Recorder>,
    },
    Relay(Box<Relay>),
}

impl ProxyBody {
    /// A gatehouse-made body; the record's outcome must already be set.
    pub fn full(data: Bytes, rec: Recorder) -> ProxyBody {
        ProxyBody::Full {
            data: Some(data),
            rec: Some(rec),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Full { data, rec } => {
                if let Some(d) = data.take() {
                    if let Some(r) = rec.as_mut() {
                        r.ex().bytes_out = d.len() as u64;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                if let Some(r) = rec.take() {
                    r.finish();
                }
                Poll::Ready(None)
            }
            ProxyBody::Relay(relay) => relay.poll(cx),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Relay(relay) => relay.upstream.size_hint(),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full { data, .. } => data.is_none(),
            ProxyBody::Relay(relay) => relay.ended,
        }
    }
}

/// How the relay reads what passes through.
pub enum Reading {
    /// An event stream of the given dialect; `strip_usage` drops the usage-only chunk.
    Events { kind: StreamKind, strip_usage: bool },
    /// A plain answer: kept (bounded) and read at the end.
    Plain,
    /// Not an inference answer (or an upstream error): forwarded, not read.
    Opaque,
}

pub struct Relay {
    upstream: Incoming,
    rec: Option<Recorder>,
    reading: Reading,
    splitter: SseSplitter,
    kept: BytesMut,
    overflowed: bool,
    idle: Duration,
    deadline: Instant,
    timer: Pin<Box<Sleep>>,
    saw_error: bool,
    text_chars: u64,
    /// Set when the relay has ended; the next poll returns `None`.
    ended: bool,
    /// Hold partial events back so each one can be dropped: when stripping usage or scanning.
    hold: bool,
    /// Response scanning, when on; `shadow` records a hit without ending the stream.
    scan: Option<ResponseScan>,
    /// A critical hit in the answer: the stream ends with an error event.
    blocked: Option<Match>,
    /// The answer text for the record, when capture is on (bounded).
    answer: Option<AnswerText>,
}

/// Response scanning state for one answer.
pub struct ResponseScan {
    pub window: ResponseWindow,
    pub shadow: bool,
}

impl Relay {
    pub fn new(
        upstream: Incoming,
        rec: Recorder,
        reading: Reading,
        idle: Duration,
        total: Duration,
    ) -> Relay {
        let deadline = Instant::from_std(rec.started()) + total;
        let first = (Instant::now() + idle).min(deadline);
        Relay {
            upstream,
            rec: Some(rec),
            reading,
            splitter: SseSplitter::default(),
            kept: BytesMut::new(),
            overflowed: false,
            idle,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(first)),
            saw_error: false,
            text_chars: 0,
            ended: false,
            hold: false,
            scan: None,
            blocked: None,
            answer: None,
        }
    }

    /// Keeps the answer text (up to the capture's budget) for the record.
    pub fn with_answer(mut self, answer: Option<AnswerText>) -> Relay {
        self.answer = answer;
        self
    }

    /// Puts the captured answer text, if any, into the record.
    fn finish_answer(&mut self) {
        if let (Some(text), Some(rec)) = (self.answer.take(), self.rec.as_mut()) {
            text.finish(rec.ex());
        }
    }

    /// Scans the answer's text as it passes (event streams only).
    pub fn with_scan(mut self, scan: Option<ResponseScan>) -> Relay {
        let events = matches!(self.reading, Reading::Events { .. });
        self.scan = scan.filter(|_| events);
        self.hold = self.scan.is_some()
            || matches!(
                self.reading,
                Reading::Events {
                    strip_usage: true,
                    ..
                }
            );
        self
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.upstream).poll_frame(cx) {
                Poll::Pending => {
                    if self.timer.as_mut().poll(cx).is_ready() {
                        let total = Instant::now() >= self.deadline;
                        let kind = if total {
                            Kind::UpstreamTotalTimeout
                        } else {
                            Kind::UpstreamIdleTimeout
                        };
                        return self.fail(kind);
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let next = (Instant::now() + self.idle).min(self.deadline);
                        self.timer.as_mut().reset(next);
                        let mut out = self.observe(data);
                        if let Some(m) = self.blocked.take() {
                            return self.end_blocked(out, m);
                        }
                        // A body of known length ends with its last data frame: hyper may never
                        // poll again, so the record is finished now.
                        let last = self.upstream.is_end_stream();
                        if last {
                            out = join(out, self.rest());
                        }
                        self.rec_mut().ex().bytes_out += out.len() as u64;
                        if last {
                            self.finish();
                        }
                        if out.is_empty() {
                            continue;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(error = %e, "upstream body failed");
                    return self.fail(Kind::UpstreamReset);
                }
                Poll::Ready(None) => {
                    let rest = self.rest();
                    self.rec_mut().ex().bytes_out += rest.len() as u64;
                    self.finish();
                    if rest.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
            }
        }
    }

    fn rec_mut(&mut self) -> &mut Recorder {
        self.rec
            .as_mut()
            .expect("the recorder is only taken when the relay ends")
    }

    /// Reads a chunk on its way through; returns the bytes to forward.
    fn observe(&mut self, data: Bytes) -> Bytes {
        let first = self.rec_mut().ex().ttft.is_none();
        match self.reading {
            Reading::Opaque => data,
            Reading::Plain => {
                if first {
                    self.mark_first_token();
                }
                self.keep(&data);
                data
            }
            Reading::Events { kind, strip_usage } => {
                self.splitter.push(&data);
                let mut out = BytesMut::new();
                while let Some(piece) = self.splitter.next_piece() {
                    match piece {
                        Piece::Event(ev) => {
                            let keep = self.inspect(kind, &ev, strip_usage);
                            if self.blocked.is_some() {
                                break;
                            }
                            if keep && self.hold {
                                out.extend_from_slice(&ev);
                            }
                        }
                        Piece::Oversized(b) if self.hold => out.extend_from_slice(&b),
                        Piece::Oversized(_) => {}
                    }
                }
                if self.hold {
                    out.freeze()
                } else {
                    data
                }
            }
        }
    }

    /// Reads one whole event; false when it is the usage chunk to strip.
    fn inspect(&mut self, kind: StreamKind, event: &[u8], strip_usage: bool) -> bool {
        let fields = sse::fields(event);
        let Some(data) = fields.data else {
            return true;
        };
        let ev = inspect_event(kind, &data);
        if ev.token && self.rec_mut().ex().ttft.is_none() {
            self.mark_first_token();
        }
        self.saw_error |= ev.error;
        self.text_chars += ev.text_chars;
        if let Some(a) = self.answer.as_mut() {
            a.push(&ev.text);
        }
        let ex = self.rec_mut().ex();
        if let Some(u) = ev.usage {
            ex.usage = u;
            ex.cost = ev.cost.or(ex.cost);
        }
        if ex.response_model.is_none() {
            ex.response_model = ev.model.map(std::borrow::Cow::into_owned);
        }
        if let Some(scan) = self.scan.as_mut() {
            if let Some(m) = scan.window.push(&ev.text) {
                let shadow = scan.shadow;
                if shadow {
                    add_response_match(self.rec_mut().ex(), m, false);
                } else {
                    self.blocked = Some(m);
                    return false;
                }
            }
        }
        !(strip_usage && ev.usage_only)
    }

    /// Ends the stream after `out` with an error event: the answer leaked a secret or canary.
    fn end_blocked(
        &mut self,
        out: Bytes,
        m: Match,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.ended = true;
        let category = m.category.as_str();
        let frame = format!(
            "data: {{\"error\":{{\"message\":\"gatehouse: the answer was blocked by the security policy ({category})\",\"type\":\"permission_error\",\"param\":null,\"code\":\"response_blocked\"}}}}\n\n"
        );
        let out = join(out, Bytes::from(frame));
        self.finish_answer();
        let Some(mut rec) = self.rec.take() else {
            return Poll::Ready(Some(Ok(Frame::data(out))));
        };
        let ex = rec.ex();
        ex.bytes_out += out.len() as u64;
        ex.outcome = Outcome::Blocked;
        ex.error_kind = Some(Kind::ResponseBlocked.as_str());
        ex.blame = Some(Blame::Upstream);
        add_response_match(ex, m, true);
        rec.finish();
        Poll::Ready(Some(Ok(Frame::data(out))))
    }

    fn mark_first_token(&mut self) {
        let rec = self.rec_mut();
        let at = rec.started().elapsed();
        rec.ex().ttft = Some(at);
    }

    fn keep(&mut self, data: &[u8]) {
        self.kept.extend_from_slice(data);
        if self.kept.len() > PLAIN_KEEP + TAIL_KEEP {
            self.overflowed = true;
            let cut = self.kept.len() - TAIL_KEEP;
            let _ = self.kept.split_to(cut);
        }
    }

    /// Bytes still held when the upstream body ends: a last event without its blank line,
    /// forwarded as received (only held at all when holding events back).
    fn rest(&mut self) -> Bytes {
        let rest = self.splitter.take_rest();
        if self.hold {
            rest
        } else {
            Bytes::new()
        }
    }

    /// The upstream body ended: read what was kept, finish the record.
    fn finish(&mut self) {
        self.ended = true;
        if matches!(self.reading, Reading::Plain) {
            self.read_plain();
        }
        self.finish_answer();
        let saw_error = self.saw_error;
        let chars = self.text_chars;
        let events = matches!(self.reading, Reading::Events { .. });
        let Some(mut rec) = self.rec.take() else {
            return;
        };
        let ex = rec.ex();
        if events {
            ex.response_chars = Some(chars);
        }
        if ex.outcome == Outcome::Unknown {
            ex.outcome = if saw_error {
                Outcome::StreamError
            } else {
                Outcome::Ok
            };
            if saw_error {
                ex.error_kind = Some(Kind::UpstreamStreamError.as_str());
                ex.blame = Some(Blame::Upstream);
            }
        }
        rec.finish();
    }

    fn read_plain(&mut self) {
        let kept = std::mem::take(&mut self.kept);
        if !self.overflowed {
            let answer = parse_answer(&kept);
            if let Some(a) = self.answer.as_mut() {
                a.push(&answer.text);
            }
            let ex = self.rec_mut().ex();
            ex.response_model = answer.model;
            ex.usage = answer.usage.unwrap_or_default();
            ex.cost = answer.cost;
            ex.response_chars = Some(answer.text_chars);
            return;
        }
        let ex = self.rec_mut().ex();
        let needle = b"\"usage\"";
        if let Some(pos) = kept.windows(needle.len()).rposition(|w| w == needle) {
            let after = &kept[pos + needle.len()..];
            let start = after.iter().position(|b| *b == b'{').unwrap_or(after.len());
            if let Some((usage, cost)) = parse_usage(&after[start..]) {
                ex.usage = usage;
                ex.cost = cost;
            }
        }
    }

    /// The upstream failed mid-answer: record it, and for event streams tell the client with
    /// an error event (headers are gone, so the stream is the only channel left).
    fn fail(&mut self, kind: Kind) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let kind = kind.as_str();
        self.ended = true;
        let partial = !self.splitter.is_empty();
        let strip = self.hold;
        let events = matches!(self.reading, Reading::Events { .. });
        self.finish_answer();
        let mut rec = self.rec.take().expect("the relay ends once");
        let ex = rec.ex();
        ex.outcome = Outcome::StreamError;
        ex.error_kind = Some(kind);
        ex.blame = Some(Blame::Upstream);
        if !events {
            rec.finish();
            return Poll::Ready(Some(Err(format!("gatehouse: {kind}").into())));
        }
        let lead = if partial && !strip { "\n\n" } else { "" };
        let frame = format!(
            "{lead}data: {{\"error\":{{\"message\":\"gatehouse: the upstream stream failed ({kind})\",\"type\":\"server_error\",\"param\":null,\"code\":\"{kind}\"}}}}\n\n"
        );
        ex.bytes_out += frame.len() as u64;
        rec.finish();
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(frame)))))
    }
}
