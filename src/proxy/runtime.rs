//! The proxy's `Runtime`: everything a request needs, built whole from validated config and
//! shared read-only (`Arc`). A reload builds a new one and swaps it in; a request in flight keeps
//! the snapshot it started with.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{AuthMode, Config, Problems, SecretSource};

use super::upstream::Upstream;

/// Who a request is from, as far as the gateway key tells.
#[derive(Clone, Debug)]
pub struct Identity {
    pub user: Arc<str>,
    pub team: Option<Arc<str>>,
    /// The key's clients may name their end users (`end_users: trusted`).
    pub trusts_end_users: bool,
    /// The key's own limits, when it has any.
    pub quota: Option<Arc<crate::quota::Scope>>,
    /// The models the key may call; `None`: every model.
    pub models: Option<Arc<[String]>>,
}

/// A missing or unknown gateway key while keys are required.
#[derive(Debug)]
pub struct Unauthorized;

/// Where a model name goes.
pub struct Target {
    pub upstream: Arc<Upstream>,
    /// The model id sent upstream (differs from the requested name for aliases).
    pub model: Arc<str>,
    pub is_alias: bool,
}

pub struct Runtime {
    pub config: Arc<Config>,
    pub auth_mode: AuthMode,
    keys: HashMap<String, Identity>,
    upstreams: HashMap<Arc<str>, Arc<Upstream>>,
    aliases: HashMap<String, (Arc<str>, Option<Arc<str>>)>,
    /// Prefix routes, longest prefix first.
    routes: Vec<(String, Arc<str>)>,
    default_upstream: Option<Arc<str>>,
    pub max_body: usize,
    /// The price table (`prices`), reloaded with the rest of the runtime.
    pub prices: Arc<crate::llm::prices::Prices>,
    /// The `/v1/*` paths that pass through unread.
    pub passthrough: super::route::Passthrough,
    /// The detector and its actions; `None` when detection is off.
    pub guard: Option<super::guard::Guard>,
    /// Prompt/answer text capture for the record; `None` (no copies) unless a consumer wants it.
    pub capture: Option<super::capture::TextCapture>,
    /// The limits of the `quotas:` section (keys carry their own in `Identity`).
    pub quotas: crate::quota::Quotas,
    /// The config keys' scopes by their fleet-wide id, `key:<digest>:<user>` (`digest`:
    /// `keys::fleet_id` of the secret, the same whatever the key's place in `auth.keys`; never
    /// the secret), for the fleet's counter sync.
    shared_keys: Vec<(String, Arc<crate::quota::Scope>)>,
}

impl Runtime {
    /// Builds the runtime from a validated config. Returns it with start-up warnings.
    ///
    /// # Errors
    /// Secrets that cannot be read (gateway keys), listed together.
    pub fn build(config: Arc<Config>) -> Result<(Runtime, Vec<String>), Problems> {
        Runtime::build_after(config, None)
    }

