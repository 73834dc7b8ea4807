//! End users' scopes: created on first sight in a sharded, bounded cache (`quick_cache`, the
//! detector's segment cache too), so the hot path takes one shard's read lock, never a global
//! one, and memory stays bounded whatever ids clients send.
//!
//! Trade-off: a user pushed out of the cache (the least recently seen, past `max_tracked`)
//! comes back with counters at 0. Only keys that trust their clients' end-user ids (or a
//! gateway without keys) let a client name users at all, and such a key's own limits still
//! hold.

use std::sync::Arc;

use quick_cache::sync::Cache;

use super::{Limits, Scope, ScopeKind};

#[derive(Clone)]
pub struct Users {
    limits: Limits,
    max: usize,
    cache: Arc<Cache<String, Arc<Scope>>>,
}

impl Users {
    pub fn new(limits: Limits, max: usize) -> Users {
        Users {
            limits,
            max,
            cache: Arc::new(Cache::new(max)),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether these counters can serve a reload with `limits` and `max`.
    pub fn fits(&self, limits: Limits, max: usize) -> bool {
        self.limits == limits && self.max == max
    }

    /// The scope of `user`, made on first sight.
    pub fn scope(&self, user: &str) -> Arc<Scope> {
        let make = || {
            Ok::<_, std::convert::Infallible>(Arc::new(Scope::new(
                ScopeKind::User,
                self.limits,
                None,
            )))
        };
        match self.cache.get_or_insert_with(user, make) {
            Ok(s) => s,
            Err(never) => match never {},
        }
    }

    /// Every end user tracked now, with their scope (walks the cache shard by shard).
    pub fn iter(&self) -> impl Iterator<Item = (String, Arc<Scope>)> + '_ {
        self.cache.iter()
    }
}
