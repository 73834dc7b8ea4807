//! Threshold replay: what the stored risk scores of a period would have become under other
//! thresholds, and a proposal for new thresholds read off the score distribution.
//!
//! Pure functions over `store::Scored`. Trade-offs: the replay applies the global
//! `detect.actions` (per-endpoint and per-team overrides and shadow mode are not replayed), and
//! scores are the stored totals, so a rule or model change since then is not reflected.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::config::{ActionName, ActionsConfig, RuleThresholds, ThresholdsConfig};
use crate::store::Scored;

/// Lowest and highest threshold the API accepts.
pub const MIN_THRESHOLD: f32 = 0.5;
pub const MAX_THRESHOLD: f32 = 1000.0;
/// Near misses (just under critical, from users blocked at critical) that justify lowering it.
const MIN_NEAR_MISSES: usize = 3;
/// How far under critical a score counts as a near miss.
const NEAR_MISS_BAND: f64 = 0.8;
/// Scanned requests needed before a blocked share says anything.
const MIN_SCANNED: u64 = 20;
/// Users listed by name in an effect.
const MAX_USERS_LISTED: usize = 20;

const LEVELS: [&str; 5] = ["none", "low", "medium", "high", "critical"];

/// Level index (0 = none … 4 = critical) of a score, as `detect::Settings::level_for` does.
pub fn level(t: &ThresholdsConfig, score: f64) -> usize {
    [t.low, t.medium, t.high, t.critical]
        .iter()
        .take_while(|&&th| score >= f64::from(th))
        .count()
}

fn action(a: &ActionsConfig, level: usize) -> ActionName {
    [a.none, a.low, a.medium, a.high, a.critical][level.min(4)]
}

fn blocks(a: &ActionsConfig, level: usize) -> bool {
    action(a, level) == ActionName::Block
}

/// What other thresholds would have done to the stored period.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Effect {
    /// Requests with a score above zero that were replayed.
    pub replayed: u64,
    /// Requests per level (none … critical) under the old and the new thresholds.
    pub levels_old: [u64; 5],
    pub levels_new: [u64; 5],
    pub newly_blocked: u64,
    pub newly_unblocked: u64,
    /// Identified users among the newly blocked requests (at most 20 named).
    pub newly_blocked_users: Vec<String>,
    pub newly_blocked_user_count: u64,
    /// Newly blocked requests without a user id.
    pub newly_blocked_anonymous: u64,
    /// Newly blocked users with no flagged or blocked request under the old thresholds.
    pub never_flagged_users: u64,
    /// One sentence, e.g. "critical at 18 instead of 20: 12 more requests blocked, all from 2
    /// users, none from users never flagged before".
    pub summary: String,
}

/// Replays `scored` under `new` and compares with `old`.
pub fn replay(
    scored: &[Scored],
    old: &ThresholdsConfig,
    new: &ThresholdsConfig,
    actions: &ActionsConfig,
) -> Effect {
    let mut e = Effect {
        replayed: scored.len() as u64,
        ..Effect::default()
    };
    let mut flagged_before: BTreeSet<&str> = BTreeSet::new();
    let mut blocked_users: BTreeSet<&str> = BTreeSet::new();
    for s in scored {
        let (lo, ln) = (level(old, s.score), level(new, s.score));
        e.levels_old[lo] += 1;
        e.levels_new[ln] += 1;
        if action(actions, lo) != ActionName::Allow {
            flagged_before.extend(s.user.as_deref());
        }
        match (blocks(actions, lo), blocks(actions, ln)) {
            (false, true) => {
                e.newly_blocked += 1;
                match s.user.as_deref() {
                    Some(u) => {
                        blocked_users.insert(u);
                    }
                    None => e.newly_blocked_anonymous += 1,
                }
            }
            (true, false) => e.newly_unblocked += 1,
            _ => {}
        }
    }
    e.newly_blocked_user_count = blocked_users.len() as u64;
    e.never_flagged_users = blocked_users.difference(&flagged_before).count() as u64;
    e.newly_blocked_users = blocked_users
        .iter()
        .take(MAX_USERS_LISTED)
        .map(|u| (*u).to_owned())
        .collect();
    e.summary = summary(old, new, &e);
    e
}

fn changes(old: &ThresholdsConfig, new: &ThresholdsConfig) -> Vec<String> {
    let pairs = [
        ("low", old.low, new.low),
        ("medium", old.medium, new.medium),
        ("high", old.high, new.high),
        ("critical", old.critical, new.critical),
    ];
    pairs
        .iter()
        .filter(|(_, o, n)| o != n)
        .map(|(name, o, n)| format!("{name} at {n} instead of {o}"))
        .collect()
}

