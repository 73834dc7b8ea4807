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
//!
//! Fleet mode: each replica sees only its share of a user's requests. A sync task
//! (`app::fleet`) reads every replica's recent high-risk requests per user from the shared
//! store and hands them to [`Behaviour::merge_fleet`]; a user's count is then the fleet's count
//! at the last sync plus the local ones since (local ones before the sync are already in the
//! store's count), and a user the fleet has pushed over the limit is in cool-down here too,
//! from the newest of those requests. The proxy never waits on the store: the cost is a lag
//! of one sync interval plus the store's flush interval.

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
    /// The high-risk count that started the current cool-down.
    tripped_with: u32,
    last_seen: Instant,
    /// The fleet's high-risk count for this user at the last sync, and when that was.
    fleet: Option<(u32, Instant)>,
}

impl UserState {
    fn new(now: Instant) -> UserState {
        UserState {
            recent: VecDeque::new(),
            highest: RiskLevel::None,
            blocked_until: None,
            tripped_with: 0,
            last_seen: now,
            fleet: None,
        }
    }

    /// High-risk requests in the window: the fleet's (at the last sync) plus local ones since.
    fn count(&self) -> usize {
        match self.fleet {
            Some((n, at)) => n as usize + self.recent.iter().filter(|&&t| t > at).count(),
            None => self.recent.len(),
        }
    }
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
                recent_high_risk: s.tripped_with,
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
            let s = m
                .entry(user.to_owned())
                .or_insert_with(|| UserState::new(now));
            s.last_seen = now;
            while s
                .recent
                .front()
                .is_some_and(|&t| now.saturating_duration_since(t) > cfg.window)
            {
                s.recent.pop_front();
            }
            if verdict.counts_as_offence() {
                s.recent.push_back(now);
                s.highest = s.highest.max(verdict.level);
                if s.recent.len() > cfg.high_risk_limit as usize {
                    s.recent.pop_front();
                }
            }
            if cfg.high_risk_limit > 0 && s.count() >= cfg.high_risk_limit as usize {
                s.blocked_until = Some(now + cfg.cooldown);
                s.tripped_with = u32::try_from(s.count()).unwrap_or(u32::MAX);
                s.recent.clear();
                s.fleet = None;
            }
        });
    }

    /// Replaces the fleet's view: `counts` holds, per user, the high-risk requests every
    /// replica stored in the window and the newest one's age. Users absent from it have none.
    pub fn merge_fleet(&self, counts: &[(String, u32, Duration)], now: Instant) {
        let cfg = &self.cfg;
        let per_shard = cfg.max_users.div_ceil(SHARDS).max(1);
        for shard in &self.shards {
            let mut m = shard.lock().unwrap_or_else(|p| p.into_inner());
            m.values_mut().for_each(|s| s.fleet = None);
        }
        for (user, n, age) in counts {
            let last = now.checked_sub(*age).unwrap_or(now);
            self.with(user, |m| {
                if !m.contains_key(user) && m.len() >= per_shard {
                    evict_oldest(m);
                }
                let s = m.entry(user.clone()).or_insert_with(|| UserState::new(now));
                s.fleet = Some((*n, now));
                s.highest = s.highest.max(RiskLevel::High);
                let cooling = s.blocked_until.is_some_and(|u| now < u);
                if cfg.high_risk_limit > 0 && *n >= cfg.high_risk_limit && !cooling {
                    let until = last + cfg.cooldown;
                    if now < until {
                        s.blocked_until = Some(until);
                        s.tripped_with = *n;
                    }
                }
            });
        }
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
                "{} high-risk requests within {} s; blocked for {} s more (cool-down)",
                esc.recent_high_risk.max(1),
                self.cfg.window.as_secs(),
                esc.until.saturating_duration_since(now).as_secs().max(1)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> Behaviour {
        Behaviour::new(BehaviourConfig {
            window: Duration::from_secs(600),
            high_risk_limit: 5,
            cooldown: Duration::from_secs(900),
            max_users: 1000,
        })
    }

    /// High with corroborated evidence: two hostile rules.
    fn high() -> Verdict {
        let mut v = Verdict::clean();
        v.level = RiskLevel::High;
        for rule in ["injection.ignore_phrases", "learned.prompt_injection"] {
            v.matches.push(Match {
                category: Category::PromptInjection,
                rule: rule.into(),
                weight: 8.0,
                segment: 0,
                span: (0, 6),
                snippet: "ignore".into(),
            });
        }
        v
    }

    #[test]
    fn high_verdicts_on_weak_evidence_never_add_up_to_a_cool_down() {
        let b = tracker();
        let t0 = Instant::now();
        let mut weak = high();
        weak.matches.truncate(1);
        let mut leak = high();
        for m in &mut leak.matches {
            m.category = Category::SecretsInPrompt;
        }
        for i in 0..200 {
            let v = if i % 2 == 0 { &weak } else { &leak };
            b.observe("ann", v, t0 + Duration::from_secs(i));
        }
        assert!(b.check("ann", t0 + Duration::from_secs(200)).is_none());
        for i in 0..5 {
            b.observe("ann", &high(), t0 + Duration::from_secs(201 + i));
        }
        assert!(b.check("ann", t0 + Duration::from_secs(207)).is_some());
    }

    #[test]
    fn the_fleet_count_and_local_requests_since_the_sync_add_up() {
        let b = tracker();
        let t0 = Instant::now();
        b.merge_fleet(&[("eve".into(), 4, Duration::from_secs(30))], t0);
        assert!(b.check("eve", t0).is_none(), "4 of 5: not yet");
        b.observe("eve", &high(), t0 + Duration::from_secs(1));
        let esc = b.check("eve", t0 + Duration::from_secs(2));
        assert!(esc.is_some(), "4 elsewhere + 1 here reaches the limit");
    }

    #[test]
    fn local_requests_already_in_the_fleet_count_are_not_counted_twice() {
        let b = tracker();
        let t0 = Instant::now();
        for i in 0..3 {
            b.observe("eve", &high(), t0 + Duration::from_secs(i));
        }
        // The store now holds those 3 (this replica's own): the sync reports 3, not 6.
        let sync = t0 + Duration::from_secs(10);
        b.merge_fleet(&[("eve".into(), 3, Duration::from_secs(8))], sync);
        b.observe("eve", &high(), sync + Duration::from_secs(1));
        assert!(
            b.check("eve", sync + Duration::from_secs(2)).is_none(),
            "4 in all"
        );
        b.observe("eve", &high(), sync + Duration::from_secs(3));
        assert!(
            b.check("eve", sync + Duration::from_secs(4)).is_some(),
            "5 in all"
        );
    }

    #[test]
    fn a_user_over_the_limit_elsewhere_is_in_cool_down_here_from_their_last_request() {
        let b = tracker();
        let now = Instant::now() + Duration::from_secs(3600);
        b.merge_fleet(&[("mallory".into(), 5, Duration::from_secs(100))], now);
        let esc = b
            .check("mallory", now)
            .expect("escalated from the fleet's count");
        assert_eq!(
            esc.until,
            now - Duration::from_secs(100) + Duration::from_secs(900)
        );
        // A cool-down that ended before the sync starts nothing.
        b.merge_fleet(&[("old".into(), 9, Duration::from_secs(1000))], now);
        assert!(b.check("old", now).is_none());
    }

    #[test]
    fn a_sync_without_the_user_clears_their_fleet_count() {
        let b = tracker();
        let t0 = Instant::now();
        b.merge_fleet(&[("eve".into(), 4, Duration::from_secs(5))], t0);
        b.merge_fleet(&[], t0 + Duration::from_secs(5));
        b.observe("eve", &high(), t0 + Duration::from_secs(6));
        assert!(b.check("eve", t0 + Duration::from_secs(7)).is_none());
    }
}
