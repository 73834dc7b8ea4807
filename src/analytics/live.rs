//! Live figures: in-memory sliding windows over the records as they finish, for the admin API
//! and alert rules (no store round trip).
//!
//! Two rings of slots: one per second for the last 5 minutes, one per minute for the last
//! 24 hours; a window of ≤ 5 minutes reads the seconds ring, anything longer the minutes ring
//! (so a 7-minute window is accurate to the minute). The same rings exist per model (capped at
//! `MAX_MODELS`, the rest under `other`, minutes kept for 1 hour) and a lighter 5-minute ring per
//! user for the last hour (capped at `MAX_USERS`; further users are not tracked individually).
//! A record is placed at its finish time (start + latency). Memory is fixed: about 0.7 MB
//! global, 0.15 MB per model, 0.5 KB per user. One mutex, taken briefly by the feeding task and
//! by readers; never held across an await.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::detect::Category;
use crate::event::{Exchange, Outcome};
use crate::store::hist::Histogram;
use crate::store::{is_blocked, model_key, threat_level};

use super::{ratio, unix_ms};

/// Models tracked individually; later ones count as `other`.
pub const MAX_MODELS: usize = 32;
/// Users tracked individually.
pub const MAX_USERS: usize = 10_000;
const SECONDS: usize = 300;
const MINUTES: usize = 1440;
const MODEL_MINUTES: usize = 60;
const USER_SLOT_S: i64 = 300;
const USER_SLOTS: usize = 12;
const CATEGORIES: [Category; 8] = [
    Category::PromptInjection,
    Category::Jailbreak,
    Category::DataExtraction,
    Category::CodeInjection,
    Category::SuspiciousKeywords,
    Category::Obfuscation,
    Category::SecretsInPrompt,
    Category::PiiInPrompt,
];
const OUTCOMES: [Outcome; 8] = [
    Outcome::Ok,
    Outcome::UpstreamError,
    Outcome::StreamError,
    Outcome::Failed,
    Outcome::Rejected,
    Outcome::Blocked,
    Outcome::Cancelled,
    Outcome::Unknown,
];
const LEVELS: [&str; 4] = ["low", "medium", "high", "critical"];

/// Figures over one window. Latencies in seconds, cost in USD.
#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct WindowStats {
    pub window_seconds: u64,
    pub requests: u64,
    pub requests_per_second: f64,
    pub errors: u64,
    pub error_rate: f64,
    pub avg_latency: f64,
    pub p50_latency: f64,
    pub p95_latency: f64,
    pub p99_latency: f64,
    pub tokens: u64,
    pub cost: f64,
    /// Requests whose cost is unknown (unpriced model, no upstream cost), left out of `cost`.
    pub unpriced_requests: u64,
    pub blocked: u64,
    pub threats_by_level: BTreeMap<&'static str, u64>,
    pub threats_by_category: BTreeMap<&'static str, u64>,
    pub by_outcome: BTreeMap<&'static str, u64>,
}

/// One user's last-hour figures.
#[derive(Clone, Debug, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct UserWindow {
    pub user: String,
    pub requests: u64,
    pub errors: u64,
    pub threats: u64,
    pub blocked: u64,
}

#[derive(Clone, Debug, Default)]
struct Slot {
    epoch: i64,
    requests: u64,
    errors: u64,
    blocked: u64,
    tokens: u64,
    cost: f64,
    unpriced: u64,
    latency_sum_us: u64,
    hist: Histogram,
    levels: [u64; 4],
    categories: [u64; 8],
    outcomes: [u64; 8],
}

impl Slot {
    fn add(&mut self, ex: &Exchange, lat_us: u64) {
        self.requests += 1;
        self.errors += u64::from(ex.counts_as_error());
        self.blocked += u64::from(is_blocked(ex));
        self.tokens += ex.usage.total().unwrap_or(0);
        self.cost += ex.cost.unwrap_or(0.0);
        self.unpriced += u64::from(ex.cost_unknown());
        self.latency_sum_us += lat_us;
        self.hist.record(lat_us);
        if let Some(i) = threat_level(ex).and_then(|l| LEVELS.iter().position(|n| *n == l.as_str()))
        {
            self.levels[i] += 1;
        }
        for c in ex.verdict.iter().flat_map(|v| v.categories.iter()) {
            if let Some(i) = CATEGORIES.iter().position(|k| k.as_str() == c.as_str()) {
                self.categories[i] += 1;
            }
        }
        if let Some(i) = OUTCOMES
            .iter()
            .position(|o| o.as_str() == ex.outcome.as_str())
        {
            self.outcomes[i] += 1;
        }
    }

