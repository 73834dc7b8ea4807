//! Eval: recall, false positives and latency over labelled prompts, three ways.
//!
//! Owns reading labelled JSONL (tooling only, never the scan path), the fixed
//! random train/holdout split of the dev corpus, and the report. A row may
//! carry a `role` (`user`, `tool`, `document`) and a `system` prompt, so
//! indirect injection and system-prompt-aware extraction are scanned as the
//! proxy would see them. Every figure is counted at three levels: medium+
//! ("detected", the recall figure), high+ and critical, and broken down by
//! category, source, family and language.
//!
//! - [`evaluate_rows`]: the shipped detector on any rows (the repository's
//!   hand-written fixtures in `eval/`, or a held-out file).
//! - [`leave_one_source_out`]: for each source, a learned stage trained on
//!   every other source, tested on that one. The random split overstates
//!   quality because near-duplicate templates land on both sides of it; a
//!   source the model never saw does not. Rules are the same in every fold
//!   (they were written by hand against the dev corpus), so this measures the
//!   learned stage's generalisation plus whatever the rules catch.
//! - the random split ([`split_is_holdout`]), kept as context.
//!
//! The split hashes the text (FNV-1a 64), so it is stable across runs,
//! machines and corpus order. Examples of misses and false positives are kept
//! only for rows the caller may tune on (training split, `dev` fixtures).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Instant;

use serde::Deserialize;

use super::policy::Policy;
use super::train::{self, TrainConfig};
use super::verdict::{RiskLevel, Role, ScanInput, Segment, Settings, Verdict};
use super::Detector;

/// Percent of rows held out (by text hash) from training and tuning.
pub const HOLDOUT_PERCENT: u64 = 27;

/// True when `text` belongs to the held-out split.
pub fn split_is_holdout(text: &str) -> bool {
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    h % 100 < HOLDOUT_PERCENT
}

/// One labelled row.
#[derive(Clone, Debug, Deserialize)]
pub struct Row {
    pub text: String,
    pub label: String,
    pub category: String,
    #[serde(default)]
    pub source: String,
    /// Hand-written sets: the family of attack or hard negative.
    #[serde(default)]
    pub family: Option<String>,
    /// ISO 639-1 language code, when known.
    #[serde(default)]
    pub lang: Option<String>,
    /// Hand-written sets: `dev` (may be inspected while tuning) or `sealed` (never).
    #[serde(default)]
    pub split: Option<String>,
    /// Who wrote the text: `user` (default), `tool`, `document`.
    #[serde(default)]
    pub role: Option<String>,
    /// An operator system prompt read before the text.
    #[serde(default)]
    pub system: Option<String>,
}

impl Row {
    /// True for attack rows.
    pub fn is_attack(&self) -> bool {
        self.label == "attack"
    }

    /// The row as the proxy would hand it to the detector.
    pub fn input(&self) -> ScanInput {
        let mut segments = Vec::with_capacity(2);
        if let Some(s) = self.system.as_deref().filter(|s| !s.is_empty()) {
            segments.push(Segment {
                role: Role::System,
                text: s.to_owned(),
            });
        }
        let role = match self.role.as_deref() {
            Some("tool") => Role::Tool,
            Some("document") => Role::Document,
            Some("assistant") => Role::Assistant,
            _ => Role::User,
        };
        segments.push(Segment {
            role,
            text: self.text.clone(),
        });
        ScanInput { segments }
    }

    /// True when misses on this row may be shown (it is not sealed).
    fn inspectable(&self) -> bool {
        self.split.as_deref() != Some("sealed")
    }
}

/// Error reading labelled rows.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("{path}: cannot read")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: bad row")]
    Row {
        path: String,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("building the detector for a fold")]
    Detector(#[source] Box<super::Error>),
}

