//! The `Exchange`: the finished record of one request through the proxy.
//!
//! Plain data. The proxy fills one `Exchange` per request (also for requests it rejects, blocks,
//! or that the client abandons) and hands it to a bounded channel exactly once; everything else in
//! gatehouse (metrics, store, analytics, exporters, alerts) consumes these records off the hot
//! path. Nothing here does IO.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::detect::{RiskLevel, Verdict};

/// Which API a request used. A bounded set: it is a metric label.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Models,
    /// The seed document's `POST /generate`.
    Generate,
    /// Any other `/v1/*` path, passed through.
    #[default]
    Other,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
            Endpoint::Models => "models",
            Endpoint::Generate => "generate",
            Endpoint::Other => "other",
        }
    }
}

/// How a request ended. A bounded set: it is a metric label.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The upstream answered 2xx and, for streams, the stream finished cleanly.
    Ok,
    /// The upstream answered with an error status; its body was passed through untouched.
    UpstreamError,
    /// The upstream failed after the response started (reset, idle timeout, error frame).
    StreamError,
    /// Gatehouse could not get an answer (connect error, timeout, no upstream).
    Failed,
    /// Gatehouse refused the request (bad input, auth, unknown model).
    Rejected,
    /// The detector blocked the request; it never reached the upstream.
    Blocked,
    /// The client went away before the response was complete.
    Cancelled,
    /// The record was never finished (should not happen; kept so a bug is visible, not lost).
    #[default]
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::UpstreamError => "upstream_error",
            Outcome::StreamError => "stream_error",
            Outcome::Failed => "failed",
            Outcome::Rejected => "rejected",
            Outcome::Blocked => "blocked",
            Outcome::Cancelled => "cancelled",
            Outcome::Unknown => "unknown",
        }
    }

    /// True when the request counts as an error in error rates (the client did not get an answer
    /// through no fault of its own).
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Outcome::UpstreamError | Outcome::StreamError | Outcome::Failed
        )
    }
}

/// Whose fault an error was (after pingora's `ErrorSource`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Blame {
    Client,
    Upstream,
    Gateway,
}

impl Blame {
    pub fn as_str(self) -> &'static str {
        match self {
            Blame::Client => "client",
            Blame::Upstream => "upstream",
            Blame::Gateway => "gateway",
        }
    }
}

/// Token counts as the upstream reported them. `cached` is part of `prompt`, `reasoning` part of
/// `completion` (OpenAI semantics; Responses-API names are mapped onto these).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    pub fn total(&self) -> Option<u64> {
        match (self.prompt_tokens, self.completion_tokens) {
            (None, None) => None,
            (p, c) => Some(p.unwrap_or(0) + c.unwrap_or(0)),
        }
    }
}

/// Prompt and response text, present only when text capture is configured (off by default).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Capture {
    pub prompt: Option<String>,
    pub response: Option<String>,
}

