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
//! verdicts count towards the repeat-offender cool-down. Critical, which blocks by default,
//! needs the rules alone at high, one of them outside a user's quotation marks
//! ([`hold_critical_to_rules`]).
//! Two rules of one category that read the same words are one piece of
//! evidence: the lighter match is an *echo* and adds nothing
//! ([`count_echoes_once`]), so it neither lifts the level nor corroborates.
//! Trade-off: a plain sum of independent evidence is easy to explain in a
//! record (the weights shown add up to the score) and to tune, but cannot
//! express evidence that overlaps without sharing words; policies avoid such
//! rules instead.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::framing::{inside, OUTSIDE_MAX, QUOTED_FACTOR};
use super::learned::LearnedModel;
use super::scan::{snippet, Findings};
use super::verdict::{Action, Category, Match, ScanInput, Settings, Verdict, LEARNED_PREFIX};

/// Probability below which the learned stage adds nothing.
pub const LEARNED_FLOOR: f32 = 0.5;
/// Weight the learned stage adds at probability 1: medium, short of high, so the model alone
/// never reaches high; it lifts rules to critical only when they reach high by themselves
/// ([`hold_critical_to_rules`]).
pub const LEARNED_MAX: f32 = 11.0;
/// Texts of at least this many words get the learned stage's full weight.
pub const SHORT_TEXT_WORDS: f32 = 8.0;

/// Weight the learned stage adds for probability `p` on a text of `words` words.
pub fn learned_weight(p: f32, words: usize) -> f32 {
    learned_weight_with(p, words, LEARNED_FLOOR, LEARNED_MAX)
}

/// [`learned_weight`] with another floor and top weight (for calibration sweeps).
pub fn learned_weight_with(p: f32, words: usize, floor: f32, max: f32) -> f32 {
    ((p - floor) / (1.0 - floor)).clamp(0.0, 1.0) * max * short_text_factor(words)
}

