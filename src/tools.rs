//! Detection tooling behind the CLI: `gatehouse scan` (one verdict per input line), `gatehouse
//! eval` (recall and false-positive rates on a labelled corpus) and `gatehouse train` (fits the
//! learned stage). File and stdin IO lives here, not in `detect`.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::Context;

use crate::config::Config;
use crate::detect::eval::{evaluate_split, Split};
use crate::detect::{Detector, MODEL_FILE};

fn detector(config: &Config) -> anyhow::Result<Detector> {
    let settings = crate::proxy::detect_settings(&config.detect);
    Detector::from_dir(&config.detect.policies, settings).context("loading the detection policies")
}

/// Reads JSONL (`{"text": ...}` per line) or plain text lines on stdin; writes one verdict per
/// line as JSON.
///
/// # Errors
/// The policies do not load, or stdout is closed.
pub fn scan(config: &Config) -> anyhow::Result<()> {
    let det = detector(config)?;
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let text = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(serde_json::Value::Object(o)) => o
                .get("text")
                .and_then(|t| t.as_str())
                .unwrap_or("")
                .to_owned(),
            _ => line,
        };
        let v = det.scan_text(&text);
        writeln!(out, "{}", serde_json::to_string(&v)?)?;
    }
    out.flush()?;
    Ok(())
}

/// Prints recall per attack category, false positives per benign category and latency
/// percentiles for `attacks` and `benign` JSONL files (the corpus format).
///
/// # Errors
/// The policies or the files cannot be read.
pub fn eval(config: &Config, attacks: &Path, benign: &Path, split: &str) -> anyhow::Result<()> {
    let det = detector(config)?;
    let split = match split {
        "all" => Split::All,
        "training" => Split::Training,
        "holdout" => Split::Holdout,
        other => anyhow::bail!("--split must be holdout, training or all, not {other:?}"),
    };
    println!(
        "detector: {} rules, learned model {}, built in {:.1} ms",
        det.rule_count(),
        if det.has_model() { "loaded" } else { "absent" },
        det.build_time().as_secs_f64() * 1000.0
    );
    let report = evaluate_split(&det, attacks, benign, split)?;
    print!("{report}");
    Ok(())
}

/// Trains the learned stage on the training split of a corpus directory and writes
/// `model.bin` into the policies directory.
///
/// # Errors
/// The corpus cannot be read or the model cannot be written.
pub fn train(config: &Config, corpus: &Path) -> anyhow::Result<()> {
    let model = crate::detect::train(corpus)?;
    let out = config.detect.policies.join(MODEL_FILE);
    model.save(&out)?;
    println!("wrote {}", out.display());
    Ok(())
}
