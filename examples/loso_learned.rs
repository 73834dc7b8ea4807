//! Leave-one-source-out for the learned stage alone, fast enough to compare training settings.
//!
//! Run: `cargo run --release --example loso_learned -- policies CORPUS_DIR EXTRA... > rows.tsv`.
//! Rows are featurised once; each fold fits only the binary model (no category head), and the
//! rules are scanned once with no model. It prints one line per row: source, label, category,
//! the rules' score, the text's words, its role weight and the held-out learned probability, so
//! that calibration (floor, weight) can be swept offline. `gatehouse eval --loso` stays the
//! figure of record; this is for choosing what to run it on. Settings come from the environment:
//! `LOSO_L2`, `LOSO_EPOCHS`, `LOSO_LR`, `LOSO_BITS`, `LOSO_CHAR_LIMIT`, `LOSO_NO_RULES`.

use std::path::{Path, PathBuf};

use gatehouse::detect::eval::{corpus_rows, read_path, Row};
use gatehouse::detect::learned::{sigmoid, FeatureConfig};
use gatehouse::detect::normalise::{normalise, word_count};
use gatehouse::detect::policy::load_dir;
use gatehouse::detect::train::{balance_sources, featurise, fit_binary, trainable, TrainConfig};
use gatehouse::detect::{Detector, Settings};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let [policies, corpus, extra @ ..] = &args[..] else {
        anyhow::bail!("usage: loso_learned POLICIES CORPUS_DIR [EXTRA...]");
    };
    let mut rows = corpus_rows(corpus)?;
    for p in extra {
        rows.extend(read_path(p)?);
    }
    rows.retain(trainable);
    let base = TrainConfig::default();
    let cfg = TrainConfig {
        features: FeatureConfig {
            bits: env("LOSO_BITS", base.features.bits),
            char_ngram: env("LOSO_CHAR_NGRAM", base.features.char_ngram),
            char_limit: env("LOSO_CHAR_LIMIT", base.features.char_limit),
        },
        epochs: env("LOSO_EPOCHS", base.epochs),
        learning_rate: env("LOSO_LR", base.learning_rate),
        l2: env("LOSO_L2", base.l2),
        ..base
    };
    eprintln!("{cfg:?}, {} rows", rows.len());
    let rules = rules_scores(policies, &rows)?;
    let ex = featurise(&rows, cfg.features);
    let mut sources: Vec<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    let mask = (1u32 << cfg.features.bits) - 1;
    let mut p = vec![0f32; rows.len()];
    for held in &sources {
        let train_idx: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].source != *held)
            .collect();
        let refs: Vec<&Row> = train_idx.iter().map(|&i| &rows[i]).collect();
        let mut sub: Vec<_> = train_idx.iter().map(|&i| ex[i].clone()).collect();
        balance_sources(&refs, &mut sub);
        let (w, bias) = fit_binary(&sub, cfg);
        for i in (0..rows.len()).filter(|&i| rows[i].source == *held) {
            let f = &ex[i].feats;
            let s: f32 = f.iter().map(|&h| w[(h & mask) as usize]).sum();
            p[i] = sigmoid(bias + s / (f.len().max(1) as f32).sqrt());
        }
        eprintln!("{held}");
    }
    for (i, r) in rows.iter().enumerate() {
        let (score, words, role) = &rules[i];
        println!(
            "{}\t{}\t{}\t{score:.2}\t{words}\t{role}\t{:.4}",
            r.source, r.label, r.category, p[i]
        );
    }
    Ok(())
}

/// Each row's score from the rules alone, its words and its role's weight.
fn rules_scores(policies: &Path, rows: &[Row]) -> anyhow::Result<Vec<(f32, usize, f32)>> {
    let no_rules = env("LOSO_NO_RULES", 0) == 1;
    let (pol, problems) = load_dir(policies);
    anyhow::ensure!(problems.is_empty(), "policy problems: {problems:?}");
    let det = Detector::from_policies(
        &pol,
        None,
        Settings {
            segment_cache_bytes: 0,
            ..Settings::default()
        },
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            let input = r.input();
            let seg = input.segments.last().expect("a row has its text");
            let score = if no_rules {
                0.0
            } else {
                det.scan(&input).score
            };
            let words = word_count(&normalise(&r.text).text);
            (score, words, seg.role.weight())
        })
        .collect())
}
