//! The inspect phase: scans what the model will read with the detector, applies the configured
//! action (per endpoint and team overrides, shadow mode) and the per-user behaviour window, puts
//! the verdict into the record, and refuses a blocked request before anything reaches the
//! upstream. Between the scan and the actions, a verdict in the optional judge's band waits for
//! the judge's opinion (`super::judge`), which may move its level; the actions then apply to the
//! level it ends at, so a request the judge clears is neither flagged nor counted against its user.
//!
//! Scanning is CPU work on the async runtime: small bodies are scanned inline (tens of
//! microseconds), bodies above `INLINE_SCAN_MAX` on the blocking pool so one huge prompt
//! cannot stall other connections — and at most half the cores' worth of those at once
//! (`LARGE_SCANS`), so a burst of large bodies queues behind itself, never in front of small
//! requests. Every text is scanned whatever its size (skipping any would be a bypass); what
//! bounds the work is the body limit, the per-segment decode budget and depth, and this queue.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use http_body_util::BodyExt;

use super::body::add_response_match;
use super::error::ProxyError;
use super::handle::{Done, Relayed};
use super::judge::Judge;
use super::record::Recorder;
use crate::config::{ActionName, ActionsConfig, DetectConfig};
use crate::detect::{
    self, Action, Behaviour, Detector, LevelActions, ResponseWindow, ScanEndpoint, Settings,
    Verdict,
};
use crate::event::{Endpoint, Exchange};

/// Bodies larger than this are scanned off the async threads (about a millisecond of scan).
const INLINE_SCAN_MAX: usize = 64 * 1024;

/// Large scans running at once: half the cores, at least one.
static LARGE_SCANS: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    tokio::sync::Semaphore::new((cores / 2).max(1))
});

/// The detector with its configured actions; part of the `Runtime`, rebuilt on reload.
pub struct Guard {
    pub detector: Arc<Detector>,
    overrides: Vec<Override>,
    pub block_status: http::StatusCode,
    pub scan_responses: bool,
    /// The guard model asked about uncertain verdicts; `None` unless `detect.judge.enabled`.
    judge: Option<Judge>,
}

struct Override {
    endpoints: Vec<String>,
    teams: Vec<String>,
    actions: LevelActions,
    shadow: bool,
}

fn level_actions(a: &ActionsConfig) -> LevelActions {
    let f = |n: ActionName| match n {
        ActionName::Allow => Action::Allow,
        ActionName::Flag => Action::Flag,
        ActionName::Block => Action::Block,
        ActionName::Alert => Action::Alert,
    };
    LevelActions {
        none: f(a.none),
        low: f(a.low),
        medium: f(a.medium),
        high: f(a.high),
        critical: f(a.critical),
    }
}

/// The detector settings a config asks for.
pub fn settings(c: &DetectConfig) -> Settings {
    let t = c.thresholds;
    Settings {
        thresholds: [t.low, t.medium, t.high, t.critical],
        actions: level_actions(&c.actions),
        shadow: c.shadow,
        canaries: c.responses.canaries.clone(),
        segment_cache_bytes: c.segment_cache_mb.saturating_mul(1024 * 1024),
    }
}

impl Guard {
    /// Builds the detector from the policies directory, and the judge on `judge_upstream`
    /// when `detect.judge` is enabled.
    ///
    /// # Errors
    /// The detector's own error: every policy problem, with file, rule and field.
    pub fn build(
        c: &DetectConfig,
        judge_upstream: Option<Arc<super::upstream::Upstream>>,
    ) -> Result<Guard, detect::Error> {
        let detector = Detector::from_dir(Path::new(&c.policies), settings(c))?;
        let overrides = c
            .overrides
            .iter()
            .map(|o| Override {
                endpoints: o.endpoints.clone(),
                teams: o.teams.clone(),
                actions: level_actions(&o.actions),
                shadow: o.shadow,
            })
            .collect();
        Ok(Guard {
            detector: Arc::new(detector),
            overrides,
            block_status: http::StatusCode::from_u16(c.block_status)
                .unwrap_or(http::StatusCode::FORBIDDEN),
            scan_responses: c.responses.enabled,
            judge: judge_upstream
                .filter(|_| c.judge.enabled)
                .map(|up| Judge::build(&c.judge, up, settings(c).thresholds)),
        })
    }

    /// Decides the action for the verdict's (final) level, with this request's endpoint and
    /// team overrides, else the configured actions and shadow mode.
    fn decide(&self, ex: &Exchange, v: &mut Verdict) {
        let endpoint = ex.endpoint.as_str();
        let team = ex.team.as_deref().unwrap_or("");
        let chosen = self.overrides.iter().find(|o| {
            (o.endpoints.is_empty() || o.endpoints.iter().any(|e| e == endpoint))
                && (o.teams.is_empty() || o.teams.iter().any(|t| t == team))
        });
        let s = self.detector.settings();
        let (actions, shadow) = chosen.map_or((&s.actions, s.shadow), |o| (&o.actions, o.shadow));
        v.shadow = shadow;
        v.action = actions.for_level(v.level);
        v.blocked = v.action == Action::Block && !v.shadow;
    }
}

