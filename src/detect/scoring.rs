//! Scoring: findings → score → level → action.
//!
//! Owns how evidence adds up. Each rule counts once per request, at its
//! highest (role-weighted) weight, so repeating a phrase does not inflate the
//! score. The learned probability adds a `learned.<category>` match whose
//! weight grows linearly from 0 at [`LEARNED_FLOOR`] to [`LEARNED_MAX`] at
//! probability 1. Level comes from the thresholds in [`Settings`], the action
//! from the per-level table; shadow mode computes the action but never blocks.
//! Trade-off: a plain sum is easy to explain in a record and to tune, but
//! cannot express "these two rules are the same evidence"; policies avoid
//! overlapping rules instead.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::learned::LearnedModel;
use super::scan::{snippet, Findings};
use super::verdict::{Action, Category, Match, ScanInput, Settings, Verdict};

/// Probability below which the learned stage adds nothing.
pub const LEARNED_FLOOR: f32 = 0.6;
/// Weight the learned stage adds at probability 1 (high, short of critical).
pub const LEARNED_MAX: f32 = 18.0;

/// Weight the learned stage adds for probability `p`.
pub fn learned_weight(p: f32) -> f32 {
    ((p - LEARNED_FLOOR) / (1.0 - LEARNED_FLOOR)).clamp(0.0, 1.0) * LEARNED_MAX
}

/// Turns findings into a verdict (scan time is filled in by the caller).
pub fn score(
    mut f: Findings,
    model: Option<&LearnedModel>,
    input: &ScanInput,
    settings: &Settings,
) -> Verdict {
    let learned_score = f.learned.map(|(p, _)| p);
    if let (Some((p, seg)), Some(model)) = (f.learned, model) {
        add_learned(&mut f, model, input, p, seg);
    }
    // Summed in rule order: float addition is not associative, and a hash map's order differs
    // between two maps, so the same findings could score a few ulps apart (and, at a threshold,
    // land on two levels).
    let mut best: BTreeMap<&str, f32> = BTreeMap::new();
    for m in &f.matches {
        let w = best.entry(&m.rule).or_insert(0.0);
        *w = w.max(m.weight);
    }
    let score: f32 = best.values().fold(0.0, |a, w| a + w);
    let level = settings.level_for(score);
    let action = settings.actions.for_level(level);
    let mut categories: Vec<Category> = f.matches.iter().map(|m| m.category).collect();
    categories.sort_unstable();
    categories.dedup();
    Verdict {
        level,
        score,
        action,
        blocked: action == Action::Block && !settings.shadow,
        shadow: settings.shadow,
        escalated: false,
        categories,
        matches: f.matches,
        scan_us: 0,
        learned_score,
    }
}

fn add_learned(f: &mut Findings, model: &LearnedModel, input: &ScanInput, p: f32, seg: u32) {
    let role = input.segments.get(seg as usize).map(|s| s.role);
    let w = learned_weight(p) * role.map_or(1.0, |r| r.weight());
    if w <= 0.0 {
        return;
    }
    let from_rules = f
        .matches
        .iter()
        .filter(|m| !matches!(m.category, Category::Obfuscation | Category::PiiInPrompt))
        .max_by(|a, b| a.weight.total_cmp(&b.weight))
        .map(|m| m.category);
    let category = from_rules
        .or_else(|| f.norm(seg).and_then(|n| model.category(n)))
        .unwrap_or(Category::PromptInjection);
    let category = match (category, role) {
        (Category::PromptInjection, Some(r)) if r.is_indirect() => Category::IndirectInjection,
        (c, _) => c,
    };
    let text = input
        .segments
        .get(seg as usize)
        .map_or("", |s| s.text.as_str());
    let span = (0, text.len());
    f.matches.push(Match {
        category,
        rule: Arc::from(format!("learned.{}", category.as_str())),
        weight: w,
        segment: seg,
        span,
        snippet: snippet(text, span),
    });
}
