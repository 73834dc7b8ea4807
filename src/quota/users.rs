//! End users' scopes: created on first sight in a sharded, bounded cache (`quick_cache`, the
//! detector's segment cache too), so the hot path takes one shard's read lock, never a global
//! one, and memory stays bounded whatever ids clients send. Each scope carries its fleet-wide
//! name (`user:<digest>`), worked out once when the user is first seen, so a fleet sync never
//! hashes 100,000 ids a second.
//!
//! Trade-off: a user pushed out of the cache (the least recently seen, past `max_tracked`)
//! comes back with counters at 0. Only keys that trust their clients' end-user ids (or a
//! gateway without keys) let a client name users at all, and such a key's own limits still
//! hold.

use std::sync::Arc;

use std::sync::RwLock;

use arc_swap::ArcSwapOption;
use jiff::tz::TimeZone;
use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

use super::shares::{self, Sums};
use super::{Limits, Scope, ScopeKind};

/// An end user's scope and its fleet-wide name.
#[derive(Clone)]
struct Tracked {
    scope: Arc<Scope>,
    fleet_id: Arc<str>,
}

#[derive(Clone)]
pub struct Users {
    limits: Limits,
    max: usize,
    cache: Arc<Cache<String, Tracked>>,
    /// Fleet mode: the other replicas' counts as of the last sync, for end users first seen
    /// here (none on one replica).
    others: Arc<ArcSwapOption<RwLock<Sums>>>,
}

/// Hex digits of an end user's id's SHA-256 in its fleet-wide name: 64 bits, so no two ids of
/// a cache's 100,000 share one by chance (about one in 3.7 billion).
const FLEET_ID_HEX: usize = 16;

/// End user `user`'s fleet-wide name (`quota_counts`' scope): `user:` and the first 16 hex
/// digits of the id's SHA-256, the same on every replica. A digest, so the shared table never
/// holds the ids clients send nor grows with their length.
pub fn fleet_id(user: &str) -> String {
    use std::fmt::Write;
    let digest = Sha256::digest(user.as_bytes());
    let mut id = String::with_capacity(5 + FLEET_ID_HEX);
    id.push_str("user:");
    for b in &digest[..FLEET_ID_HEX / 2] {
        let _ = write!(id, "{b:02x}");
    }
    id
}

impl Users {
    pub fn new(limits: Limits, max: usize) -> Users {
        Users {
            limits,
            max,
            cache: Arc::new(Cache::new(max)),
            others: Arc::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether these counters can serve a reload with `limits` and `max`.
    pub fn fits(&self, limits: Limits, max: usize) -> bool {
        self.limits == limits && self.max == max
    }

    /// The scope of `user`, made on first sight at `now_ms` (with the rest of the fleet's
    /// counts of them as of the last sync; budget periods in `zone`).
    pub fn scope(&self, user: &str, now_ms: i64, zone: &TimeZone) -> Arc<Scope> {
        let make = || {
            let t = Tracked {
                scope: Arc::new(Scope::new(ScopeKind::User, self.limits, None)),
                fleet_id: fleet_id(user).into(),
            };
            if let Some(others) = &*self.others.load() {
                shares::read(others).share(&t.fleet_id, &t.scope, now_ms, zone);
            }
            Ok::<_, std::convert::Infallible>(t)
        };
        match self.cache.get_or_insert_with(user, make) {
            Ok(t) => t.scope,
            Err(never) => match never {},
        }
    }

    /// Every end user tracked now, with their scope (walks the cache shard by shard).
    pub fn iter(&self) -> impl Iterator<Item = (String, Arc<Scope>)> + '_ {
        self.cache.iter().map(|(user, t)| (user, t.scope))
    }

    /// Starts end users first seen from now on from `others` (the fleet sync's sums).
    pub fn set_others(&self, others: Arc<RwLock<Sums>>) {
        self.others.store(Some(others));
    }

    /// Every end user tracked now by fleet-wide name, with their scope.
    pub fn shared(&self) -> impl Iterator<Item = (Arc<str>, Arc<Scope>)> + '_ {
        self.cache.iter().map(|(_, t)| (t.fleet_id, t.scope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_ids_are_short_digests_never_the_id() {
        let id = fleet_id("alice@example.com");
        assert_eq!(id.len(), 5 + FLEET_ID_HEX);
        assert!(id.starts_with("user:"), "{id}");
        assert!(!id.contains("alice"), "{id}");
        // SHA-256("alice@example.com") starts ff8d9819fc0e12bf.
        assert_eq!(id, "user:ff8d9819fc0e12bf");
        assert_ne!(fleet_id("alice@example.co"), id);
    }
}
