//! Behaviour: per-user rolling window of high-risk requests, with cool-down.
//!
//! Owns the only mutable state in detection. Pure in time: the caller passes
//! `now`, so tests need no clock. State lives in a few shards, each a std
//! `Mutex<HashMap>` held only for a map lookup (no guard escapes a method),
//! and each shard is bounded: when full, the least recently seen user is
//! evicted. Trade-off: eviction scans the shard (O(shard size)) but only
//! when inserting a new user into a full shard; an attacker rotating user
//! ids can evict others' history, which only ever makes us more lenient,
//! never blocks an innocent user.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::verdict::{Action, Category, Match, RiskLevel, Verdict};

/// Rule id of the match added to escalated verdicts.
pub const ESCALATION_RULE: &str = "behaviour.repeat_offender";

/// Limits for per-user escalation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BehaviourConfig {
    /// Rolling window in which high-risk requests are counted.
    pub window: Duration,
    /// High-risk (high or critical) requests within `window` that trigger a block.
    pub high_risk_limit: u32,
    /// How long the user stays blocked once triggered.
    pub cooldown: Duration,
    /// Users tracked at once; the least recently seen are evicted.
    pub max_users: usize,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        BehaviourConfig {
            window: Duration::from_secs(600),
            high_risk_limit: 5,
            cooldown: Duration::from_secs(900),
            max_users: 100_000,
        }
    }
}

/// Why a user's request is escalated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Escalation {
    pub until: Instant,
    pub recent_high_risk: u32,
    pub highest: RiskLevel,
}

#[derive(Debug)]
struct UserState {
    recent: VecDeque<Instant>,
    highest: RiskLevel,
    blocked_until: Option<Instant>,
    last_seen: Instant,
}

const SHARDS: usize = 16;

/// Per-user behaviour tracker.
#[derive(Debug)]
pub struct Behaviour {
    cfg: BehaviourConfig,
    shards: Vec<Mutex<HashMap<String, UserState>>>,
}

impl Behaviour {
    /// A tracker with no history.
    pub fn new(cfg: BehaviourConfig) -> Self {
        Behaviour {
            cfg,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, user: &str) -> &Mutex<HashMap<String, UserState>> {
        let mut h = DefaultHasher::new();
        user.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    fn with<R>(&self, user: &str, f: impl FnOnce(&mut HashMap<String, UserState>) -> R) -> R {
        // A panic while holding the lock cannot leave the map half-updated in a
        // way that matters (worst case a stale count), so recover the guard.
        let mut g = self.shard(user).lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// The user's active escalation, if they are in a cool-down.
    pub fn check(&self, user: &str, now: Instant) -> Option<Escalation> {
        self.with(user, |m| {
            let s = m.get(user)?;
            let until = s.blocked_until.filter(|&u| now < u)?;
            Some(Escalation {
                until,
                recent_high_risk: u32::try_from(s.recent.len()).unwrap_or(u32::MAX),
                highest: s.highest,
            })
        })
    }

    /// Records a verdict for the user; may start a cool-down.
    pub fn observe(&self, user: &str, verdict: &Verdict, now: Instant) {
        let cfg = &self.cfg;
        let per_shard = cfg.max_users.div_ceil(SHARDS).max(1);
        self.with(user, |m| {
            if !m.contains_key(user) && m.len() >= per_shard {
                evict_oldest(m);
            }
            let s = m.entry(user.to_owned()).or_insert_with(|| UserState {
                recent: VecDeque::new(),
                highest: RiskLevel::None,
                blocked_until: None,
                last_seen: now,
            });
            s.last_seen = now;
            while s
                .recent
                .front()
                .is_some_and(|&t| now.saturating_duration_since(t) > cfg.window)
            {
                s.recent.pop_front();
            }
            if verdict.level >= RiskLevel::High && !verdict.escalated {
                s.recent.push_back(now);
                s.highest = s.highest.max(verdict.level);
                if s.recent.len() > cfg.high_risk_limit as usize {
                    s.recent.pop_front();
                }
            }
            if cfg.high_risk_limit > 0 && s.recent.len() >= cfg.high_risk_limit as usize {
                s.blocked_until = Some(now + cfg.cooldown);
                s.recent.clear();
            }
        });
    }

    /// Raises `verdict` to critical/block when the user is in a cool-down.
    pub fn apply(&self, user: &str, verdict: &mut Verdict, now: Instant) {
        let Some(esc) = self.check(user, now) else {
            return;
        };
        verdict.escalated = true;
        verdict.level = RiskLevel::Critical;
        verdict.action = Action::Block;
        verdict.blocked = !verdict.shadow;
        verdict.matches.push(Match {
            category: Category::PromptInjection,
            rule: ESCALATION_RULE.into(),
            weight: 0.0,
            segment: 0,
            span: (0, 0),
            snippet: format!(
                "{} high-risk requests; blocked until cool-down ends",
                esc.recent_high_risk.max(1)
            ),
        });
    }

    /// Users currently tracked.
    pub fn tracked_users(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

fn evict_oldest(m: &mut HashMap<String, UserState>) {
    let oldest = m
        .iter()
        .min_by_key(|(_, s)| s.last_seen)
        .map(|(k, _)| k.clone());
    if let Some(k) = oldest {
        m.remove(&k);
    }
}