    fn merge(&mut self, o: &Slot) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.blocked += o.blocked;
        self.tokens += o.tokens;
        self.cost += o.cost;
        self.unpriced += o.unpriced;
        self.latency_sum_us += o.latency_sum_us;
        self.hist.merge(&o.hist);
        let pairs = [
            (&mut self.levels[..], &o.levels[..]),
            (&mut self.categories[..], &o.categories[..]),
            (&mut self.outcomes[..], &o.outcomes[..]),
        ];
        for (a, b) in pairs {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
    }
}

/// A ring of `len` slots each `width_s` seconds wide.
#[derive(Clone, Debug)]
struct Ring {
    width_s: i64,
    slots: Vec<Slot>,
}

impl Ring {
    fn new(width_s: i64, len: usize) -> Ring {
        Ring {
            width_s,
            slots: vec![
                Slot {
                    epoch: -1,
                    ..Slot::default()
                };
                len
            ],
        }
    }

    fn span_s(&self) -> i64 {
        self.width_s * self.slots.len() as i64
    }

    fn add(&mut self, t_s: i64, ex: &Exchange, lat_us: u64) {
        let epoch = t_s.div_euclid(self.width_s);
        let len = self.slots.len() as i64;
        let slot = &mut self.slots[epoch.rem_euclid(len) as usize];
        if slot.epoch < epoch {
            *slot = Slot {
                epoch,
                ..Slot::default()
            };
        }
        if slot.epoch == epoch {
            slot.add(ex, lat_us);
        }
    }

    /// Sum of the slots in the last `window_s` seconds up to `now_s`.
    fn sum(&self, now_s: i64, window_s: i64) -> Slot {
        let newest = now_s.div_euclid(self.width_s);
        let count = (window_s + self.width_s - 1) / self.width_s;
        let oldest = newest - count.min(self.slots.len() as i64) + 1;
        let mut out = Slot::default();
        for s in self
            .slots
            .iter()
            .filter(|s| s.epoch >= oldest && s.epoch <= newest)
        {
            out.merge(s);
        }
        out
    }
}

#[derive(Clone, Debug)]
struct Rings {
    seconds: Ring,
    minutes: Ring,
}

impl Rings {
    fn new(minutes: usize) -> Rings {
        Rings {
            seconds: Ring::new(1, SECONDS),
            minutes: Ring::new(60, minutes),
        }
    }

    fn add(&mut self, t_s: i64, ex: &Exchange, lat_us: u64) {
        self.seconds.add(t_s, ex, lat_us);
        self.minutes.add(t_s, ex, lat_us);
    }

    fn stats(&self, now_s: i64, window: Duration) -> WindowStats {
        let w = (window.as_secs() as i64).clamp(1, self.minutes.span_s());
        let ring = if w <= self.seconds.span_s() {
            &self.seconds
        } else {
            &self.minutes
        };
        stats(&ring.sum(now_s, w), w as u64)
    }
}

fn stats(s: &Slot, window_s: u64) -> WindowStats {
    let named = |names: &[&'static str], counts: &[u64]| {
        names
            .iter()
            .copied()
            .zip(counts.iter().copied())
            .filter(|(_, n)| *n > 0)
            .collect()
    };
    let cats: Vec<&'static str> = CATEGORIES.iter().map(|c| c.as_str()).collect();
    let outs: Vec<&'static str> = OUTCOMES.iter().map(|o| o.as_str()).collect();
    WindowStats {
        window_seconds: window_s,
        requests: s.requests,
        requests_per_second: s.requests as f64 / window_s.max(1) as f64,
        errors: s.errors,
        error_rate: ratio(s.errors, s.requests),
        avg_latency: ratio(s.latency_sum_us, s.requests) / 1e6,
        p50_latency: s.hist.quantile(0.50),
        p95_latency: s.hist.quantile(0.95),
        p99_latency: s.hist.quantile(0.99),
        tokens: s.tokens,
        cost: s.cost,
        unpriced_requests: s.unpriced,
        blocked: s.blocked,
        threats_by_level: named(&LEVELS, &s.levels),
        threats_by_category: named(&cats, &s.categories),
        by_outcome: named(&outs, &s.outcomes),
    }
}