    /// Builds the runtime that replaces `previous` (on reload): limits still configured keep
    /// counting where `previous` left them.
    ///
    /// # Errors
    /// As [`Runtime::build`].
    pub fn build_after(
        config: Arc<Config>,
        previous: Option<&Runtime>,
    ) -> Result<(Runtime, Vec<String>), Problems> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let mut keys = HashMap::new();
        for (i, k) in config.auth.keys.iter().enumerate() {
            let source = match (&k.key_env, &k.key_file) {
                (Some(env), _) => SecretSource::Env(env.clone()),
                (None, Some(file)) => SecretSource::File(file.clone()),
                (None, None) => continue,
            };
            match source.read() {
                Ok(secret) => {
                    let old = previous
                        .and_then(|p| p.keys.get(secret.expose()))
                        .and_then(|id| id.quota.as_deref());
                    let id = Identity {
                        user: Arc::from(k.user.as_str()),
                        team: k.team.as_deref().map(Arc::from),
                        trusts_end_users: k.end_users == crate::config::EndUsers::Trusted,
                        quota: key_scope(&k.limits, old),
                        models: (!k.models.is_empty()).then(|| k.models.clone().into()),
                    };
                    keys.insert(secret.expose().to_owned(), id);
                }
                Err(e) => problems.push(format!("auth.keys[{i}]: {e}")),
            }
        }
        // From the map, not the list: a secret listed twice is one key, counted once.
        let shared_keys = keys
            .iter()
            .filter_map(|(secret, id)| {
                let name = crate::keys::fleet_id(secret);
                Some((format!("key:{name}:{}", id.user), id.quota.clone()?))
            })
            .collect();
        let mut upstreams = HashMap::new();
        for (name, c) in &config.upstreams {
            let (up, warning) = Upstream::build(name, c);
            let needed = config.auth.mode != AuthMode::Passthrough;
            warnings.extend(warning.filter(|_| needed));
            upstreams.insert(up.name.clone(), Arc::new(up));
        }
        let guard = build_guard(&config, &upstreams, &mut problems, &mut warnings);
        // Validated with the rest of the config; an entry that fails here was never checked.
        let passthrough = super::route::Passthrough::parse(&config.proxy.passthrough)
            .unwrap_or_else(|e| {
                problems.push(format!("proxy.passthrough: {e}"));
                super::route::Passthrough::default()
            });
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        let aliases = config
            .models
            .aliases
            .iter()
            .map(|(a, c)| {
                (
                    a.clone(),
                    (
                        Arc::from(c.model.as_str()),
                        c.upstream.as_deref().map(Arc::from),
                    ),
                )
            })
            .collect();
        let mut routes: Vec<(String, Arc<str>)> = config
            .models
            .routes
            .iter()
            .map(|r| (r.prefix.clone(), Arc::from(r.upstream.as_str())))
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        let rt = Runtime {
            auth_mode: config.auth.mode,
            keys,
            upstreams,
            aliases,
            routes,
            default_upstream: config.models.default_upstream.as_deref().map(Arc::from),
            max_body: config.proxy.max_body_bytes,
            passthrough,
            prices: Arc::new(crate::llm::prices::Prices::load_or_empty(&config.prices)),
            guard,
            capture: super::capture::TextCapture::from_config(&config),
            quotas: crate::quota::Quotas::build(&config, previous.map(|p| &p.quotas)),
            shared_keys,
            config,
        };
        Ok((rt, warnings))
    }

    /// Every key's own limits (to seed their budgets at start); keys sharing a user are listed
    /// each.
    pub fn key_scopes(&self) -> impl Iterator<Item = (&str, &Arc<crate::quota::Scope>)> {
        self.keys
            .values()
            .filter_map(|id| Some((&*id.user, id.quota.as_ref()?)))
    }

    /// Every scope of this runtime whose counters the fleet shares, by fleet-wide id: config
    /// keys (`key:<digest>:<user>`, `keys::fleet_id`), tracked end users, teams, models and the
    /// gateway (see `Quotas::shared`). Virtual keys are `VirtualKeys::shared`'s.
    pub fn shared_scopes(&self) -> Vec<(String, Arc<crate::quota::Scope>)> {
        let quotas = self.quotas.shared();
        self.shared_keys.iter().cloned().chain(quotas).collect()
    }

    /// Resolves a model name: alias, then prefix route, then the default upstream.
    pub fn target(&self, model: &str) -> Option<Target> {
        if let Some((upstream_model, upstream)) = self.aliases.get(model) {
            let up = upstream
                .clone()
                .or_else(|| self.route_upstream(upstream_model))?;
            return Some(Target {
                upstream: self.upstreams.get(&up)?.clone(),
                model: upstream_model.clone(),
                is_alias: true,
            });
        }
        let up = self.route_upstream(model)?;
        Some(Target {
            upstream: self.upstreams.get(&up)?.clone(),
            model: Arc::from(model),
            is_alias: false,
        })
    }

    fn route_upstream(&self, model: &str) -> Option<Arc<str>> {
        self.routes
            .iter()
            .find(|(prefix, _)| model.starts_with(prefix.as_str()))
            .map(|(_, u)| u.clone())
            .or_else(|| self.default_upstream.clone())
    }

    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.get(name)
    }

    /// The upstream for requests that name no model (`/v1/models`, other `/v1/*` paths).
    pub fn default_upstream(&self) -> Option<&Arc<Upstream>> {
        self.default_upstream
            .as_ref()
            .and_then(|n| self.upstreams.get(n))
    }

    /// Alias names, sorted.
    pub fn alias_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.aliases.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Known model names (aliases and their targets) — the bounded set metrics may label.
    pub fn known_models(&self) -> Vec<String> {
        let mut v: Vec<String> = self.aliases.keys().cloned().collect();
        v.extend(self.aliases.values().map(|(m, _)| m.to_string()));
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Checks a gateway key, among the config's keys first, then the virtual keys: `Err` when
    /// keys are required and the key is missing or unknown (revoked and expired keys are
    /// unknown), `Ok(None)` when no key identifies the caller. Keys are required in `keys`
    /// mode once there is any key, from config or created at run time.
    ///
    /// # Errors
    /// The key is missing or unknown while keys are required.
    pub fn identify(
        &self,
        bearer: Option<&str>,
        virtual_keys: &super::vkeys::VirtualKeys,
        now_ms: i64,
    ) -> Result<Option<Identity>, Unauthorized> {
        let find = |k: &str| {
            self.keys
                .get(k)
                .cloned()
                .or_else(|| virtual_keys.get(k, now_ms))
        };
        match self.auth_mode {
            AuthMode::Keys if self.keys.is_empty() && !virtual_keys.any() => Ok(None),
            AuthMode::Keys => find(bearer.ok_or(Unauthorized)?)
                .map(Some)
                .ok_or(Unauthorized),
            AuthMode::Open => Ok(bearer.and_then(find)),
            AuthMode::Passthrough => Ok(None),
        }
    }
}

