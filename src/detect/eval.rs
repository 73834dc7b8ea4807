//! Eval: recall, false-positive rate and latency over the dev corpus.
//!
//! Owns the fixed train/holdout split, reading corpus JSONL (tooling only,
//! never the scan path) and the report. The split hashes the text (FNV-1a
//! 64), so it is stable across runs, machines and corpus order, and the same
//! text always lands on the same side. "Detected" means a verdict at medium
//! or above. Trade-off: per-row latency is measured around `scan_text` with
//! a monotonic clock, which includes allocation but not JSON parsing.
//! Examples of misses and false positives are kept only for the training
//! split, so tuning never looks at holdout rows.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Instant;

use serde::Deserialize;

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

/// One corpus row.
#[derive(Clone, Debug, Deserialize)]
pub struct Row {
    pub text: String,
    pub label: String,
    pub category: String,
}

impl Row {
    /// True for attack rows.
    pub fn is_attack(&self) -> bool {
        self.label == "attack"
    }
}

/// Error reading the corpus.
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
}

/// Reads a JSONL corpus file.
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

/// Which rows an evaluation covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    All,
    Holdout,
    Training,
}

impl Split {
    fn keeps(self, text: &str) -> bool {
        match self {
            Split::All => true,
            Split::Holdout => split_is_holdout(text),
            Split::Training => !split_is_holdout(text),
        }
    }
}

/// Counts for one corpus category.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub rows: usize,
    pub detected: usize,
}

impl Tally {
    /// Detected share in percent.
    pub fn percent(&self) -> f64 {
        100.0 * self.detected as f64 / self.rows.max(1) as f64
    }
}

/// Evaluation results.
#[derive(Clone, Debug, Default)]
pub struct EvalReport {
    pub split: Option<Split>,
    pub attacks: BTreeMap<String, Tally>,
    pub benign: BTreeMap<String, Tally>,
    /// Per-row scan latency in nanoseconds, sorted.
    pub latency_ns: Vec<u64>,
    /// Training split only: (category, score, first 160 chars) of errors.
    pub errors: Vec<(String, f32, String)>,
}

/// Evaluates `detector` on the corpus files; `holdout_only` restricts to the holdout split.
///
/// # Errors
/// A corpus file cannot be read.
pub fn evaluate(
    detector: &Detector,
    attacks: &Path,
    benign: &Path,
    holdout_only: bool,
) -> Result<EvalReport, CorpusError> {
    let split = if holdout_only {
        Split::Holdout
    } else {
        Split::All
    };
    evaluate_split(detector, attacks, benign, split)
}

/// Evaluates on one split.
///
/// # Errors
/// A corpus file cannot be read.
pub fn evaluate_split(
    detector: &Detector,
    attacks: &Path,
    benign: &Path,
    split: Split,
) -> Result<EvalReport, CorpusError> {
    let mut rep = EvalReport {
        split: Some(split),
        ..EvalReport::default()
    };
    for (path, attack) in [(attacks, true), (benign, false)] {
        for row in read_rows(path)?
            .into_iter()
            .filter(|r| split.keeps(&r.text))
        {
            let t = Instant::now();
            let v = detector.scan_text(&row.text);
            rep.latency_ns
                .push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            let hit = v.detected();
            let table = if attack {
                &mut rep.attacks
            } else {
                &mut rep.benign
            };
            let tally = table.entry(row.category.clone()).or_default();
            tally.rows += 1;
            tally.detected += usize::from(hit);
            if split == Split::Training && hit != attack {
                let head: String = row.text.chars().take(160).collect();
                rep.errors.push((row.category, v.score, head));
            }
        }
    }
    rep.latency_ns.sort_unstable();
    Ok(rep)
}

impl EvalReport {
    /// Latency percentile in microseconds.
    pub fn latency_us(&self, pct: f64) -> f64 {
        if self.latency_ns.is_empty() {
            return 0.0;
        }
        let i = ((self.latency_ns.len() - 1) as f64 * pct / 100.0).round() as usize;
        self.latency_ns[i] as f64 / 1000.0
    }

    fn total(map: &BTreeMap<String, Tally>) -> Tally {
        map.values().fold(Tally::default(), |a, t| Tally {
            rows: a.rows + t.rows,
            detected: a.detected + t.detected,
        })
    }

    /// Overall attack recall in percent.
    pub fn recall(&self) -> f64 {
        Self::total(&self.attacks).percent()
    }

    /// Overall benign false-positive rate in percent.
    pub fn fpr(&self) -> f64 {
        Self::total(&self.benign).percent()
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "split: {:?}", self.split.unwrap_or(Split::All))?;
        writeln!(f, "recall (detected = medium or above)")?;
        for (c, t) in &self.attacks {
            writeln!(
                f,
                "  {c:<22} {:>6.1}%  ({}/{})",
                t.percent(),
                t.detected,
                t.rows
            )?;
        }
        let a = Self::total(&self.attacks);
        writeln!(
            f,
            "  {:<22} {:>6.1}%  ({}/{})",
            "OVERALL",
            a.percent(),
            a.detected,
            a.rows
        )?;
        writeln!(f, "false positives")?;
        for (c, t) in &self.benign {
            writeln!(
                f,
                "  {c:<22} {:>6.1}%  ({}/{})",
                t.percent(),
                t.detected,
                t.rows
            )?;
        }
        let b = Self::total(&self.benign);
        writeln!(
            f,
            "  {:<22} {:>6.1}%  ({}/{})",
            "OVERALL",
            b.percent(),
            b.detected,
            b.rows
        )?;
        writeln!(
            f,
            "scan latency us: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
            self.latency_us(50.0),
            self.latency_us(90.0),
            self.latency_us(99.0),
            self.latency_us(100.0)
        )
    }
}