/// Reads a JSONL file of rows.
///
/// # Errors
/// The file cannot be read or a line is not a row.
pub fn read_rows(path: &Path) -> Result<Vec<Row>, CorpusError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CorpusError::Io {
        path: p.clone(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| CorpusError::Row {
                path: p.clone(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Reads a file, or every `*.jsonl` file of a directory (sorted by name).
///
/// # Errors
/// A file cannot be read or has a bad row.
pub fn read_path(path: &Path) -> Result<Vec<Row>, CorpusError> {
    if !path.is_dir() {
        return read_rows(path);
    }
    let io = |source| CorpusError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut files: Vec<_> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut rows = Vec::new();
    for f in files {
        rows.extend(read_rows(&f)?);
    }
    Ok(rows)
}

/// Every row of a dev corpus directory (`attacks.jsonl` then `benign.jsonl`).
///
/// # Errors
/// A file cannot be read or has a bad row.
pub fn corpus_rows(dir: &Path) -> Result<Vec<Row>, CorpusError> {
    let mut rows = read_rows(&dir.join("attacks.jsonl"))?;
    rows.extend(read_rows(&dir.join("benign.jsonl"))?);
    Ok(rows)
}

/// Which rows of the dev corpus an evaluation covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    All,
    Holdout,
    Training,
}

impl Split {
    /// True when `text` is on this side of the split.
    pub fn keeps(self, text: &str) -> bool {
        match self {
            Split::All => true,
            Split::Holdout => split_is_holdout(text),
            Split::Training => !split_is_holdout(text),
        }
    }
}

/// Counts for one group of rows: how many reached each level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub rows: usize,
    /// Medium or above: "detected".
    pub detected: usize,
    pub high: usize,
    pub critical: usize,
}

impl Tally {
    fn add(&mut self, level: RiskLevel) {
        self.rows += 1;
        self.detected += usize::from(level >= RiskLevel::Medium);
        self.high += usize::from(level >= RiskLevel::High);
        self.critical += usize::from(level >= RiskLevel::Critical);
    }

    /// Detected (medium+) share in percent.
    pub fn percent(&self) -> f64 {
        pct(self.detected, self.rows)
    }

    /// High+ share in percent.
    pub fn high_percent(&self) -> f64 {
        pct(self.high, self.rows)
    }

    /// Share at critical (what the default actions block).
    pub fn critical_percent(&self) -> f64 {
        pct(self.critical, self.rows)
    }
}

fn pct(n: usize, of: usize) -> f64 {
    100.0 * n as f64 / of.max(1) as f64
}

/// What a breakdown groups rows by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dim {
    Category,
    Family,
    Source,
    Lang,
    /// Hand-written sets: `dev` or `sealed`.
    Split,
}

impl Dim {
    const ALL: [Dim; 5] = [
        Dim::Category,
        Dim::Family,
        Dim::Source,
        Dim::Lang,
        Dim::Split,
    ];

    fn name(self) -> &'static str {
        match self {
            Dim::Category => "category",
            Dim::Family => "family",
            Dim::Source => "source",
            Dim::Lang => "language",
            Dim::Split => "split",
        }
    }

    fn key(self, r: &Row) -> Option<&str> {
        match self {
            Dim::Category => Some(r.category.as_str()),
            Dim::Family => r.family.as_deref(),
            Dim::Source => Some(r.source.as_str()).filter(|s| !s.is_empty()),
            Dim::Lang => r.lang.as_deref(),
            Dim::Split => r.split.as_deref(),
        }
    }
}

/// Evaluation results.
#[derive(Clone, Debug, Default)]
pub struct EvalReport {
    /// What was measured and how (first line of the printout).
    pub method: String,
    pub attacks: BTreeMap<(Dim, String), Tally>,
    pub benign: BTreeMap<(Dim, String), Tally>,
    pub attack_total: Tally,
    pub benign_total: Tally,
    /// Per-row scan latency in nanoseconds, sorted.
    pub latency_ns: Vec<u64>,
    /// Inspectable rows only: (source and category, level, score, first 160 chars) of misses
    /// and false positives.
    pub errors: Vec<(String, RiskLevel, f32, String)>,
}

impl EvalReport {
    /// An empty report for `method`.
    pub fn new(method: impl Into<String>) -> EvalReport {
        EvalReport {
            method: method.into(),
            ..EvalReport::default()
        }
    }

    /// Counts one scanned row.
    pub fn add(&mut self, row: &Row, v: &Verdict, show_errors: bool) {
        let attack = row.is_attack();
        let (table, total) = if attack {
            (&mut self.attacks, &mut self.attack_total)
        } else {
            (&mut self.benign, &mut self.benign_total)
        };
        total.add(v.level);
        for d in Dim::ALL {
            if let Some(k) = d.key(row) {
                table.entry((d, k.to_owned())).or_default().add(v.level);
            }
        }
        if show_errors && row.inspectable() && v.detected() != attack {
            let head: String = row.text.chars().take(160).collect();
            let cat = row.family.as_ref().unwrap_or(&row.category);
            let label = format!("{} {cat}", row.source);
            self.errors.push((label, v.level, v.score, head));
        }
    }