fn summary(old: &ThresholdsConfig, new: &ThresholdsConfig, e: &Effect) -> String {
    let what = changes(old, new);
    let head = if what.is_empty() {
        "no change".to_owned()
    } else {
        what.join(", ")
    };
    let mut parts = vec![head];
    if e.newly_blocked > 0 {
        let from = if e.newly_blocked_anonymous == 0 {
            format!("all from {} users", e.newly_blocked_user_count)
        } else {
            format!(
                "from {} users and {} anonymous requests",
                e.newly_blocked_user_count, e.newly_blocked_anonymous
            )
        };
        let never = match e.never_flagged_users {
            0 => "none from users never flagged before".to_owned(),
            n => format!("{n} of them never flagged before"),
        };
        parts.push(format!(
            "{} more requests blocked, {from}, {never}",
            e.newly_blocked
        ));
    }
    if e.newly_unblocked > 0 {
        parts.push(format!("{} fewer requests blocked", e.newly_unblocked));
    }
    if e.newly_blocked == 0 && e.newly_unblocked == 0 && !what.is_empty() {
        parts.push("no request would have been blocked differently".into());
    }
    parts.join(": ")
}

/// A threshold change worth making, with its replayed effect.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Proposal {
    pub current: ThresholdsConfig,
    pub proposed: ThresholdsConfig,
    /// Why, with the figures it rests on.
    pub reason: String,
    pub effect: Effect,
    /// The change as a config diff against `gateway.yaml`.
    pub config_diff: String,
}

/// Problems with a threshold set: not rising, or out of `[MIN_THRESHOLD, MAX_THRESHOLD]`.
///
/// # Errors
/// What is wrong, in one sentence.
pub fn check(t: &ThresholdsConfig) -> Result<(), String> {
    let v = [t.low, t.medium, t.high, t.critical];
    if !v
        .iter()
        .all(|x| x.is_finite() && (MIN_THRESHOLD..=MAX_THRESHOLD).contains(x))
    {
        return Err(format!(
            "thresholds must lie within {MIN_THRESHOLD}..={MAX_THRESHOLD}"
        ));
    }
    if v.windows(2).any(|w| w[0] >= w[1]) {
        return Err("thresholds must rise: low < medium < high < critical".into());
    }
    Ok(())
}

/// What the threshold review of a period found: a change the replay supports, or none, and
/// one sentence that says which and why (shown in every report).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Review {
    pub proposal: Option<Proposal>,
    /// E.g. "no change proposed: …, but the replay shows no request would change".
    pub note: String,
}

/// Reads a proposal off the stored scores (`scanned`: requests with any score, zero included):
/// lower critical when users already blocked at critical keep sending requests just under it;
/// raise it when more than `rules.blocked_share` of scanned requests are blocked. See [`review`].
pub fn propose(
    scored: &[Scored],
    scanned: u64,
    current: &ThresholdsConfig,
    actions: &ActionsConfig,
    rules: &RuleThresholds,
) -> Option<Proposal> {
    review(scored, scanned, current, actions, rules).proposal
}

/// Reviews the thresholds against the stored scores. A change is proposed only when its replay
/// on the same scores shows the effect it is for: lowering critical must block some of the near
/// misses, raising it must unblock more requests than it blocks (the blocked share drops).
/// Otherwise the note says that no change is proposed and what the replay showed.
pub fn review(
    scored: &[Scored],
    scanned: u64,
    current: &ThresholdsConfig,
    actions: &ActionsConfig,
    rules: &RuleThresholds,
) -> Review {
    let target = rules.blocked_share;
    let Some((critical, reason)) = near_misses(scored, current)
        .or_else(|| too_tight(scored, scanned, current, actions, target))
    else {
        let note = format!(
            "no change proposed: {} and no user blocked at critical sent near misses",
            share_text(
                blocked_share(scored, scanned, current, actions),
                scanned,
                target
            )
        );
        return Review {
            proposal: None,
            note,
        };
    };
    let proposed = ThresholdsConfig {
        critical,
        ..*current
    };
    if check(&proposed).is_err() || proposed == *current {
        let note = format!("no change proposed: {reason}, but no valid critical threshold fits");
        return Review {
            proposal: None,
            note,
        };
    }
    let effect = replay(scored, current, &proposed, actions);
    let shown = if critical < current.critical {
        effect.newly_blocked > 0
    } else {
        effect.newly_unblocked > effect.newly_blocked
    };
    if !shown {
        let note = format!(
            "no change proposed: {reason}, but the replay shows no request would change \
             ({})",
            effect.summary
        );
        return Review {
            proposal: None,
            note,
        };
    }
    let after = blocked_share(scored, scanned, &proposed, actions);
    let reason = format!(
        "{reason}; replayed on the same {} scored requests: {}, {:.1}% of scanned requests \
         blocked",
        effect.replayed,
        effect.summary,
        after * 100.0
    );
    Review {
        note: format!("change proposed: {reason}"),
        proposal: Some(Proposal {
            current: *current,
            proposed,
            reason,
            effect,
            config_diff: diff(current, &proposed),
        }),
    }
}

