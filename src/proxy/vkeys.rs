//! Virtual keys on the request path: every key created through the admin API, held in memory
//! by the hash of its secret, so a request never waits on the store. `app` replaces the whole
//! map from the store at start, every `auth.sync_secs` and right after a write through this
//! replica's admin API; a request reads one snapshot (an `ArcSwap` load, no lock).
//!
//! A key's limits are `crate::quota` scopes, as a config key's: a refresh that leaves a key's
//! limits as they were keeps its very scope (the counters go on), one that changes them keeps
//! the counters as a config reload does (unless the budget period changed), and a rotation
//! keeps them too (the map follows the key's id, not its secret).
//!
//! What it can miss: a change made on another replica applies here only at the next sync, so a
//! revoked key works there for up to `auth.sync_secs` more. Expiry needs no sync: it is checked
//! against the clock on every request.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::runtime::Identity;
use crate::keys::{digest, parse_hash, Digest, VirtualKey, SECRET_PREFIX};
use crate::quota::{Limits, Scope, ScopeKind};

/// Every virtual key this replica knows.
#[derive(Default)]
pub struct VirtualKeys {
    map: ArcSwap<Map>,
}

#[derive(Default)]
struct Map {
    /// Live keys (not revoked) by the SHA-256 of their secret: a fixed-size key, so a lookup
    /// hashes the presented secret on the stack and allocates nothing.
    by_hash: HashMap<Digest, Entry>,
    /// Whether any key was ever created, revoked ones included: then the gateway requires a
    /// key, even with none in `auth.keys` (revoking the last key does not open it).
    any: bool,
}

struct Entry {
    id: String,
    identity: Identity,
    expires_at_ms: Option<i64>,
}

impl VirtualKeys {
    /// Replaces every key with `rows` (all of the store's, revoked ones included), keeping the
    /// counters of keys whose limits are still there. Returns the number of live keys.
    pub fn replace(&self, rows: &[VirtualKey]) -> usize {
        let old = self.map.load();
        let old_scopes: HashMap<&str, &Arc<Scope>> = old
            .by_hash
            .values()
            .filter_map(|e| Some((e.id.as_str(), e.identity.quota.as_ref()?)))
            .collect();
        let by_hash: HashMap<Digest, Entry> = rows
            .iter()
            .filter(|k| k.revoked_at_ms.is_none())
            .filter_map(|k| {
                // The store holds only hashes this crate wrote; one that is not 64 hex digits
                // matches no secret.
                let digest = parse_hash(&k.secret_hash)?;
                let quota = scope(k, old_scopes.get(k.id.as_str()).copied());
                let identity = Identity {
                    user: Arc::from(k.user.as_str()),
                    team: k.team.as_deref().map(Arc::from),
                    trusts_end_users: k.end_users == crate::config::EndUsers::Trusted,
                    quota,
                    models: (!k.models.is_empty()).then(|| k.models.clone().into()),
                };
                let entry = Entry {
                    id: k.id.clone(),
                    identity,
                    expires_at_ms: k.expires_at_ms,
                };
                Some((digest, entry))
            })
            .collect();
        let live = by_hash.len();
        self.map.store(Arc::new(Map {
            by_hash,
            any: !rows.is_empty(),
        }));
        live
    }

    /// Whether any virtual key exists (or existed): keys are then required.
    pub fn any(&self) -> bool {
        self.map.load().any
    }

    /// The identity of a live, unexpired key whose secret is `secret`.
    pub fn get(&self, secret: &str, now_ms: i64) -> Option<Identity> {
        // Secrets we made all start so; anything else is not worth a hash.
        if !secret.starts_with(SECRET_PREFIX) {
            return None;
        }
        let map = self.map.load();
        let e = map.by_hash.get(&digest(secret))?;
        if e.expires_at_ms.is_some_and(|t| t <= now_ms) {
            return None;
        }
        Some(e.identity.clone())
    }

