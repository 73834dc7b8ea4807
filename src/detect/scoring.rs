//! Scoring: findings → score → level → action.
//!
//! Owns how evidence adds up. Each rule counts once per request, at its
//! highest (role-weighted) weight, so repeating a phrase does not inflate the
//! score. The learned probability adds a `learned.<category>` match whose
//! weight grows linearly from 0 at [`LEARNED_FLOOR`] to [`LEARNED_MAX`] at
//! probability 1, scaled down on very short texts ([`short_text_factor`]).
//! Level comes from the thresholds in [`Settings`], the action from the
//! per-level table; shadow mode computes the action but never blocks.
//!
//! Calibration: one weak signal must not reach high. The learned stage alone
//! tops out in medium (a topic word or a two-word turn such as "continue" is
//! not an attack), and a text of one or two words gets nothing from it. A
//! verdict is *corroborated* when at least two independent pieces of hostile
//! evidence agree (two rules, or a rule and the learned stage) or one rule a
//! policy author weighted at high on its own; only corroborated high-risk
//! verdicts count towards the repeat-offender cool-down.
//! Trade-off: a plain sum is easy to explain in a record and to tune, but
//! cannot express "these two rules are the same evidence"; policies avoid
//! overlapping rules instead.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::framing::{inside, quoted_material, without, QUOTED_FACTOR};
use super::learned::LearnedModel;
use super::normalise::normalise;
use super::scan::{snippet, Findings};
use super::verdict::{Action, Category, Match, Role, ScanInput, Settings, Verdict, LEARNED_PREFIX};

/// Probability below which the learned stage adds nothing.
pub const LEARNED_FLOOR: f32 = 0.6;
/// Weight the learned stage adds at probability 1: medium, short of high, so the model alone
/// never reaches high; with one rule beside it, it can reach critical.
pub const LEARNED_MAX: f32 = 11.0;
/// Texts of at least this many words get the learned stage's full weight.
pub const SHORT_TEXT_WORDS: f32 = 8.0;

/// Weight the learned stage adds for probability `p` on a text of `words` words.
pub fn learned_weight(p: f32, words: usize) -> f32 {
    ((p - LEARNED_FLOOR) / (1.0 - LEARNED_FLOOR)).clamp(0.0, 1.0)
        * LEARNED_MAX
        * short_text_factor(words)
}

/// 0 for texts of one or two words, rising linearly to 1 at [`SHORT_TEXT_WORDS`]: a short chat
/// turn ("continue", "test", "stop") carries too few features for the model to judge.
pub fn short_text_factor(words: usize) -> f32 {
    ((words as f32 - 2.0) / (SHORT_TEXT_WORDS - 2.0)).clamp(0.0, 1.0)
}

/// Words in normalised text: space-separated tokens, and every two CJK, kana or Hangul
/// characters (written without spaces) as one word.
pub fn word_count(norm: &str) -> usize {
    let tokens = norm.split_whitespace().count();
    let dense = norm
        .chars()
        .filter(|c| matches!(c, '\u{3040}'..='\u{30FF}' | '\u{3400}'..='\u{9FFF}' | '\u{AC00}'..='\u{D7AF}' | '\u{0E00}'..='\u{0E7F}'))
        .count();
    tokens + dense / 2
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
    damp_fragments(&mut f);
    discount_quoted(&mut f.matches, input, model);
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

/// Words up to which a text is a fragment: too short to carry an instruction and its target,
/// so its rule matches weigh [`FRAGMENT_FACTOR`] ("forget it", "olvida todo" as a whole turn).
pub const FRAGMENT_WORDS: usize = 2;
/// Weight factor for hostile rule matches in a fragment.
pub const FRAGMENT_FACTOR: f32 = 0.5;
/// Most that the quoted material of one framed turn adds up to, however many rules it trips:
/// under medium, since the quote is one piece of evidence that is being discussed.
pub const QUOTED_CAP: f32 = 6.0;

fn damp_fragments(f: &mut Findings) {
    let fragments: Vec<u32> = (0..)
        .map_while(|i| f.norm(i).map(|n| (i, n)))
        .filter(|(_, n)| word_count(n) <= FRAGMENT_WORDS)
        .map(|(i, _)| i)
        .collect();
    if fragments.is_empty() {
        return;
    }
    for m in &mut f.matches {
        if m.category.is_hostile() && fragments.contains(&m.segment) {
            m.weight *= FRAGMENT_FACTOR;
        }
    }
}

/// Weighs hostile matches inside the quoted material of a framed user turn at
/// [`QUOTED_FACTOR`] (see [`super::framing`]); the learned stage's match, which spans the whole
/// turn, is weighed again on the turn without its quoted material (the lower weight wins).
/// Quoted byte ranges of one turn.
type Regions = Vec<(usize, usize)>;

fn discount_quoted(matches: &mut [Match], input: &ScanInput, model: Option<&LearnedModel>) {
    let mut framed: Vec<(u32, Option<Regions>)> = Vec::new();
    let mut quoted: Vec<usize> = Vec::new();
    for (i, m) in matches.iter_mut().enumerate() {
        if !m.category.is_hostile() {
            continue;
        }
        let Some(seg) = input.segments.get(m.segment as usize) else {
            continue;
        };
        if seg.role != Role::User {
            continue;
        }
        let regions = match framed.iter().find(|(i, _)| *i == m.segment) {
            Some((_, r)) => r,
            None => {
                framed.push((m.segment, quoted_material(&seg.text)));
                &framed[framed.len() - 1].1
            }
        };
        let Some(regions) = regions else { continue };
        if m.rule.starts_with(LEARNED_PREFIX) {
            if let Some(model) = model {
                let rest = normalise(&without(&seg.text, regions)).text;
                let w =
                    learned_weight(model.probability(&rest), word_count(&rest)) * seg.role.weight();
                m.weight = m.weight.min(w);
            }
        } else if inside(regions, m.span) {
            m.weight *= QUOTED_FACTOR;
            quoted.push(i);
        }
    }
    // The quoted matches of a turn are one piece of evidence: their sum stays under QUOTED_CAP.
    for (seg, _) in &framed {
        let sum: f32 = quoted
            .iter()
            .filter(|&&i| matches[i].segment == *seg)
            .map(|&i| matches[i].weight)
            .sum();
        if sum > QUOTED_CAP {
            for &i in &quoted {
                if matches[i].segment == *seg {
                    matches[i].weight *= QUOTED_CAP / sum;
                }
            }
        }
    }
}

fn add_learned(f: &mut Findings, model: &LearnedModel, input: &ScanInput, p: f32, seg: u32) {
    let role = input.segments.get(seg as usize).map(|s| s.role);
    let words = f.norm(seg).map_or(0, word_count);
    let w = learned_weight(p, words) * role.map_or(1.0, |r| r.weight());
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
        rule: Arc::from(format!("{LEARNED_PREFIX}{}", category.as_str())),
        weight: w,
        segment: seg,
        span,
        snippet: snippet(text, span),
    });
}
