//! The store writer's health, shared: whether writes are failing (since when, and the last
//! error), how many records wait in the retry buffer and how many failed or were given up.
//!
//! Owned by the writer task (the only one that sets it); read by the alert engine (rule kind
//! `store_failing`) through [`Store::health`](super::Store::health). A plain mutex: it is
//! taken once per write attempt and once per alert evaluation, never across an `.await`.

use std::sync::Mutex;
use std::time::SystemTime;

/// A snapshot of the writer's health.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriterHealth {
    /// Set while writes fail; cleared by the first write that succeeds.
    pub failing: Option<Failing>,
    /// Records waiting in the retry buffer.
    pub buffered: usize,
    /// Records not written at first (their write failed, or they came while it was failing),
    /// since start; each counted once.
    pub failed: u64,
    /// Records given up (retry buffer full, or still failing at shutdown), since start.
    pub dropped: u64,
}

/// One episode of failing writes.
#[derive(Clone, Debug, PartialEq)]
pub struct Failing {
    /// The first failure of the episode.
    pub since: SystemTime,
    /// The last error, with its causes (e.g. `write batch of 8 records: error returned from
    /// database: (code: 13) database or disk is full`).
    pub error: String,
}

#[derive(Debug, Default)]
pub(super) struct Health(Mutex<WriterHealth>);

impl Health {
    pub(super) fn get(&self) -> WriterHealth {
        self.0.lock().map(|h| h.clone()).unwrap_or_default()
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut WriterHealth)) {
        if let Ok(mut h) = self.0.lock() {
            f(&mut h);
        }
    }
}