    /// Every live key's user and scope, for keys with limits (to seed their budgets at start).
    pub fn scopes(&self) -> Vec<(Arc<str>, Arc<Scope>)> {
        self.map
            .load()
            .by_hash
            .values()
            .filter_map(|e| Some((e.identity.user.clone(), e.identity.quota.clone()?)))
            .collect()
    }

    /// Every live key's scope by its fleet-wide id, `vkey:<id>`, for keys with limits (for
    /// the fleet's counter sync).
    pub fn shared(&self) -> Vec<(String, Arc<Scope>)> {
        self.map
            .load()
            .by_hash
            .values()
            .filter_map(|e| Some((format!("vkey:{}", e.id), e.identity.quota.clone()?)))
            .collect()
    }
}

/// The key's scope: `old` itself when the limits are unchanged, else a new one that keeps
/// `old`'s counters as a reload does.
fn scope(k: &VirtualKey, old: Option<&Arc<Scope>>) -> Option<Arc<Scope>> {
    let limits = Limits::from_config(&k.limits)?;
    match old {
        Some(o) if o.limits == limits => Some(o.clone()),
        _ => Some(Arc::new(Scope::new(
            ScopeKind::Key,
            limits,
            old.map(|o| &**o),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LimitsConfig;
    use crate::keys::{KeySpec, NewSecret};

    impl VirtualKeys {
        /// The scope of key `id`, when it has limits.
        fn scope_of(&self, id: &str) -> Option<Arc<Scope>> {
            self.map
                .load()
                .by_hash
                .values()
                .find(|e| e.id == id)
                .and_then(|e| e.identity.quota.clone())
        }
    }

    fn key(id: &str, limits: serde_json::Value) -> (String, VirtualKey) {
        let s = NewSecret::generate().expect("randomness");
        let spec: KeySpec =
            serde_json::from_value(serde_json::json!({"user": "u", "limits": limits}))
                .expect("spec");
        let k = spec.build(id.into(), &s, 0).expect("valid");
        (s.secret.expose().to_owned(), k)
    }

    #[test]
    fn unchanged_limits_keep_their_scope_and_changed_ones_their_counters() {
        let keys = VirtualKeys::default();
        assert!(!keys.any());
        let (a_secret, a) = key("a", serde_json::json!({"requests_per_minute": 5}));
        let (_, b) = key("b", serde_json::json!({"concurrent": 1}));
        assert_eq!(keys.replace(&[a.clone(), b.clone()]), 2);
        let sa = keys.scope_of("a").expect("a has limits");
        let sb = keys.scope_of("b").expect("b has limits");
        let mut b2 = b.clone();
        b2.limits = LimitsConfig {
            concurrent: Some(2),
            ..LimitsConfig::default()
        };
        keys.replace(&[a.clone(), b2]);
        assert!(
            Arc::ptr_eq(&sa, &keys.scope_of("a").expect("a")),
            "same scope"
        );
        let sb2 = keys.scope_of("b").expect("b");
        assert!(!Arc::ptr_eq(&sb, &sb2), "new limits, new scope");
        assert!(Arc::ptr_eq(&sb.state, &sb2.state), "same counters");
        assert_eq!(keys.get(&a_secret, 0).expect("live").user.as_ref(), "u");
        assert!(keys.get("gh-nope", 0).is_none());
        let mut revoked = a;
        revoked.revoked_at_ms = Some(1);
        assert_eq!(keys.replace(&[revoked]), 0);
        assert!(keys.get(&a_secret, 0).is_none());
        assert!(keys.any(), "a revoked key still means keys are required");
    }

    #[test]
    fn an_expired_key_is_unknown() {
        let keys = VirtualKeys::default();
        let (secret, mut k) = key("a", serde_json::json!({}));
        k.expires_at_ms = Some(1_000);
        keys.replace(&[k]);
        assert!(keys.get(&secret, 999).is_some());
        assert!(keys.get(&secret, 1_000).is_none());
    }
}
