//! Response window: secrets and canaries in streamed model output.
//!
//! Owns scanning a response as it streams, across chunk boundaries: each
//! delta is appended to a short tail of what came before, the buffer is
//! scanned with the response rules (policy rules marked `response: true`)
//! and the system-prompt canaries, and only hits that end in the new text
//! are reported, so nothing is reported twice. A window costs one `Arc`
//! clone until the first push. Trade-off: a secret longer than [`TAIL`]
//! bytes that arrives in many tiny chunks is still found (the tail covers
//! its prefix), but one longer than the tail plus the final chunk is not.

use std::sync::Arc;

use aho_corasick::AhoCorasick;
use regex::{Regex, RegexSet};

use super::matcher::RuleMeta;
use super::policy::Policy;
use super::scan::snippet;
use super::verdict::{Category, Match};
use super::Detector;

/// Bytes of earlier output kept to catch a secret split across chunks.
const TAIL: usize = 512;
/// Rule id reported when a canary string leaks.
pub const CANARY_RULE: &str = "canary.system_prompt_leak";

/// The response-side rules, compiled once per detector.
pub struct ResponseRules {
    set: RegexSet,
    rules: Vec<(RuleMeta, Regex)>,
    canaries: Option<AhoCorasick>,
}

impl ResponseRules {
    /// Compiles response rules from policies and the configured canaries.
    ///
    /// # Errors
    /// A regex or the canary automaton fails to compile (validated earlier, so
    /// only size limits can trip here).
    pub fn build(policies: &[Policy], canaries: &[String]) -> Result<ResponseRules, super::Error> {
        let mut rules = Vec::new();
        for r in policies.iter().flat_map(|p| &p.spec.rules) {
            if let (true, Some(re)) = (r.response, &r.regex) {
                let meta = RuleMeta {
                    id: r.id.as_str().into(),
                    category: r.category,
                    weight: r.weight,
                    response: true,
                };
                let re = Regex::new(re)
                    .map_err(|e| super::Error::Build(super::matcher::BuildError::Regex(e)))?;
                rules.push((meta, re));
            }
        }
        let set = RegexSet::new(rules.iter().map(|(_, re)| re.as_str()))
            .map_err(|e| super::Error::Build(super::matcher::BuildError::Regex(e)))?;
        let pats: Vec<&str> = canaries
            .iter()
            .map(String::as_str)
            .filter(|c| !c.is_empty())
            .collect();
        let canaries = if pats.is_empty() {
            None
        } else {
            Some(AhoCorasick::new(pats).map_err(super::Error::Canaries)?)
        };
        Ok(ResponseRules {
            set,
            rules,
            canaries,
        })
    }
}

/// Scans one streamed response.
pub struct ResponseWindow {
    rules: Arc<ResponseRules>,
    buf: String,
    /// Bytes of the stream dropped from the front of `buf`.
    consumed: usize,
}

impl ResponseWindow {
    /// A window for one response of `detector`'s rules and canaries.
    pub fn new(detector: &Detector) -> Self {
        ResponseWindow {
            rules: detector.response_rules(),
            buf: String::new(),
            consumed: 0,
        }
    }

    /// Adds a text delta; returns the first critical hit (secret or canary)
    /// that ends in this delta.
    pub fn push(&mut self, text_delta: &str) -> Option<Match> {
        if text_delta.is_empty() {
            return None;
        }
        let fresh_from = self.buf.len();
        self.buf.push_str(text_delta);
        let hit = self.find(fresh_from);
        self.trim();
        hit
    }

    fn find(&self, fresh_from: usize) -> Option<Match> {
        let buf = self.buf.as_str();
        if let Some(ac) = &self.rules.canaries {
            if let Some(m) = ac.find_iter(buf).find(|m| m.end() > fresh_from) {
                return Some(self.report(
                    CANARY_RULE.into(),
                    Category::DataExtraction,
                    20.0,
                    (m.start(), m.end()),
                ));
            }
        }
        for i in self.rules.set.matches(buf).iter() {
            let (meta, re) = &self.rules.rules[i];
            if let Some(m) = re.find_iter(buf).find(|m| m.end() > fresh_from) {
                return Some(self.report(
                    meta.id.clone(),
                    meta.category,
                    meta.weight,
                    (m.start(), m.end()),
                ));
            }
        }
        None
    }

    fn report(
        &self,
        rule: Arc<str>,
        category: Category,
        weight: f32,
        span: (usize, usize),
    ) -> Match {
        Match {
            category,
            rule,
            weight,
            segment: 0,
            span: (self.consumed + span.0, self.consumed + span.1),
            snippet: redact(&snippet(&self.buf, span)),
        }
    }

    fn trim(&mut self) {
        if self.buf.len() <= TAIL {
            return;
        }
        let mut cut = self.buf.len() - TAIL;
        while !self.buf.is_char_boundary(cut) {
            cut += 1;
        }
        self.consumed += cut;
        self.buf.drain(..cut);
    }
}

/// Keeps the first 6 chars of a leaked secret so the record can name it
/// without storing it.
fn redact(s: &str) -> String {
    let keep: String = s.chars().take(6).collect();
    format!("{keep}…")
}
