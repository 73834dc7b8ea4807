//! Virtual gateway keys: keys created, changed, rotated and revoked at run time through the
//! admin API (`/api/keys`), beside the keys of `auth.keys` in `gateway.yaml`.
//!
//! Owns the plain data (a key as stored, what a client asks for), the validation of that
//! request, and the secret: how one is made and hashed. Knows nothing of HTTP (`admin`), SQL
//! (`store`) or requests (`proxy`, which keeps every key in memory by hash).
//!
//! The secret is shown once, when it is made; the store keeps only its SHA-256 hash. A fast,
//! unsalted hash is enough here because the secrets are 32 random bytes: there is nothing to
//! guess from a dictionary, and a salt would stop the proxy from finding a key by its hash in one
//! map lookup. (A password chosen by a person would need a slow, salted hash instead.)

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest as _, Sha256};

use crate::config::{check_limits, EndUsers, LimitsConfig, Secret};

/// What every virtual key's secret starts with, so a leaked one is recognisable.
pub const SECRET_PREFIX: &str = "gh-";
/// Random bytes in a secret (256 bits).
const SECRET_BYTES: usize = 32;
/// Characters of the secret kept in clear after `gh-` to tell keys apart in lists: 36 bits
/// of the random part, too few to help a guess.
const SHOWN_CHARS: usize = 6;
/// Longest name, user or team, and most models a key may list.
const MAX_TEXT: usize = 200;
const MAX_MODELS: usize = 1000;
/// Largest metadata object, serialized.
const MAX_METADATA_BYTES: usize = 16 * 1024;