/// The finished record of one request.
#[derive(Clone, Debug, Serialize)]
pub struct Exchange {
    /// Gatehouse's request id (UUIDv7 text), also sent to the client as `x-gatehouse-request-id`.
    pub id: String,
    /// When the request arrived.
    pub started_at: SystemTime,
    /// The end user: the gateway key's user, or with `end_users: trusted` keys (and without
    /// keys) the id the client sent (`X-Gatehouse-User`, `user`, `metadata.user_id`).
    pub user: Option<String>,
    /// The user of the gateway key that authenticated the request, when keys are in use.
    pub key_user: Option<String>,
    pub team: Option<String>,
    /// Session id when the client sent one (`x-gatehouse-session` or `metadata.session_id`).
    pub session: Option<String>,
    pub endpoint: Endpoint,
    /// HTTP method and path as received (the path has no query string).
    pub method: String,
    pub path: String,
    /// The model the client asked for (an alias or an upstream id).
    pub model: Option<String>,
    /// The model is a configured alias or a priced model (a bounded set of known names).
    pub model_known: bool,
    /// The model id sent upstream after alias resolution.
    pub upstream_model: Option<String>,
    /// The model the upstream says it used (`model` of the response).
    pub response_model: Option<String>,
    /// Name of the upstream that answered (the last one tried).
    pub upstream: Option<Arc<str>>,
    /// Upstream's request id (`x-request-id` / `x-generation-id`), when sent.
    pub upstream_request_id: Option<String>,
    pub stream: bool,
    /// HTTP status sent to the client (0 when the client left before a response started).
    pub status: u16,
    pub outcome: Outcome,
    /// The `x-gatehouse-error` kind for errors gatehouse made or observed.
    pub error_kind: Option<&'static str>,
    pub blame: Option<Blame>,
    /// Upstream attempts made (retries and fallbacks included).
    pub attempts: u32,
    /// From arrival to the last byte sent (or to the end of the exchange).
    pub latency: Duration,
    /// From arrival to the upstream's response headers.
    pub ttfb: Option<Duration>,
    /// From arrival to the first content or tool-call delta (streams) or to the body (plain).
    pub ttft: Option<Duration>,
    pub usage: Usage,
    /// Cost in USD: the upstream's own figure when it reports one, else the price table's.
    pub cost: Option<f64>,
    /// Request body bytes received from the client.
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    /// Characters of prompt text the model reads, and of the answer text (quality metrics).
    pub prompt_chars: Option<u64>,
    pub response_chars: Option<u64>,
    /// The detector's verdict, when the request was scanned.
    pub verdict: Option<Arc<Verdict>>,
    pub capture: Option<Capture>,
    /// The limit that refused the request (429), when one did.
    pub limited: Option<Limited>,
    /// The optional judge's opinion, when the verdict fell in its band and it was asked.
    pub judge: Option<Judged>,
}

/// What the judge (a guard model, `detect.judge`) said about one request. A bounded set: it is
/// a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeOutcome {
    /// The guard model answered `safe`: the verdict was lowered to low.
    Safe,
    /// The guard model answered `unsafe`: the verdict was raised to critical.
    Unsafe,
    /// No usable answer: a failed call, an error status, or an answer that is neither `safe`
    /// nor `unsafe`.
    Error,
    /// No answer within `detect.judge.timeout_ms`.
    Timeout,
}

impl JudgeOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            JudgeOutcome::Safe => "safe",
            JudgeOutcome::Unsafe => "unsafe",
            JudgeOutcome::Error => "error",
            JudgeOutcome::Timeout => "timeout",
        }
    }
}

/// The judge's part of a record: its outcome, how long it took, and the level the detector
/// alone gave (the verdict holds the level after the judge).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Judged {
    pub outcome: JudgeOutcome,
    /// From sending the question to the answer, or to giving up.
    pub latency: Duration,
    pub level_before: RiskLevel,
}

/// Which limit refused a request: its scope (`key`, `user`, `team`, `model`, `global`) and
/// what ran out (`requests`, `tokens`, `concurrent`, `budget`). Names no key or user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limited {
    pub scope: &'static str,
    pub reason: &'static str,
}

impl Exchange {
    /// True when the request counts in error rates: it failed through no fault of the client
    /// (an upstream or gateway failure). An upstream's 4xx to a client's mistake (a wrong
    /// endpoint, a bad parameter) is the client's, counted as a client error instead.
    pub fn counts_as_error(&self) -> bool {
        self.outcome.is_error() && self.blame != Some(Blame::Client)
    }

    /// True for a request refused or failed through the client's own fault (not a block).
    pub fn is_client_error(&self) -> bool {
        self.blame == Some(Blame::Client) && !matches!(self.outcome, Outcome::Ok | Outcome::Blocked)
    }

    /// True when the request used the model but its cost is unknown: no cost was reported by
    /// the upstream (`usage.cost`) nor computed from the price table (an unpriced model), yet
    /// tokens were counted or an inference call succeeded. Such a request adds nothing to cost
    /// sums, so the sums say how many of them there were instead of passing for $0.
    pub fn cost_unknown(&self) -> bool {
        let inference = matches!(
            self.endpoint,
            Endpoint::ChatCompletions
                | Endpoint::Completions
                | Endpoint::Embeddings
                | Endpoint::Responses
                | Endpoint::Generate
        );
        self.cost.is_none()
            && (self.usage.total().is_some() || (inference && self.outcome == Outcome::Ok))
    }

