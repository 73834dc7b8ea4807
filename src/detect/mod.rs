//! Threat detection: normalise → match → score → verdict.
//!
//! Owns everything between "here are the texts the model will read" and "this
//! is how risky they are": policy loading ([`policy`]), normalisation
//! ([`normalise`], [`confusables`]), bounded decoding ([`decode`]), the
//! benign-analysis framing of quoted attacks ([`framing`]), the system
//! prompt's declared secrets ([`context`]), the
//! compiled matcher ([`matcher`]), the learned stage ([`learned`]) and its
//! cross-language concept lexicon ([`concepts`]), scoring
//! ([`scoring`]), per-user behaviour ([`behaviour`]), response scanning
//! ([`window`]), request-body extraction ([`extract`]), the per-message scan
//! cache ([`cache`]) and the offline tooling ([`train`], [`eval`]).
//!
//! The scan path is synchronous and pure in its result: no IO, no async; its
//! only shared state is the segment cache (short read locks on a shard, a
//! write lock to insert), which changes what a scan costs, never its verdict
//! (the behaviour tracker takes a short std mutex, outside [`Detector::scan`]).
//! Files are read only when a [`Detector`] is built. A `Detector`'s rules are
//! immutable after build; it is `Send + Sync`, meant to be shared in an `Arc`
//! and replaced whole (with an empty cache) on reload.

pub mod behaviour;
pub mod cache;
pub mod concepts;
pub mod confusables;
pub mod context;
pub mod decode;
pub mod eval;
pub mod extract;
pub mod framing;
pub mod json;
mod lanes;
pub mod learned;
pub mod matcher;
pub mod normalise;
pub mod policy;
pub mod regexes;
mod scan;
pub mod scoring;
mod suffix;
pub mod train;
pub mod verdict;
pub mod window;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

pub use behaviour::{Behaviour, BehaviourConfig, Escalation};
pub use eval::{evaluate_rows, split_is_holdout, EvalReport};
pub use extract::{extract, extract_json, ScanEndpoint, Unreadable};
pub use learned::LearnedModel;
pub use policy::{OnError, Problem};
pub use train::train;
pub use verdict::{
    Action, Category, LevelActions, Match, RiskLevel, Role, ScanInput, Segment, Settings, Verdict,
    DEFAULT_SEGMENT_CACHE_MB,
};
pub use window::ResponseWindow;

/// File name of the learned model inside the policies directory.
pub const MODEL_FILE: &str = "model.bin";

/// Error building a [`Detector`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more policy files failed to load; every problem is listed.
    #[error("{} policy problem(s):\n{}", .0.len(), list(.0))]
    Policies(Vec<Problem>),
    #[error("loading the learned model")]
    Model(#[source] learned::ModelError),
    #[error("compiling policies")]
    Build(#[source] matcher::BuildError),
    #[error("compiling canaries")]
    Canaries(#[source] aho_corasick::BuildError),
}

fn list(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
    lines.join("\n")
}

impl Error {
    /// True when any failing file declared `fail_closed`, or a file failed
    /// before its `on_error` could be read (unknown intent is treated as closed).
    pub fn fail_closed(&self) -> bool {
        match self {
            Error::Policies(ps) => ps.iter().any(|p| p.on_error != Some(OnError::FailOpen)),
            Error::Model(_) | Error::Build(_) | Error::Canaries(_) => true,
        }
    }
}

/// A loaded policy file's identity, for the caller's reload decisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyInfo {
    pub file: PathBuf,
    pub family: String,
    pub on_error: OnError,
    pub rules: usize,
}

/// The compiled detector: built once from a policies directory.
pub struct Detector {
    matcher: matcher::Matcher,
    model: Option<LearnedModel>,
    /// Per-segment scans kept for segments sent again; `None` when configured off.
    cache: Option<cache::SegmentCache>,
    response: Arc<window::ResponseRules>,
    policies: Vec<PolicyInfo>,
    settings: Settings,
    build_time: Duration,
}

impl Detector {
    /// Loads `dir/*.yaml` and, if present, `dir/model.bin`.
    ///
    /// # Errors
    /// [`Error::Policies`] lists every schema problem (file, rule, field);
    /// the other variants cover a corrupt model or an unbuildable automaton.
    pub fn from_dir(dir: &Path, settings: Settings) -> Result<Detector, Error> {
        let started = Instant::now();
        let (policies, problems) = policy::load_dir(dir);
        if !problems.is_empty() {
            return Err(Error::Policies(problems));
        }
        let model_path = dir.join(MODEL_FILE);
        let model = if model_path.exists() {
            Some(LearnedModel::load(&model_path).map_err(Error::Model)?)
        } else {
            None
        };
        Detector::build(&policies, model, settings, started)
    }

    /// Builds from already-parsed policies (tests, embedded policies).
    ///
    /// # Errors
    /// See [`Detector::from_dir`].
    pub fn from_policies(
        policies: &[policy::Policy],
        model: Option<LearnedModel>,
        settings: Settings,
    ) -> Result<Detector, Error> {
        Detector::build(policies, model, settings, Instant::now())
    }

    fn build(
        policies: &[policy::Policy],
        model: Option<LearnedModel>,
        settings: Settings,
        started: Instant,
    ) -> Result<Detector, Error> {
        let matcher = matcher::Matcher::build(policies).map_err(Error::Build)?;
        let response = Arc::new(window::ResponseRules::build(policies, &settings.canaries)?);
        let policies = policies
            .iter()
            .map(|p| PolicyInfo {
                file: p.file.clone(),
                family: p.spec.family.clone(),
                on_error: p.spec.on_error,
                rules: p.spec.rules.len(),
            })
            .collect();
        Ok(Detector {
            matcher,
            model,
            cache: cache::SegmentCache::new(settings.segment_cache_bytes),
            response,
            policies,
            settings,
            build_time: started.elapsed(),
        })
    }

    /// Scans every segment of a request. Pure in its result (the segment cache changes only
    /// what it costs); never panics.
    pub fn scan(&self, input: &ScanInput) -> Verdict {
        let started = Instant::now();
        let findings = scan::scan(
            &self.matcher,
            self.model.as_ref(),
            self.cache.as_ref(),
            input,
        );
        let mut v = scoring::score(findings, self.model.as_ref(), input, &self.settings);
        v.scan_us = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        v
    }

    /// Scans one user segment.
    pub fn scan_text(&self, text: &str) -> Verdict {
        self.scan(&ScanInput::user(text))
    }

    /// The segment cache's hits and misses (zero when it is off).
    pub fn cache_stats(&self) -> cache::CacheStats {
        self.cache
            .as_ref()
            .map(cache::SegmentCache::stats)
            .unwrap_or_default()
    }

    /// Time spent loading and compiling.
    pub fn build_time(&self) -> Duration {
        self.build_time
    }

    /// The settings this detector was built with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The loaded policy files and their declared `on_error`.
    pub fn policies(&self) -> &[PolicyInfo] {
        &self.policies
    }

    /// Number of compiled rules across all policies.
    pub fn rule_count(&self) -> usize {
        self.matcher.rule_count()
    }

    /// True when a learned model was loaded.
    pub fn has_model(&self) -> bool {
        self.model.is_some()
    }

    pub(crate) fn response_rules(&self) -> Arc<window::ResponseRules> {
        Arc::clone(&self.response)
    }
}