/// A virtual key as stored. The secret itself is never here.
#[derive(Clone, Debug, PartialEq)]
pub struct VirtualKey {
    pub id: String,
    /// SHA-256 of the secret, lowercase hex.
    pub secret_hash: String,
    /// The secret's first characters (`gh-AbC123`), for lists.
    pub prefix: String,
    pub name: Option<String>,
    pub user: String,
    pub team: Option<String>,
    /// Whether the end-user ids its clients send are recorded (as `auth.keys[].end_users`).
    pub end_users: EndUsers,
    /// Allowed models; empty: every model.
    pub models: Vec<String>,
    pub limits: LimitsConfig,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub expires_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

impl VirtualKey {
    /// Whether requests with this key are refused at `now_ms` (revoked or expired).
    pub fn is_dead(&self, now_ms: i64) -> bool {
        self.revoked_at_ms.is_some() || self.expires_at_ms.is_some_and(|e| e <= now_ms)
    }
}

/// A fresh secret and what the store keeps of it.
pub struct NewSecret {
    /// Shown to the caller once, then forgotten.
    pub secret: Secret,
    pub hash: String,
    pub prefix: String,
}

impl NewSecret {
    /// `gh-` and 32 random bytes in URL-safe base64 (43 characters).
    ///
    /// # Errors
    /// The operating system has no randomness to give.
    pub fn generate() -> Result<NewSecret, getrandom::Error> {
        let mut raw = [0u8; SECRET_BYTES];
        getrandom::fill(&mut raw)?;
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let secret = format!("{SECRET_PREFIX}{body}");
        Ok(NewSecret {
            hash: hash(&secret),
            prefix: secret[..SECRET_PREFIX.len() + SHOWN_CHARS].to_owned(),
            secret: Secret::new(secret),
        })
    }
}

/// SHA-256 of a secret: how the proxy's map finds a presented key, with no allocation.
pub type Digest = [u8; 32];

/// SHA-256 of a presented secret.
pub fn digest(secret: &str) -> Digest {
    Sha256::digest(secret.as_bytes()).into()
}

/// SHA-256 of a presented secret, lowercase hex (how the store names it).
pub fn hash(secret: &str) -> String {
    let mut out = String::with_capacity(64);
    for b in digest(secret) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// Hex digits of a config key's SHA-256 in its fleet-wide name: 64 bits, so no two keys of any
/// plausible list share one, of a one-way hash of a secret (the store holds the whole hash of
/// every virtual key already).
const FLEET_ID_HEX: usize = 16;

/// A config key's fleet-wide name (`quota_counts`' scope): the first 16 hex digits of its
/// secret's SHA-256, the same on every replica whatever the key's place in `auth.keys`.
pub fn fleet_id(secret: &str) -> String {
    let mut h = hash(secret);
    h.truncate(FLEET_ID_HEX);
    h
}

/// The digest a stored [`hash`] spells; `None` unless it is 64 hex digits.
pub fn parse_hash(hex: &str) -> Option<Digest> {
    let nibble = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `POST /api/keys`: a new key.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// A label for people (not unique).
    #[serde(default)]
    pub name: Option<String>,
    /// The user recorded for requests with this key.
    pub user: String,
    /// The team recorded for requests with this key (team quotas apply).
    #[serde(default)]
    pub team: Option<String>,
    /// `ignored` (default: the key's user is recorded) or `trusted` (the end-user id its
    /// clients send is recorded), as `auth.keys[].end_users`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub end_users: EndUsers,
    /// Models the key may call (aliases or upstream ids); empty or absent: every model.
    #[serde(default)]
    pub models: Vec<String>,
    /// When the key stops working: RFC 3339 (`2026-12-31T23:59:59Z`).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Free-form JSON object kept with the key.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Limits, as `auth.keys[].limits` in `gateway.yaml`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub limits: LimitsConfig,
}

/// `PATCH /api/keys/{id}`: the fields to change; an absent field stays as it is.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub end_users: Option<EndUsers>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// RFC 3339, or `null` for no expiry.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Option<String>>,
    /// Replaces the metadata object.
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Replaces every limit (a limit left out is removed).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub limits: Option<LimitsConfig>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl KeySpec {
    /// The key this asks for, with `secret`'s hash, or every problem, each naming its field.
    ///
    /// # Errors
    /// The problems, in field order.
    pub fn build(
        self,
        id: String,
        secret: &NewSecret,
        now_ms: i64,
    ) -> Result<VirtualKey, Vec<String>> {
        let mut p = Vec::new();
        if self.user.trim().is_empty() {
            p.push("user must not be empty".to_owned());
        }
        check_text("user", Some(&self.user), &mut p);
        check_text("name", self.name.as_deref(), &mut p);
        check_text("team", self.team.as_deref(), &mut p);
        if self.team.as_deref().is_some_and(|t| t.trim().is_empty()) {
            p.push("team must not be empty when set".to_owned());
        }
        let expires_at_ms = expiry(self.expires_at.as_deref(), &mut p);
        check_rest(&self.models, &self.metadata, &self.limits, &mut p);
        if !p.is_empty() {
            return Err(p);
        }
        Ok(VirtualKey {
            id,
            secret_hash: secret.hash.clone(),
            prefix: secret.prefix.clone(),
            name: self.name,
            user: self.user,
            team: self.team,
            end_users: self.end_users,
            models: self.models,
            limits: self.limits,
            metadata: self.metadata,
            expires_at_ms,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            revoked_at_ms: None,
        })
    }
}

impl KeyPatch {
    /// `key` with this patch applied, or every problem, each naming its field.
    ///
    /// # Errors
    /// The problems, in field order.
    pub fn apply(self, mut key: VirtualKey, now_ms: i64) -> Result<VirtualKey, Vec<String>> {
        let mut p = Vec::new();
        check_text("name", self.name.as_deref(), &mut p);
        if let Some(e) = &self.expires_at {
            key.expires_at_ms = expiry(e.as_deref(), &mut p);
        }
        key.name = self.name.or(key.name);
        key.end_users = self.end_users.unwrap_or(key.end_users);
        key.models = self.models.unwrap_or(key.models);
        key.metadata = self.metadata.unwrap_or(key.metadata);
        key.limits = self.limits.unwrap_or(key.limits);
        check_rest(&key.models, &key.metadata, &key.limits, &mut p);
        key.updated_at_ms = now_ms;
        if p.is_empty() {
            Ok(key)
        } else {
            Err(p)
        }
    }
}

fn check_text(field: &str, v: Option<&str>, p: &mut Vec<String>) {
    if v.is_some_and(|v| v.len() > MAX_TEXT) {
        p.push(format!("{field} must be at most {MAX_TEXT} bytes"));
    }
}

fn check_rest(
    models: &[String],
    metadata: &serde_json::Map<String, serde_json::Value>,
    limits: &LimitsConfig,
    p: &mut Vec<String>,
) {
    if models.iter().any(|m| m.trim().is_empty()) {
        p.push("models: names must not be empty".to_owned());
    }
    if models.len() > MAX_MODELS {
        p.push(format!("models: at most {MAX_MODELS} names"));
    }
    let size = serde_json::to_string(metadata).map_or(usize::MAX, |s| s.len());
    if size > MAX_METADATA_BYTES {
        p.push(format!(
            "metadata must be at most {MAX_METADATA_BYTES} bytes as JSON"
        ));
    }
    check_limits("limits", limits, p);
}

/// An RFC 3339 time as unix milliseconds, or a problem naming `expires_at`.
fn expiry(v: Option<&str>, p: &mut Vec<String>) -> Option<i64> {
    let v = v?;
    match v.parse::<jiff::Timestamp>() {
        Ok(t) => Some(t.as_millisecond()),
        Err(_) => {
            p.push(format!(
                "expires_at must be an RFC 3339 time like 2026-12-31T23:59:59Z, got {v:?}"
            ));
            None
        }
    }
}

/// A key as the admin API shows it: never the secret, nor its hash.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub id: String,
    /// The secret's first characters, then `…`.
    pub prefix: String,
    pub name: Option<String>,
    pub user: String,
    pub team: Option<String>,
    /// `ignored` or `trusted`.
    #[schema(value_type = String)]
    pub end_users: EndUsers,
    pub models: Vec<String>,
    #[schema(value_type = Object)]
    pub limits: LimitsConfig,
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// RFC 3339 times.
    pub expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub revoked_at: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
}

impl KeyView {
    pub fn new(k: &VirtualKey, now_ms: i64) -> KeyView {
        let status = match (k.revoked_at_ms, k.is_dead(now_ms)) {
            (Some(_), _) => "revoked",
            (None, true) => "expired",
            (None, false) => "active",
        };
        KeyView {
            id: k.id.clone(),
            prefix: format!("{}…", k.prefix),
            name: k.name.clone(),
            user: k.user.clone(),
            team: k.team.clone(),
            end_users: k.end_users,
            models: k.models.clone(),
            limits: k.limits.clone(),
            metadata: k.metadata.clone().into_iter().collect(),
            expires_at: k.expires_at_ms.map(rfc3339),
            created_at: rfc3339(k.created_at_ms),
            updated_at: rfc3339(k.updated_at_ms),
            revoked_at: k.revoked_at_ms.map(rfc3339),
            status,
        }
    }
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_only_their_hash_and_prefix_are_kept() {
        let a = NewSecret::generate().expect("randomness");
        let b = NewSecret::generate().expect("randomness");
        let s = a.secret.expose();
        assert!(s.starts_with("gh-") && s.len() == 3 + 43, "{}", s.len());
        assert_ne!(s, b.secret.expose());
        assert_eq!(a.hash, hash(s));
        assert_eq!(a.hash.len(), 64);
        assert!(s.starts_with(&a.prefix) && a.prefix.len() == 9);
        assert_eq!(format!("{:?}", a.secret), "***");
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_stored_hash_reads_back_as_its_digest() {
        assert_eq!(parse_hash(&hash("abc")), Some(digest("abc")));
        assert_eq!(digest("abc")[..2], [0xba, 0x78]);
        for bad in ["", "ba78", &"g".repeat(64), &format!("{}0", hash("abc"))] {
            assert_eq!(parse_hash(bad), None, "{bad:?}");
        }
    }

    fn spec(json: serde_json::Value) -> KeySpec {
        serde_json::from_value(json).expect("spec parses")
    }

    #[test]
    fn a_bad_spec_names_every_field() {
        let s = NewSecret::generate().expect("randomness");
        let bad = spec(serde_json::json!({
            "user": " ",
            "models": [""],
            "expires_at": "tomorrow",
            "limits": {"requests_per_minute": 0, "budget_usd": 5},
        }));
        let p = bad.build("id".into(), &s, 0).expect_err("bad spec");
        assert_eq!(
            p,
            [
                "user must not be empty",
                "expires_at must be an RFC 3339 time like 2026-12-31T23:59:59Z, got \"tomorrow\"",
                "models: names must not be empty",
                "limits.requests_per_minute must be greater than 0",
                "limits.per must be day, week or month when budget_usd is set",
            ]
        );
    }

    #[test]
    fn patch_changes_only_what_it_names() {
        let s = NewSecret::generate().expect("randomness");
        let key = spec(serde_json::json!({
            "user": "alice", "name": "ci", "expires_at": "2030-01-01T00:00:00Z",
            "limits": {"requests_per_minute": 5}
        }))
        .build("id".into(), &s, 1)
        .expect("valid");
        let patch: KeyPatch =
            serde_json::from_value(serde_json::json!({"models": ["gpt"]})).expect("patch");
        let same = patch.apply(key.clone(), 2).expect("valid");
        assert_eq!(same.expires_at_ms, key.expires_at_ms);
        assert_eq!(same.limits, key.limits);
        assert_eq!(same.models, ["gpt"]);
        let clear: KeyPatch =
            serde_json::from_value(serde_json::json!({"expires_at": null})).expect("patch");
        assert_eq!(
            clear.apply(key.clone(), 2).expect("valid").expires_at_ms,
            None
        );
        let bad: KeyPatch =
            serde_json::from_value(serde_json::json!({"limits": {"concurrent": 0}})).expect("p");
        assert_eq!(
            bad.apply(key, 2).expect_err("bad"),
            ["limits.concurrent must be greater than 0"]
        );
    }

    #[test]
    fn dead_keys() {
        let s = NewSecret::generate().expect("randomness");
        let mut k = spec(serde_json::json!({"user": "u", "expires_at": "1970-01-01T00:00:01Z"}))
            .build("id".into(), &s, 0)
            .expect("valid");
        assert!(!k.is_dead(999));
        assert!(k.is_dead(1000));
        k.expires_at_ms = None;
        k.revoked_at_ms = Some(5);
        assert!(k.is_dead(0));
        assert_eq!(KeyView::new(&k, 0).status, "revoked");
    }
}