fn scan_endpoint(e: Endpoint) -> ScanEndpoint {
    match e {
        Endpoint::ChatCompletions | Endpoint::Generate => ScanEndpoint::ChatCompletions,
        Endpoint::Completions => ScanEndpoint::Completions,
        Endpoint::Embeddings => ScanEndpoint::Embeddings,
        Endpoint::Responses => ScanEndpoint::Responses,
        Endpoint::Models | Endpoint::Other => ScanEndpoint::Other,
    }
}

/// Scans a request body; records the verdict; refuses the request when it is blocked.
///
/// Fails closed: a body whose texts the detector cannot all read (JSON the forwarding parse
/// accepted but the detector's stricter one does not, such as a lone surrogate escape, a raw
/// invalid UTF-8 byte or very deep nesting in any field, or more texts than it reads) is
/// refused, never forwarded unscanned.
///
/// # Errors
/// `ProxyError::Blocked` when the verdict blocks; `ProxyError::Unscannable` when the body
/// cannot be read whole.
pub async fn inspect(
    guard: &Guard,
    behaviour: Option<&Behaviour>,
    ex: &mut Exchange,
    body: &Bytes,
) -> Result<(), ProxyError> {
    let input = detect::extract_json(scan_endpoint(ex.endpoint), body).map_err(|e| {
        ProxyError::Unscannable {
            reason: e.to_string(),
        }
    })?;
    ex.prompt_chars = Some(
        input
            .segments
            .iter()
            .map(|s| s.text.chars().count() as u64)
            .sum(),
    );
    let (mut verdict, input) = if body.len() > INLINE_SCAN_MAX {
        let detector = guard.detector.clone();
        // The semaphore is never closed; a scan that panicked is a refusal, never a pass.
        let _turn = LARGE_SCANS
            .acquire()
            .await
            .map_err(|_| ProxyError::Unscannable {
                reason: "the scanner is shutting down".into(),
            })?;
        tokio::task::spawn_blocking(move || (detector.scan(&input), input))
            .await
            .map_err(|_| ProxyError::Unscannable {
                reason: "the scan failed".into(),
            })?
    } else {
        (guard.detector.scan(&input), input)
    };
    if let Some(judge) = guard.judge.as_ref().filter(|j| j.covers(verdict.level)) {
        ex.judge = Some(judge.consult(&input, &mut verdict).await);
    }
    guard.decide(ex, &mut verdict);
    if let Some(b) = behaviour {
        // Escalation follows the end user and, when a key authenticated the request, the key's
        // user as well: naming another end user never escapes a key's cool-down.
        let now = Instant::now();
        let key = ex
            .key_user
            .as_deref()
            .filter(|k| Some(*k) != ex.user.as_deref());
        for user in ex.user.as_deref().into_iter().chain(key) {
            if !verdict.escalated {
                b.apply(user, &mut verdict, now);
            }
        }
        for user in ex.user.as_deref().into_iter().chain(key) {
            b.observe(user, &verdict, now);
        }
    }
    if !verdict.blocked {
        ex.verdict = Some(Arc::new(verdict));
        return Ok(());
    }
    let categories: Vec<&'static str> = verdict.categories.iter().map(|c| c.as_str()).collect();
    let reason = if categories.is_empty() {
        "cool-down after repeated high-risk requests".to_owned()
    } else {
        categories.join(", ")
    };
    // A cool-down says why and for how long; otherwise the first match shows what was found.
    let snippet = if verdict.escalated {
        verdict.matches.last()
    } else {
        verdict.matches.first()
    }
    .map(|m| m.snippet.clone());
    ex.verdict = Some(Arc::new(verdict));
    Err(ProxyError::Blocked {
        status: guard.block_status,
        categories,
        reason,
        snippet,
    })
}

/// Largest plain answer held whole for scanning when response scanning is on.
const SCAN_PLAIN_MAX: usize = 8 * 1024 * 1024;

/// With response scanning on, a plain (non-stream) answer is read whole and scanned before
/// any of it is sent, so a leaked secret never reaches the client.
///
/// # Errors
/// `ResponseBlocked` on a critical hit (not in shadow mode); `ResponseTooLarge` when the
/// answer is over `SCAN_PLAIN_MAX`.
pub async fn scan_plain_answer(
    guard: &Guard,
    rec: &mut Recorder,
    relayed: Relayed,
) -> Result<Done, ProxyError> {
    let (parts, body) = relayed.rsp.into_parts();
    let bytes = match http_body_util::Limited::new(body, SCAN_PLAIN_MAX)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Err(ProxyError::ResponseTooLarge {
                limit: SCAN_PLAIN_MAX,
            })
        }
    };
    let answer = crate::llm::parse_answer(&bytes);
    let ex = rec.ex();
    ex.usage = answer.usage.unwrap_or_default();
    ex.cost = answer.cost;
    ex.response_model = answer.model;
    ex.response_chars = Some(answer.text_chars);
    ex.ttft = ex.ttfb;
    let mut window = ResponseWindow::new(&guard.detector);
    if let Some(m) = window.push(&answer.text) {
        let shadow = guard.detector.settings().shadow;
        let category = m.category.as_str();
        add_response_match(ex, m, !shadow);
        if !shadow {
            return Err(ProxyError::ResponseBlocked {
                status: guard.block_status,
                category,
            });
        }
    }
    let mut rsp = http::Response::new(bytes);
    *rsp.status_mut() = parts.status;
    super::headers::copy_response_headers(&parts.headers, rsp.headers_mut(), true);
    Ok(Done::Made(rsp))
}