    /// A fresh record for a request that has just arrived.
    pub fn new(id: String, method: &str, path: &str) -> Exchange {
        Exchange {
            id,
            started_at: SystemTime::now(),
            user: None,
            key_user: None,
            model_known: false,
            team: None,
            session: None,
            endpoint: Endpoint::Other,
            method: method.to_owned(),
            path: path.to_owned(),
            model: None,
            upstream_model: None,
            response_model: None,
            upstream: None,
            upstream_request_id: None,
            stream: false,
            status: 0,
            outcome: Outcome::Unknown,
            error_kind: None,
            blame: None,
            attempts: 0,
            latency: Duration::ZERO,
            ttfb: None,
            ttft: None,
            usage: Usage::default(),
            cost: None,
            bytes_in: 0,
            bytes_out: 0,
            prompt_chars: None,
            response_chars: None,
            verdict: None,
            capture: None,
            limited: None,
            judge: None,
        }
    }

    /// The cost: the upstream's own figure, else the price table's for the model that answered
    /// (or was asked for) and the tokens used. `app::fan_out` fills the record with it; budgets
    /// are charged with it when the record is finished.
    pub fn cost_with(&self, prices: &crate::llm::prices::Prices) -> Option<f64> {
        if self.cost.is_some() {
            return self.cost;
        }
        // By the model the upstream says it ran, else the one asked for: OpenAI answers with a
        // dated snapshot (`gpt-4o-mini-2024-07-18`) the price table lists undated.
        let u = self.usage;
        let cost = |m: Option<&str>| {
            m.and_then(|m| prices.cost(m, u.prompt_tokens, u.completion_tokens, u.cached_tokens))
        };
        cost(self.response_model.as_deref()).or_else(|| cost(self.upstream_model.as_deref()))
    }

    /// Milliseconds since the Unix epoch of `started_at`.
    pub fn started_unix_ms(&self) -> i64 {
        self.started_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Feedback on one request (`POST /api/feedback` on the admin port, `POST /v1/feedback` on the
/// proxy port). `score` is in `0..=1` (1 = good): thumbs up/down send 1/0, a five-star widget
/// sends `stars / 5`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    pub request_id: String,
    pub score: f64,
    #[serde(default)]
    pub comment: Option<String>,
}

/// Longest request id accepted in feedback.
const REQUEST_ID_MAX: usize = 128;

impl Feedback {
    /// Checks the fields.
    ///
    /// # Errors
    /// A message saying what is wrong: empty or over-long request id, or a score outside
    /// `0..=1`.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.request_id.trim().is_empty() {
            return Err("request_id must not be empty");
        }
        if self.request_id.len() > REQUEST_ID_MAX {
            return Err("request_id is longer than 128 bytes");
        }
        if !(0.0..=1.0).contains(&self.score) {
            return Err("score must be a number between 0 and 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which records count as "cost unknown" (the `unpriced` rollup column, the live windows'
    /// `unpriced_requests`): those that used the model, by tokens counted or an inference call
    /// answered, and have no cost. A free model's `$0` is a known cost.
    #[test]
    fn cost_unknown_is_a_used_model_without_a_cost() {
        use Endpoint::{ChatCompletions as Chat, Embeddings, Generate, Models, Other};
        use Outcome::{Blocked, Ok, Rejected, UpstreamError as Upstream};
        let rows = [
            ("answered, no usage", Chat, Ok, None, None, true),
            ("answered, tokens", Chat, Ok, Some(10), None, true),
            ("an embedding", Embeddings, Ok, Some(10), None, true),
            ("the seed's /generate", Generate, Ok, None, None, true),
            ("tokens, then failed", Chat, Upstream, Some(10), None, true),
            ("priced", Chat, Ok, Some(10), Some(0.01), false),
            ("a free model", Chat, Ok, Some(10), Some(0.0), false),
            ("refused upstream", Chat, Upstream, None, None, false),
            ("blocked", Chat, Blocked, None, None, false),
            ("refused by gatehouse", Chat, Rejected, None, None, false),
            ("the model list", Models, Ok, None, None, false),
            ("a passthrough path", Other, Ok, None, None, false),
        ];
        for (name, endpoint, outcome, tokens, cost, unknown) in rows {
            let mut ex = Exchange::new("r".into(), "POST", "/v1/x");
            (ex.endpoint, ex.outcome, ex.cost) = (endpoint, outcome, cost);
            ex.usage.prompt_tokens = tokens;
            assert_eq!(ex.cost_unknown(), unknown, "{name}");
        }
    }
}
