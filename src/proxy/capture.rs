//! Text capture into the record: the request body and the answer text, only when a consumer
//! asked for it (`store.capture` or `traces.capture: full`), each capped at a byte budget.
//!
//! Off by default and free when off: no copy is made. When on, at most `max_bytes` of each side
//! is copied on the request path; redaction happens later, in the consumers, off the hot path.

use crate::config::{Config, TraceCapture};
use crate::event::{Capture, Exchange};

/// Which sides to capture and how much of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextCapture {
    pub prompts: bool,
    pub responses: bool,
    pub max_bytes: usize,
}

impl TextCapture {
    /// What the configured consumers need; `None` when none wants text.
    pub fn from_config(c: &Config) -> Option<TextCapture> {
        let traces = c.traces.capture == TraceCapture::Full;
        let store = &c.store.capture;
        let prompts = store.prompts || traces;
        let responses = store.responses || traces;
        let max_bytes = match (store.prompts || store.responses, traces) {
            (true, true) => store.max_bytes.max(c.traces.max_bytes),
            (true, false) => store.max_bytes,
            (false, _) => c.traces.max_bytes,
        };
        (prompts || responses).then_some(TextCapture {
            prompts,
            responses,
            max_bytes,
        })
    }

    /// Keeps the head of the request body as the prompt, when prompts are captured.
    pub fn prompt(&self, ex: &mut Exchange, body: &[u8]) {
        if !self.prompts {
            return;
        }
        let head = &body[..body.len().min(self.max_bytes)];
        let text = String::from_utf8_lossy(head);
        let text = crate::redact::cap(&text, self.max_bytes).to_owned();
        ex.capture.get_or_insert_with(Capture::default).prompt = Some(text);
    }

    /// A buffer for the answer text, when answers are captured.
    pub fn answer(&self) -> Option<AnswerText> {
        self.responses.then(|| AnswerText {
            text: String::new(),
            max_bytes: self.max_bytes,
        })
    }
}

/// The answer text as it streams past, up to a byte budget.
#[derive(Debug)]
pub struct AnswerText {
    text: String,
    max_bytes: usize,
}

impl AnswerText {
    /// Appends what still fits (cut at a char boundary).
    pub fn push(&mut self, s: &str) {
        let room = self.max_bytes.saturating_sub(self.text.len());
        if room > 0 {
            self.text.push_str(crate::redact::cap(s, room));
        }
    }

    /// Puts the text into the record.
    pub fn finish(self, ex: &mut Exchange) {
        ex.capture.get_or_insert_with(Capture::default).response = Some(self.text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_captured_by_default() {
        assert_eq!(TextCapture::from_config(&Config::default()), None);
    }

    #[test]
    fn full_trace_capture_turns_both_sides_on() {
        let mut c = Config::default();
        c.traces.capture = TraceCapture::Full;
        c.traces.max_bytes = 10;
        let cap = TextCapture::from_config(&c).expect("on");
        assert!(cap.prompts && cap.responses);
        let mut ex = Exchange::new("id".into(), "POST", "/v1/chat/completions");
        cap.prompt(&mut ex, "héllo wörld, this is long".as_bytes());
        let prompt = ex.capture.as_ref().and_then(|c| c.prompt.clone());
        assert_eq!(
            prompt.as_deref(),
            Some("héllo wö"),
            "capped at a char boundary"
        );
        let mut answer = cap.answer().expect("answers on");
        answer.push("Bl");
        answer.push("ue sky ñandú");
        answer.finish(&mut ex);
        let response = ex.capture.as_ref().and_then(|c| c.response.clone());
        assert_eq!(response.as_deref(), Some("Blue sky "));
    }
}