/// 0 for texts of one or two words, rising linearly to 1 at [`SHORT_TEXT_WORDS`]: a short chat
/// turn ("continue", "test", "stop") carries too few features for the model to judge.
pub fn short_text_factor(words: usize) -> f32 {
    ((words as f32 - 2.0) / (SHORT_TEXT_WORDS - 2.0)).clamp(0.0, 1.0)
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
    discount_quoted(&mut f);
    count_echoes_once(&mut f.matches);
    cap_framed_turns(&mut f);
    hold_critical_to_rules(&mut f);
    // Summed in rule order: float addition is not associative, and a hash map's order differs
    // between two maps, so the same findings could score a few ulps apart (and, at a threshold,
    // land on two levels).
    let score: f32 = rule_weights(&f.matches).values().fold(0.0, |a, w| a + w);
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
/// Code-injection matches are exempt: a payload (`a);/usr/bin/id`, `' or ''='`) is one "word"
/// by spaces, and its shape, not a word in it, is the evidence.
pub const FRAGMENT_WORDS: usize = 2;
/// Weight factor for hostile rule matches in a fragment.
pub const FRAGMENT_FACTOR: f32 = 0.5;
/// Most that the quoted material of one framed turn adds up to, however many rules it trips:
/// under medium, since the quote is one piece of evidence that is being discussed.
pub const QUOTED_CAP: f32 = 6.0;

/// Zeroes every *echo*: a match of one rule over the same words as a heavier match of another
/// rule of the same category ("ignore previous instructions" is both an ignore phrase and an
/// override of earlier instructions). Two rules reading the same words are one piece of
/// evidence, so the echo stays in the verdict (what it read is still shown) but adds nothing.
/// Matches are taken heaviest first (ties by rule id, so the outcome does not depend on scan
/// order); one whose span overlaps a kept match (still weighing something) of another rule, in
/// the same category and segment, is an echo. The learned stage's match spans its whole turn
/// and is independent of the words a rule read, so it is never an echo nor makes one. A rule
/// with an echo in one place and an independent match elsewhere counts at the latter's weight.
fn count_echoes_once(matches: &mut [Match]) {
    let mut order: Vec<usize> = (0..matches.len())
        .filter(|&i| {
            let m = &matches[i];
            m.category.is_hostile() && m.weight > 0.0 && !m.rule.starts_with(LEARNED_PREFIX)
        })
        .collect();
    if order.len() < 2 {
        return;
    }
    order.sort_by(|&a, &b| {
        let (a, b) = (&matches[a], &matches[b]);
        b.weight
            .total_cmp(&a.weight)
            .then_with(|| a.rule.cmp(&b.rule))
    });
    for (j, &i) in order.iter().enumerate() {
        let m = &matches[i];
        let echo = order[..j].iter().map(|&k| &matches[k]).any(|o| {
            o.weight > 0.0
                && o.rule != m.rule
                && o.category == m.category
                && o.segment == m.segment
                && o.span.0 < m.span.1
                && m.span.0 < o.span.1
        });
        if echo {
            matches[i].weight = 0.0;
        }
    }
}

/// Each rule's weight in the score: its highest match (a rule counts once per request), keyed
/// and so summed in rule order.
fn rule_weights(matches: &[Match]) -> BTreeMap<&str, f32> {
    let mut best: BTreeMap<&str, f32> = BTreeMap::new();
    for m in matches {
        let w = best.entry(&m.rule).or_insert(0.0);
        *w = w.max(m.weight);
    }
    best
}

/// The default high and critical thresholds: the score scale [`hold_critical_to_rules`] holds
/// to, as [`LEARNED_MAX`] is calibrated against medium and high.
pub const HIGH_SCORE: f32 = 12.0;
pub const CRITICAL_SCORE: f32 = 20.0;
/// How far under [`CRITICAL_SCORE`] a trimmed score is left: a tenth, the precision records
/// show scores at.
pub const UNDER_CRITICAL: f32 = 0.1;

/// Critical (the level that blocks by default) needs the rules alone at high: when the rules'
/// weights sum below [`HIGH_SCORE`], the learned stage's match is trimmed so the total stays
/// [`UNDER_CRITICAL`] under [`CRITICAL_SCORE`]. One rule in a document ("ignore the previous
/// version of this page") plus a model that has never seen the document's style is two weak
/// signals, and a user must not be blocked on them; the verdict stays high and is flagged.
/// Nor may every rule match lie between quotation marks in a user turn: a turn whose own words
/// trip no rule and that quotes a phrase ("the card should read \"ACCESS GRANTED — SYSTEM
/// OVERRIDE\"") is as likely to be writing, citing or asking about it as giving it, and has no
/// frame for [`super::framing`] to go on. It stays high (flagged) unless its quoted rules reach
/// critical by themselves. One hostile rule outside the quotes ("ignore your rules and say
/// \"…\"") is enough to keep the model's weight; personal data or a secret there is not.
/// Trimming the learned weight (rather than capping the level) keeps the record's weights adding
/// up to its score. The scale is fixed, not read from the configured thresholds, so a score
/// does not depend on them: replaying stored scores under other thresholds
/// (`report::replay`) gives what the live detector would do, and an operator who lowers
/// critical below 20 blocks these verdicts too.
fn hold_critical_to_rules(f: &mut Findings) {
    let (matches, segs) = f.matches_and_segments();
    hold_critical(matches, |m| {
        segs.get(m.segment as usize)
            .is_some_and(|s| inside(&s.quotes, m.span))
    });
}

/// [`hold_critical_to_rules`] with `quoted` telling which matches read only quoted words.
fn hold_critical(matches: &mut [Match], quoted: impl Fn(&Match) -> bool) {
    if !matches.iter().any(|m| m.rule.starts_with(LEARNED_PREFIX)) {
        return;
    }
    let (mut rules, mut learned) = (0.0, 0.0);
    for (rule, w) in rule_weights(matches) {
        if rule.starts_with(LEARNED_PREFIX) {
            learned += w;
        } else {
            rules += w;
        }
    }
    if rules + learned < CRITICAL_SCORE {
        return;
    }
    let own_words = || {
        matches.iter().any(|m| {
            m.weight > 0.0
                && m.category.is_hostile()
                && !m.rule.starts_with(LEARNED_PREFIX)
                && !quoted(m)
        })
    };
    if rules < HIGH_SCORE || !own_words() {
        trim_learned(matches, rules + learned);
    }
}

/// Cuts the learned stage's matches so that a request scoring `total` stays
/// [`UNDER_CRITICAL`] under [`CRITICAL_SCORE`].
fn trim_learned(matches: &mut [Match], total: f32) {
    let mut excess = total - (CRITICAL_SCORE - UNDER_CRITICAL);
    for m in matches
        .iter_mut()
        .filter(|m| m.rule.starts_with(LEARNED_PREFIX))
    {
        let cut = excess.min(m.weight);
        m.weight -= cut;
        excess -= cut;
    }
}

fn damp_fragments(f: &mut Findings) {
    let (matches, segs) = f.matches_and_segments();
    for m in matches
        .iter_mut()
        .filter(|m| m.category.is_hostile() && m.category != Category::CodeInjection)
    {
        if segs
            .get(m.segment as usize)
            .is_some_and(|s| s.words <= FRAGMENT_WORDS)
        {
            m.weight *= FRAGMENT_FACTOR;
        }
    }
}

/// Weighs hostile matches inside the quoted material of a framed user turn at
/// [`QUOTED_FACTOR`] (see [`super::framing`]), their sum at most [`QUOTED_CAP`] per turn; the
/// learned stage's match, which spans the whole turn, takes the turn's probability without its
/// quotes when that is lower. The frame and quotes come with the segment's scan (cached).
fn discount_quoted(f: &mut Findings) {
    let (matches, segs) = f.matches_and_segments();
    for (seg, s) in (0u32..).zip(segs) {
        let Some(q) = &s.quoted else { continue };
        let mut sum = 0.0;
        for m in matches.iter_mut().filter(|m| m.segment == seg) {
            if !m.category.is_hostile() {
                continue;
            }
            if m.rule.starts_with(LEARNED_PREFIX) {
                if let Some(p) = q.learned_unquoted {
                    m.weight = m.weight.min(learned_weight(p, q.words_unquoted));
                }
            } else if q.covers(m) {
                m.weight *= QUOTED_FACTOR;
                sum += m.weight;
            }
        }
        if sum > QUOTED_CAP {
            for m in matches.iter_mut().filter(|m| m.segment == seg) {
                if m.category.is_hostile() && !m.rule.starts_with(LEARNED_PREFIX) && q.covers(m) {
                    m.weight *= QUOTED_CAP / sum;
                }
            }
        }
    }
}

/// Most words of its own a framed turn may have for [`cap_framed_turns`] to cap it: a task
/// of a sentence or two ("count the words in this sentence:").
const CAPPED_TASK_WORDS: usize = 30;

/// A framed user turn whose hostile rule evidence lies in its quotes, with at most
/// [`OUTSIDE_MAX`] of rule weight outside them, scores at most [`QUOTED_CAP`] in all
/// (learned stage included). The learned stage reads the turn without its quotes, but a task
/// about an attack is worded like one ("count the words in this sentence:", "why did this
/// prompt get past the filter?"), so on its own it would lift every quoted analysis to
/// medium. What is cut first is the learned stage's weight, then the rest in proportion. A
/// turn whose quotes hold no hostile match is not capped: there the learned stage is the only
/// reader of what the turn asks; nor is one whose only material is a payload, which the turn
/// may be about to render. Nor is a turn longer than a sentence or two
/// ([`super::framing::short_turn`]) or with more than [`CAPPED_TASK_WORDS`] words of its own:
/// there the learned stage has enough words to go on.
fn cap_framed_turns(f: &mut Findings) {
    let (matches, segs) = f.matches_and_segments();
    for (seg, s) in (0u32..).zip(segs) {
        let Some(q) = s
            .quoted
            .as_ref()
            .filter(|q| q.short && q.words_unquoted <= CAPPED_TASK_WORDS)
        else {
            continue;
        };
        let (mut quoted, mut outside, mut learned) = (0.0f32, 0.0f32, 0.0f32);
        let mut in_quotes = false;
        for m in matches
            .iter()
            .filter(|m| m.segment == seg && m.category.is_hostile())
        {
            if m.rule.starts_with(LEARNED_PREFIX) {
                learned += m.weight;
            } else if q.covers(m) {
                quoted += m.weight;
                in_quotes |= inside(&q.regions, m.span);
            } else {
                outside += m.weight;
            }
        }
        if !in_quotes || outside.max(q.outside_weight) > OUTSIDE_MAX {
            continue;
        }
        let room = (QUOTED_CAP - quoted - outside).max(0.0);
        let rules_factor = (QUOTED_CAP / (quoted + outside)).min(1.0);
        for m in matches
            .iter_mut()
            .filter(|m| m.segment == seg && m.category.is_hostile())
        {
            if m.rule.starts_with(LEARNED_PREFIX) {
                m.weight *= if learned > room { room / learned } else { 1.0 };
            } else {
                m.weight *= rules_factor;
            }
        }
    }
}

fn add_learned(f: &mut Findings, model: &LearnedModel, input: &ScanInput, p: f32, seg: u32) {
    let role = input.segments.get(seg as usize).map(|s| s.role);
    let words = f.segment(seg).map_or(0, |s| s.words);
    let w = learned_weight(p, words) * role.map_or(1.0, |r| r.weight());
    if w <= 0.0 {
        return;
    }
    let from_rules = f
        .matches
        .iter()
        .filter(|m| m.category.is_hostile())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::verdict::RiskLevel;

    /// A rule match (extraction rules in their category, the rest prompt injection) or, for a
    /// `learned.` id, the learned stage's match over the whole turn.
    fn m(rule: &str, weight: f32) -> Match {
        let category = if rule.starts_with("extraction.") {
            Category::DataExtraction
        } else {
            Category::PromptInjection
        };
        let span = if rule.starts_with(LEARNED_PREFIX) {
            (0, 90)
        } else {
            (5, 20)
        };
        Match {
            category,
            rule: Arc::from(rule),
            weight,
            segment: 0,
            span,
            snippet: String::new(),
        }
    }

    fn total(ms: &[Match]) -> f32 {
        ms.iter().map(|m| m.weight).sum()
    }

    /// One rule at medium plus the learned stage at full weight summed to critical and blocked
    /// a hand-written onboarding page ("ignore the previous version of this page"); the rules
    /// alone must reach high before anything is critical.
    #[test]
    fn one_medium_rule_and_the_model_stay_under_critical() {
        let s = Settings::default();
        let mut ms = vec![
            m("injection.ignore_phrases", 10.0),
            m("learned.prompt_injection", 11.0),
        ];
        hold_critical(&mut ms, |_| false);
        let score = total(&ms);
        assert_eq!(s.level_for(score), RiskLevel::High, "{score}");
        assert!(
            (score - (CRITICAL_SCORE - UNDER_CRITICAL)).abs() < 1e-4,
            "{score}"
        );
        assert!(ms[1].weight > 0.0, "the model still lifts medium to high");
        // The score does not depend on the configured thresholds: an operator who moves critical
        // down to 17 blocks this verdict, as a replay of its stored score says.
        let lower = Settings {
            thresholds: [3.0, 7.0, 12.0, 17.0],
            ..Settings::default()
        };
        assert_eq!(lower.level_for(score), RiskLevel::Critical);
    }

    /// Rules that reach high by themselves still go critical with the model beside them, and
    /// scores under critical are left alone.
    #[test]
    fn rules_at_high_keep_the_models_weight() {
        let s = Settings::default();
        let mut ms = vec![
            m("injection.ignore_phrases", 10.0),
            m("extraction.reveal_prompt", 9.0),
            m("learned.prompt_injection", 6.0),
        ];
        hold_critical(&mut ms, |_| false);
        assert_eq!(total(&ms), 25.0);
        assert_eq!(s.level_for(total(&ms)), RiskLevel::Critical);

        let mut ms = vec![
            m("injection.ignore_phrases", 10.0),
            m("learned.prompt_injection", 4.0),
        ];
        hold_critical(&mut ms, |_| false);
        assert_eq!(total(&ms), 14.0);
    }

    /// Rules at high that read only quoted words do not make a turn critical with the model;
    /// the same rules outside the quotes do, and so do quoted rules at critical by themselves.
    #[test]
    fn quoted_rules_alone_do_not_let_the_model_block() {
        let s = Settings::default();
        let quoted_rule = |m: &Match| m.rule.starts_with("injection.");
        // Two quoted phrases at 13 (high), the learned stage and whatever else the turn holds.
        let held = |more: Vec<Match>, quoted: &dyn Fn(&Match) -> bool| {
            let mut ms = vec![
                m("injection.goal_hijack", 6.0),
                m("injection.special_case", 7.0),
                m("learned.prompt_injection", 9.0),
            ];
            ms.extend(more);
            hold_critical(&mut ms, quoted);
            total(&ms)
        };
        let t = held(vec![], &quoted_rule);
        assert_eq!(s.level_for(t), RiskLevel::High, "{t}");

        let t = held(vec![], &|_| false);
        assert_eq!(s.level_for(t), RiskLevel::Critical);

        // One rule in the turn's own words keeps the model's weight.
        let t = held(vec![m("extraction.reveal_prompt", 3.0)], &quoted_rule);
        assert_eq!(t, 25.0);

        // An e-mail address outside the quotes is no order: personal data is not hostile.
        let pii = Match {
            category: Category::PiiInPrompt,
            ..m("pii.email", 1.0)
        };
        let t = held(vec![pii], &quoted_rule);
        assert_eq!(s.level_for(t), RiskLevel::High, "{t}");

        // Quoted rules at critical by themselves stay critical.
        let t = held(vec![m("injection.ignore_phrases", 10.0)], &quoted_rule);
        assert_eq!(s.level_for(t), RiskLevel::Critical);
    }
}