/// Share of `scanned` requests the actions block at `t` (by stored score).
fn blocked_share(scored: &[Scored], scanned: u64, t: &ThresholdsConfig, a: &ActionsConfig) -> f64 {
    let n = scored
        .iter()
        .filter(|s| blocks(a, level(t, s.score)))
        .count();
    if scanned == 0 {
        0.0
    } else {
        n as f64 / scanned as f64
    }
}

fn share_text(share: f64, scanned: u64, target: f64) -> String {
    if scanned < MIN_SCANNED {
        return format!("{scanned} scanned requests are too few to judge the blocked share");
    }
    format!(
        "{:.1}% of {scanned} scanned requests were blocked, within the {:.1}% target",
        share * 100.0,
        target * 100.0
    )
}

fn near_misses(scored: &[Scored], t: &ThresholdsConfig) -> Option<(f32, String)> {
    let crit = f64::from(t.critical);
    let blocked: BTreeSet<&str> = scored
        .iter()
        .filter(|s| s.score >= crit)
        .filter_map(|s| s.user.as_deref())
        .collect();
    let near: Vec<f64> = scored
        .iter()
        .filter(|s| s.score < crit && s.score >= crit * NEAR_MISS_BAND)
        .filter(|s| s.user.as_deref().is_some_and(|u| blocked.contains(u)))
        .map(|s| s.score)
        .collect();
    if near.len() < MIN_NEAR_MISSES {
        return None;
    }
    let lowest = near.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = near.iter().copied().fold(0.0, f64::max);
    let critical = (lowest.floor() as f32).max(t.high + 1.0);
    let reason = format!(
        "{} requests scored {lowest:.1}–{highest:.1}, just under critical ({crit}), from users \
         who were blocked at critical in the same period",
        near.len()
    );
    Some((critical, reason))
}

/// The blocked share (as the actions block by stored score) is above `target`: the smallest
/// whole-point raise of critical (up to +50 %) that brings it to the target, else the cap.
fn too_tight(
    scored: &[Scored],
    scanned: u64,
    t: &ThresholdsConfig,
    actions: &ActionsConfig,
    target: f64,
) -> Option<(f32, String)> {
    let share = |critical: f32| {
        let at = ThresholdsConfig { critical, ..*t };
        blocked_share(scored, scanned, &at, actions)
    };
    let now = share(t.critical);
    if scanned < MIN_SCANNED || now <= target {
        return None;
    }
    let crit = f64::from(t.critical);
    let cap = (crit * 1.5).ceil() as u32;
    let critical = (crit.floor() as u32 + 1..=cap)
        .find(|&c| share(c as f32) <= target)
        .unwrap_or(cap);
    let reason = format!(
        "{:.1}% of {scanned} scanned requests were blocked (critical at {crit}), above the \
         {:.1}% target",
        now * 100.0,
        target * 100.0
    );
    Some((critical as f32, reason))
}

/// Moves each threshold of `to` at most `max_step` (relative) away from `from`.
pub fn clamp_step(
    from: &ThresholdsConfig,
    to: &ThresholdsConfig,
    max_step: f32,
) -> ThresholdsConfig {
    let c = |a: f32, b: f32| b.clamp(a * (1.0 - max_step), a * (1.0 + max_step));
    ThresholdsConfig {
        low: c(from.low, to.low),
        medium: c(from.medium, to.medium),
        high: c(from.high, to.high),
        critical: c(from.critical, to.critical),
    }
}

/// A unified-style diff of `detect.thresholds` in `gateway.yaml`.
pub fn diff(old: &ThresholdsConfig, new: &ThresholdsConfig) -> String {
    let mut out = String::from(" detect:\n   thresholds:\n");
    for (name, o, n) in [
        ("low", old.low, new.low),
        ("medium", old.medium, new.medium),
        ("high", old.high, new.high),
        ("critical", old.critical, new.critical),
    ] {
        if o == n {
            out.push_str(&format!("     {name}: {o}\n"));
        } else {
            out.push_str(&format!("-    {name}: {o}\n+    {name}: {n}\n"));
        }
    }
    out
}

/// Level names, lowest first (for rendering `levels_old`/`levels_new`).
pub fn level_names() -> [&'static str; 5] {
    LEVELS
}

#[cfg(test)]
mod tests;
