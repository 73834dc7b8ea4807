//! Config section `detect.judge`: the optional second opinion of a guard model on requests the
//! detector alone leaves uncertain (serde shape and its checks; the client is `proxy::judge`).
//!
//! Off by default. The judge reuses a configured upstream (its base URL, key, extra headers and
//! retries), so its key comes from the environment or a file like every upstream key.

use serde::{Deserialize, Serialize};

use super::Config;

/// Default `detect.judge.timeout_ms`: a small guard model answers a one-word verdict in a few
/// hundred milliseconds; 1.5 s leaves room for a cold provider without doubling a chat call.
pub const DEFAULT_TIMEOUT_MS: u64 = 1500;
/// Bounds of `detect.judge.timeout_ms`: below 50 ms no network call answers; above 30 s the
/// judge would cost more latency than most upstream calls it guards.
pub const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 50..=30_000;
/// Default `detect.judge.max_chars`: about 1,000 tokens, far inside Llama Guard's context.
pub const DEFAULT_MAX_CHARS: usize = 4000;
/// Bounds of `detect.judge.max_chars`.
pub const MAX_CHARS_RANGE: std::ops::RangeInclusive<usize> = 200..=100_000;

/// A risk level as config names it (`detect.judge.band`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum LevelName {
    None,
    Low,
    Medium,
    High,
    Critical,
}

/// What an unanswered judge (error, timeout, an answer that is neither `safe` nor `unsafe`)
/// means.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JudgeFail {
    /// Keep the detector's own verdict.
    #[default]
    Open,
    /// Treat the request as the judge saying `unsafe`.
    Closed,
}

/// The optional judge: a guard model asked about requests in the uncertain band only.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JudgeConfig {
    /// Ask the judge at all. Default false.
    pub enabled: bool,
    /// Name of a configured upstream (`upstreams.<name>`) the judge is called through, with
    /// that upstream's key (from its env variable or file). Default `models.default_upstream`.
    pub upstream: Option<String>,
    /// Model id sent to that upstream. Default `meta-llama/llama-guard-3-8b` (OpenRouter).
    pub model: String,
    /// Risk levels that count as uncertain. Default `[medium, high]`: what the default actions
    /// flag, neither blocked nor cleared by the detector alone.
    pub band: Vec<LevelName>,
    /// Latency budget of one judge call, milliseconds (50 … 30000), retries included; past it
    /// the call is abandoned and `fail` decides. Default 1500.
    pub timeout_ms: u64,
    /// `open` (default): keep the detector's verdict when the judge errs or times out.
    /// `closed`: treat the request as judged unsafe.
    pub fail: JudgeFail,
    /// Characters of request text sent to the judge at most (200 … 100000). Default 4000.
    pub max_chars: usize,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            enabled: false,
            upstream: None,
            model: "meta-llama/llama-guard-3-8b".into(),
            band: vec![LevelName::Medium, LevelName::High],
            timeout_ms: DEFAULT_TIMEOUT_MS,
            fail: JudgeFail::Open,
            max_chars: DEFAULT_MAX_CHARS,
        }
    }
}

impl JudgeConfig {
    /// The upstream the judge is called through: `upstream`, else `models.default_upstream`.
    pub fn upstream_name<'a>(&'a self, c: &'a Config) -> Option<&'a str> {
        self.upstream
            .as_deref()
            .or(c.models.default_upstream.as_deref())
    }
}

