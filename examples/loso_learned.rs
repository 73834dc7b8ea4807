//! Leave-one-source-out for the learned stage alone, fast enough to compare training settings.
//!
//! Run: `cargo run --release --example loso_learned -- policies CORPUS_DIR EXTRA... > rows.tsv`.
//! Rows are featurised once; each fold fits only the binary model (no category head), and the
//! rules are scanned once with no model. It prints one line per row: source, label, category,
//! the rules' score, the text's words, its role weight and the held-out learned probability, so
//! that calibration can be swept offline; and on stderr a summary over prompt injection,
//! jailbreak and extraction: rows caught at medium+ (rules plus the learned weight, at the
//! shipped floor and top weight or at `LOSO_FLOOR` / `LOSO_MAX`), benign rows flagged, and the
//! learned stage alone at 1% of benign rows. Approximate (no quoted-turn discount): `gatehouse
//! eval --loso` stays the figure of record; this is for choosing what to run it on. Training
//! settings come from the environment: `LOSO_L2`, `LOSO_EPOCHS`, `LOSO_LR`, `LOSO_BITS`,
//! `LOSO_CHAR_NGRAM`, `LOSO_CHAR_LIMIT`, `LOSO_CONCEPTS` (concept repeat, 0 = none), `LOSO_HARD` (the hard-negative weight);
//! `LOSO_NO_RULES=1` scores without the rules. `LOSO_UNREAD=SOURCE[,SOURCE…]` keeps those
//! sources' benign rows out of the benign figures (and the 1% threshold) and reports them on a
//! line of their own, so a setting can be chosen without the sources kept for measurement.

use std::path::{Path, PathBuf};

use gatehouse::detect::eval::{corpus_rows, read_path, Row};
use gatehouse::detect::learned::{sigmoid, FeatureConfig};
use gatehouse::detect::normalise::{normalise, word_count};
use gatehouse::detect::policy::load_dir;
use gatehouse::detect::scoring::{learned_weight_with, LEARNED_FLOOR, LEARNED_MAX};
use gatehouse::detect::train::{featurise, fit_binary, sample_weights, trainable, TrainConfig};
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
            concepts: env("LOSO_CONCEPTS", base.features.concepts),
        },
        epochs: env("LOSO_EPOCHS", base.epochs),
        learning_rate: env("LOSO_LR", base.learning_rate),
        l2: env("LOSO_L2", base.l2),
        hard_negative_weight: env("LOSO_HARD", base.hard_negative_weight),
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
        sample_weights(&refs, &mut sub, cfg);
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
    summary(&rows, &rules, &p);
    Ok(())
}

/// Prompt injection, jailbreak and extraction caught, benign flagged, and the learned stage
/// alone at 1% of benign rows, on stderr.
fn summary(rows: &[Row], rules: &[(f32, usize, f32)], p: &[f32]) {
    const MEDIUM: f32 = 7.0;
    let floor = env("LOSO_FLOOR", LEARNED_FLOOR);
    let max = env("LOSO_MAX", LEARNED_MAX);
    let target = |r: &Row| {
        r.is_attack()
            && ["prompt_injection", "jailbreak", "data_extraction"].contains(&r.category.as_str())
    };
    let total = |i: usize| {
        let (score, words, role) = rules[i];
        score + learned_weight_with(p[i], words, floor, max) * role
    };
    let unread_list = std::env::var("LOSO_UNREAD").unwrap_or_default();
    let unread: Vec<&str> = unread_list.split(',').filter(|s| !s.is_empty()).collect();
    let (mut attacks, mut caught, mut benign, mut flagged) = (0, 0, 0, 0);
    let (mut apart, mut apart_flagged) = (0, 0);
    let mut benign_p = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if target(r) {
            attacks += 1;
            caught += usize::from(total(i) >= MEDIUM);
        } else if !r.is_attack() && unread.contains(&r.source.as_str()) {
            apart += 1;
            apart_flagged += usize::from(total(i) >= MEDIUM);
        } else if !r.is_attack() {
            benign += 1;
            flagged += usize::from(total(i) >= MEDIUM);
            benign_p.push(p[i]);
        }
    }
    benign_p.sort_by(f32::total_cmp);
    let cut = benign_p
        .get(benign_p.len() * 99 / 100)
        .copied()
        .unwrap_or(1.0);
    let alone = (0..rows.len())
        .filter(|&i| target(&rows[i]) && p[i] > cut)
        .count();
    let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
    eprintln!(
        "floor {floor}, top weight {max}: PI+JB+EX {caught}/{attacks} caught ({:.1}%), benign \
         {flagged}/{benign} flagged ({:.2}%); learned stage alone at 1% of benign (p > {cut:.3}): \
         {:.1}% caught",
        pct(caught, attacks),
        pct(flagged, benign),
        pct(alone, attacks)
    );
    if !unread.is_empty() {
        eprintln!(
            "kept apart ({unread_list}): benign {apart_flagged}/{apart} flagged ({:.2}%)",
            pct(apart_flagged, apart)
        );
    }
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