#[derive(Clone, Debug)]
struct UserRing {
    slots: [(i64, [u64; 4]); USER_SLOTS],
}

struct Inner {
    all: Rings,
    models: HashMap<String, Rings>,
    users: HashMap<String, UserRing>,
}

/// In-memory sliding windows over finished requests.
pub struct Live {
    inner: Mutex<Inner>,
}

impl Default for Live {
    fn default() -> Self {
        Live::new()
    }
}

impl Live {
    pub fn new() -> Live {
        Live {
            inner: Mutex::new(Inner {
                all: Rings::new(MINUTES),
                models: HashMap::new(),
                users: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one finished request.
    pub fn record(&self, ex: &Exchange) {
        let lat_us = u64::try_from(ex.latency.as_micros()).unwrap_or(u64::MAX);
        let t_s = (ex.started_unix_ms() + (lat_us / 1000) as i64).div_euclid(1000);
        let mut inner = self.lock();
        inner.all.add(t_s, ex, lat_us);
        let model = model_key(ex);
        let key = if inner.models.contains_key(model) || inner.models.len() < MAX_MODELS {
            model
        } else {
            "other"
        };
        inner
            .models
            .entry(key.to_owned())
            .or_insert_with(|| Rings::new(MODEL_MINUTES))
            .add(t_s, ex, lat_us);
        if let Some(user) = ex.user.as_deref() {
            record_user(&mut inner.users, user, t_s, ex);
        }
    }

    /// Figures over the last `window` (clamped to 1 s … 24 h).
    pub fn window(&self, window: Duration) -> WindowStats {
        self.window_at(SystemTime::now(), window)
    }

    /// Figures over the `window` ending at `now`.
    pub fn window_at(&self, now: SystemTime, window: Duration) -> WindowStats {
        self.lock().all.stats(unix_ms(now).div_euclid(1000), window)
    }

    /// Figures per model over the last `window` (at most 1 hour per model).
    pub fn models_at(&self, now: SystemTime, window: Duration) -> Vec<(String, WindowStats)> {
        let now_s = unix_ms(now).div_euclid(1000);
        let inner = self.lock();
        let mut out: Vec<_> = inner
            .models
            .iter()
            .map(|(m, r)| (m.clone(), r.stats(now_s, window)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The `n` users with the most requests in the last hour up to `now`.
    pub fn top_users_at(&self, now: SystemTime, n: usize) -> Vec<UserWindow> {
        let epoch = unix_ms(now).div_euclid(1000).div_euclid(USER_SLOT_S);
        let inner = self.lock();
        let mut out: Vec<UserWindow> = inner
            .users
            .iter()
            .map(|(user, ring)| {
                let mut w = UserWindow {
                    user: user.clone(),
                    ..UserWindow::default()
                };
                let recent = |e: i64| e > epoch - USER_SLOTS as i64 && e <= epoch;
                for (_, c) in ring.slots.iter().filter(|(e, _)| recent(*e)) {
                    w.requests += c[0];
                    w.errors += c[1];
                    w.threats += c[2];
                    w.blocked += c[3];
                }
                w
            })
            .filter(|w| w.requests > 0)
            .collect();
        out.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.user.cmp(&b.user)));
        out.truncate(n);
        out
    }
}

fn record_user(users: &mut HashMap<String, UserRing>, user: &str, t_s: i64, ex: &Exchange) {
    if !users.contains_key(user) && users.len() >= MAX_USERS {
        return;
    }
    let ring = users.entry(user.to_owned()).or_insert_with(|| UserRing {
        slots: [(-1, [0; 4]); USER_SLOTS],
    });
    let epoch = t_s.div_euclid(USER_SLOT_S);
    let slot = &mut ring.slots[epoch.rem_euclid(USER_SLOTS as i64) as usize];
    if slot.0 < epoch {
        *slot = (epoch, [0; 4]);
    }
    if slot.0 == epoch {
        slot.1[0] += 1;
        slot.1[1] += u64::from(ex.counts_as_error());
        slot.1[2] += u64::from(threat_level(ex).is_some());
        slot.1[3] += u64::from(is_blocked(ex));
    }
}

/// Feeds `live` from its channel until the channel closes.
pub async fn run_live(live: Arc<Live>, mut rx: mpsc::Receiver<Arc<Exchange>>) {
    let mut buf = Vec::with_capacity(256);
    while rx.recv_many(&mut buf, 256).await > 0 {
        for ex in buf.drain(..) {
            live.record(&ex);
        }
    }
}