/// A key's scope, when its config sets limits; with `old`'s counters when it had one.
fn key_scope(
    c: &crate::config::LimitsConfig,
    old: Option<&crate::quota::Scope>,
) -> Option<Arc<crate::quota::Scope>> {
    let limits = crate::quota::Limits::from_config(c)?;
    let scope = crate::quota::Scope::new(crate::quota::ScopeKind::Key, limits, old);
    Some(Arc::new(scope.labelled(c.label)))
}

/// The detector, when enabled. A policy that fails to load stops the build when it says
/// `fail_closed` (or could not say); when every failing policy says `fail_open`, gatehouse runs
/// without detection and warns.
fn build_guard(
    config: &Config,
    upstreams: &HashMap<Arc<str>, Arc<Upstream>>,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<super::guard::Guard> {
    if !config.detect.enabled {
        return None;
    }
    let judge = &config.detect.judge;
    let judge_upstream = judge
        .upstream_name(config)
        .filter(|_| judge.enabled)
        .and_then(|name| upstreams.get(name).cloned());
    if let Some(up) = judge_upstream.as_ref().filter(|u| !u.has_key()) {
        // The client's own key is never sent to the judge, whatever auth mode says.
        warnings.push(format!(
            "detect.judge: upstream {} has no API key; its calls will likely fail and detect.judge.fail decide",
            up.name
        ));
    }
    match super::guard::Guard::build(&config.detect, judge_upstream) {
        Ok(g) => Some(g),
        Err(e) if !e.fail_closed() => {
            warnings.push(format!(
                "detection is OFF: policies failed to load and say fail_open: {e}"
            ));
            None
        }
        Err(e) => {
            problems.push(format!("detect.policies: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KeyConfig, LimitsConfig};
    use crate::quota::{apply_fleet, Ask, Ledger, Others};

    /// 2026-01-15T12:00:00Z.
    const NOW: i64 = 1_768_478_400_000;
    /// The lease of requests in flight (`quotas.sync_ms` 1000).
    const LEASE: i64 = 8_000;
    const SECRETS: [(&str, &str); 2] = [
        ("alice", "Zq7-Rm9-Wv2-Lp8-Tx4-Ny6"),
        ("bob", "Hb3-Kd8-Qs1-Vf5-Jw7-Mc2"),
    ];

    /// A runtime with the keys of `users`, in that order, each with 10 requests a minute.
    fn runtime(dir: &std::path::Path, users: [&str; 2]) -> Runtime {
        // The upstream clients need one, as `main` installs it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut c = Config::default();
        c.detect.enabled = false;
        for user in users {
            let (_, secret) = SECRETS.iter().find(|(u, _)| *u == user).expect("a user");
            let file = dir.join(user);
            std::fs::write(&file, secret).expect("write the key");
            c.auth.keys.push(KeyConfig {
                key_file: Some(file),
                user: user.into(),
                limits: LimitsConfig {
                    requests_per_minute: Some(10),
                    ..LimitsConfig::default()
                },
                ..KeyConfig::default()
            });
        }
        Runtime::build(Arc::new(c)).expect("a runtime").0
    }

    fn ids(rt: &Runtime) -> Vec<String> {
        let mut ids: Vec<String> = rt.shared_scopes().into_iter().map(|(id, _)| id).collect();
        ids.sort();
        ids
    }

    #[test]
    fn config_keys_share_counters_by_digest_whatever_their_order_and_name_no_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = runtime(dir.path(), ["alice", "bob"]);
        let b = runtime(dir.path(), ["bob", "alice"]);
        assert_eq!(ids(&a), ids(&b), "one name per key on both replicas");
        for id in ids(&a) {
            for (_, secret) in SECRETS {
                let pieces = secret.as_bytes().windows(3);
                let clear = pieces.filter_map(|w| std::str::from_utf8(w).ok());
                for piece in clear {
                    assert!(!id.contains(piece), "{id} holds {piece:?} of a secret");
                }
            }
        }
        // A request of alice's on replica a is counted on replica b under the same name.
        let alice = |rt: &Runtime| {
            let (_, s) = rt.key_scopes().find(|(u, _)| *u == "alice").expect("alice");
            s.clone()
        };
        let alice_a = alice(&a);
        let ask = Ask::key_only(&alice_a, NOW);
        drop(a.quotas.admit(&ask).expect("room"));
        let scopes = a.shared_scopes();
        let by_id = || scopes.iter().map(|(id, s)| (id.as_str(), &**s));
        let sent = Ledger::default().changes(by_id(), NOW, a.quotas.zone(), LEASE);
        let theirs = b.shared_scopes();
        let mut others = Others::default();
        others.merge(sent.into_iter().map(|t| ("a".to_owned(), t)), NOW, LEASE);
        apply_fleet(
            theirs.iter().map(|(id, s)| (id.as_str(), &**s)),
            &others.read(),
            NOW,
            b.quotas.zone(),
        );
        let seen = alice(&b).view("alice", NOW, b.quotas.zone());
        let rpm = seen.requests_per_minute.expect("a limit");
        assert_eq!(rpm.used, 1, "b counts a's request to alice's key");
    }
}
