//! Trains the learned stage on the non-holdout corpus rows and writes
//! `model.bin` into the policies directory.
//!
//! `cargo run --release --example train -- /work/shared/corpus policies [--cv]`
//! `--cv` also prints 5-fold out-of-fold figures on the TRAINING rows (for
//! choosing the learned weight curve without looking at the holdout).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use gatehouse::detect::train::{cross_validate, featurise, training_rows, TrainConfig};
use gatehouse::detect::{train, MODEL_FILE};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let corpus = PathBuf::from(args.first().map_or("/work/shared/corpus", String::as_str));
    let out = PathBuf::from(args.get(1).map_or("policies", String::as_str)).join(MODEL_FILE);
    let started = Instant::now();
    let model = match train(&corpus) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = model.save(&out) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "wrote {} ({} bytes) in {:.1}s",
        out.display(),
        model.to_bytes().len(),
        started.elapsed().as_secs_f64()
    );
    if args.iter().any(|a| a == "--cv") {
        cv(&corpus);
    }
    ExitCode::SUCCESS
}

fn cv(corpus: &std::path::Path) {
    let rows = match training_rows(corpus) {
        Ok(r) => r,
        Err(e) => return eprintln!("error: {e}"),
    };
    let cfg = TrainConfig::default();
    let probs = cross_validate(&featurise(&rows, cfg.features), cfg, 5);
    for cut in [0.5f32, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95] {
        let mut by: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
        for (r, p) in rows.iter().zip(&probs) {
            let e = by.entry(r.category.as_str()).or_default();
            e.0 += 1;
            e.1 += usize::from(*p >= cut);
        }
        let line: Vec<String> = by
            .iter()
            .map(|(c, (n, k))| {
                format!(
                    "{}={:.1}",
                    &c[..c.len().min(12)],
                    100.0 * *k as f64 / *n as f64
                )
            })
            .collect();
        println!("oof p>={cut:.2}: {}", line.join(" "));
    }
}