    /// Latency percentile in microseconds.
    pub fn latency_us(&self, pct: f64) -> f64 {
        if self.latency_ns.is_empty() {
            return 0.0;
        }
        let i = ((self.latency_ns.len() - 1) as f64 * pct / 100.0).round() as usize;
        self.latency_ns[i] as f64 / 1000.0
    }

    /// Overall attack recall (medium+) in percent.
    pub fn recall(&self) -> f64 {
        self.attack_total.percent()
    }

    /// Overall benign false-positive rate (medium+) in percent.
    pub fn fpr(&self) -> f64 {
        self.benign_total.percent()
    }

    /// The tally of one group, if any row fell in it.
    pub fn group(&self, attack: bool, dim: Dim, key: &str) -> Option<Tally> {
        let t = if attack { &self.attacks } else { &self.benign };
        t.get(&(dim, key.to_owned())).copied()
    }
}

/// Scans `rows` (those `split` keeps) with `detector`.
pub fn evaluate_rows(detector: &Detector, rows: &[Row], split: Split, method: &str) -> EvalReport {
    let mut rep = EvalReport::new(method);
    for row in rows.iter().filter(|r| split.keeps(&r.text)) {
        let input = row.input();
        let t = Instant::now();
        let v = detector.scan(&input);
        rep.latency_ns
            .push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        rep.add(row, &v, split != Split::Holdout);
    }
    rep.latency_ns.sort_unstable();
    rep
}

/// Leave-one-source-out: for each source of `rows`, a learned stage trained (with `cfg`) on
/// the rows of every other source, in a detector with `policies` and `settings`, scans the
/// rows of that source. Rows without a source form one source of their own.
///
/// # Errors
/// A fold's detector cannot be built (the policies do not compile).
pub fn leave_one_source_out(
    policies: &[Policy],
    settings: &Settings,
    rows: &[Row],
    cfg: TrainConfig,
    show_errors: bool,
) -> Result<EvalReport, CorpusError> {
    let mut sources: Vec<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    let mut rep = EvalReport::new(format!(
        "leave-one-source-out over {} sources ({} rows): each source scanned by a learned \
         stage trained on all the others",
        sources.len(),
        rows.len()
    ));
    let settings = Settings {
        segment_cache_bytes: 0,
        ..settings.clone()
    };
    for held in sources {
        let train_rows: Vec<Row> = rows.iter().filter(|r| r.source != held).cloned().collect();
        let model = train::fit_rows(&train_rows, cfg);
        let det = Detector::from_policies(policies, Some(model), settings.clone())
            .map_err(|e| CorpusError::Detector(Box::new(e)))?;
        for row in rows.iter().filter(|r| r.source == held) {
            let v = det.scan(&row.input());
            rep.add(row, &v, show_errors);
        }
    }
    Ok(rep)
}

fn line(f: &mut fmt::Formatter<'_>, key: &str, t: &Tally, attack: bool) -> fmt::Result {
    if attack {
        writeln!(
            f,
            "  {key:<40} {:>6.1}%  {:>6.1}%  {:>5.1}%  ({}/{})",
            t.percent(),
            t.high_percent(),
            t.critical_percent(),
            t.detected,
            t.rows
        )
    } else {
        writeln!(
            f,
            "  {key:<40} {:>6.1}%  {:>6.1}%  {:>4}  ({}/{})",
            t.percent(),
            t.high_percent(),
            t.critical,
            t.detected,
            t.rows
        )
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "method: {}", self.method)?;
        for (attack, table, total) in [
            (true, &self.attacks, &self.attack_total),
            (false, &self.benign, &self.benign_total),
        ] {
            for d in Dim::ALL {
                let rows: Vec<_> = table.iter().filter(|((dim, _), _)| *dim == d).collect();
                if rows.len() < 2 && d != Dim::Category {
                    continue;
                }
                if attack {
                    writeln!(
                        f,
                        "attack recall by {:<30}  medium+   high+    crit",
                        d.name()
                    )?;
                } else {
                    writeln!(
                        f,
                        "benign false positives by {:<21}  medium+   high+  crit",
                        d.name()
                    )?;
                }
                for ((_, k), t) in rows {
                    line(f, k, t, attack)?;
                }
                line(f, "OVERALL", total, attack)?;
            }
        }
        if !self.latency_ns.is_empty() {
            writeln!(
                f,
                "scan latency us: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
                self.latency_us(50.0),
                self.latency_us(90.0),
                self.latency_us(99.0),
                self.latency_us(100.0)
            )?;
        }
        Ok(())
    }
}