/// Checks `detect.judge` (only when enabled: a disabled judge's fields are never used).
pub(super) fn check(c: &Config, p: &mut Vec<String>, w: &mut Vec<String>) {
    let j = &c.detect.judge;
    if !j.enabled {
        return;
    }
    match j.upstream_name(c) {
        None => p.push(
            "detect.judge.upstream: name the upstream the judge is called through (there is no models.default_upstream)".into(),
        ),
        Some(u) if !c.upstreams.contains_key(u) => {
            p.push(format!("detect.judge.upstream: no upstream named {u:?}"));
        }
        Some(_) => {}
    }
    if j.model.trim().is_empty() || j.model.len() > 256 {
        p.push("detect.judge.model must be a model id of 1 to 256 bytes".into());
    }
    if j.band.is_empty() {
        p.push("detect.judge.band must list at least one level (default: medium, high)".into());
    }
    if !TIMEOUT_MS_RANGE.contains(&j.timeout_ms) {
        p.push(format!(
            "detect.judge.timeout_ms {} must be between {} and {}",
            j.timeout_ms,
            TIMEOUT_MS_RANGE.start(),
            TIMEOUT_MS_RANGE.end()
        ));
    }
    if !MAX_CHARS_RANGE.contains(&j.max_chars) {
        p.push(format!(
            "detect.judge.max_chars {} must be between {} and {}",
            j.max_chars,
            MAX_CHARS_RANGE.start(),
            MAX_CHARS_RANGE.end()
        ));
    }
    if !c.detect.enabled {
        w.push("detect.judge.enabled has no effect while detect.enabled is false".into());
    }
    if j.band.contains(&LevelName::Critical) {
        w.push("detect.judge.band includes critical: a guard model answering `safe` lowers what the detector would block".into());
    }
    if j.band.contains(&LevelName::None) {
        w.push(
            "detect.judge.band includes none: every request with nothing found waits for the judge"
                .into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> Config {
        let mut c = Config::default();
        c.detect.judge.enabled = true;
        c
    }

    #[test]
    fn the_default_judge_is_off_and_an_enabled_one_validates_on_the_default_upstream() {
        let c = Config::default();
        assert!(!c.detect.judge.enabled);
        let c = enabled();
        assert_eq!(c.detect.judge.upstream_name(&c), Some("openrouter"));
        let warnings = crate::config::validate(&c).expect("an enabled default judge validates");
        assert!(
            warnings.iter().all(|w| !w.contains("judge")),
            "{warnings:?}"
        );
    }

    #[test]
    fn every_judge_problem_names_its_field() {
        let mut c = enabled();
        c.detect.judge.upstream = Some("nowhere".into());
        c.detect.judge.model = " ".into();
        c.detect.judge.band = vec![];
        c.detect.judge.timeout_ms = 10;
        c.detect.judge.max_chars = 1_000_000;
        let problems = crate::config::validate(&c).expect_err("bad judge").0;
        assert_eq!(
            crate::config::validate::problem_fields(&problems),
            [
                "detect.judge.upstream",
                "detect.judge.model",
                "detect.judge.band",
                "detect.judge.timeout_ms",
                "detect.judge.max_chars"
            ],
            "{problems:#?}"
        );
    }

    #[test]
    fn the_timeout_bounds_are_inclusive() {
        for (ms, ok) in [(49, false), (50, true), (30_000, true), (30_001, false)] {
            let mut c = enabled();
            c.detect.judge.timeout_ms = ms;
            assert_eq!(crate::config::validate(&c).is_ok(), ok, "{ms} ms");
        }
    }

    #[test]
    fn no_upstream_to_call_is_a_problem_and_a_disabled_judge_is_never_checked() {
        let mut c = enabled();
        c.models.default_upstream = None;
        let problems = crate::config::validate(&c).expect_err("no upstream").0;
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("detect.judge.upstream: name the upstream")),
            "{problems:#?}"
        );
        c.detect.judge.enabled = false;
        c.detect.judge.timeout_ms = 0;
        assert!(crate::config::validate(&c).is_ok());
    }

    #[test]
    fn a_band_reaching_critical_or_none_is_warned_about() {
        let mut c = enabled();
        c.detect.judge.band = vec![LevelName::None, LevelName::Critical];
        let warnings = crate::config::validate(&c).expect("allowed");
        assert_eq!(
            warnings.iter().filter(|w| w.contains("judge.band")).count(),
            2,
            "{warnings:?}"
        );
    }

    #[test]
    fn the_yaml_shape_parses_with_lowercase_names() {
        let j: JudgeConfig = serde_yaml::from_str(
            "enabled: true\nupstream: guard\nband: [high]\nfail: closed\ntimeout_ms: 800\n",
        )
        .expect("parses");
        assert_eq!(
            (j.band, j.fail, j.timeout_ms, j.max_chars),
            (
                vec![LevelName::High],
                JudgeFail::Closed,
                800,
                DEFAULT_MAX_CHARS
            )
        );
        assert!(serde_yaml::from_str::<JudgeConfig>("bnad: [high]").is_err());
    }
}
