//! Secrets: a newtype that never prints or serialises its value, the places one may come from
//! (an environment variable or a file — never the config file itself), and the checks `validate`
//! runs on them.
//!
//! A secret set to nothing is a config error, never "no secret": `GATEHOUSE_ADMIN__TOKEN=` (an
//! unset `${TOKEN}` in a compose file, say) once started an admin listener whose token was the
//! empty string. The checks read the variables and files the config names, so `gatehouse check`
//! catches what start would; they never echo a value.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use super::{AuthMode, Config};

/// Shortest admin token accepted when the admin listener is reachable from off this machine:
/// 16 bytes, what `openssl rand -hex 8` prints; `openssl rand -hex 32` is the suggestion.
pub const ADMIN_TOKEN_MIN_BYTES: usize = 16;

/// A secret value. `Debug` prints `***`; there is no `Display` and no `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the value is empty or only whitespace: never a usable credential.
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Where a secret is read from.
#[derive(Clone, Debug)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set or empty")]
    MissingEnv(String),
    #[error("cannot read secret file {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret file {0} is empty")]
    EmptyFile(PathBuf),
}

impl SecretSource {
    /// Reads the secret now.
    ///
    /// # Errors
    /// The variable is unset or empty, or the file cannot be read or is empty.
    pub fn read(&self) -> Result<Secret, SecretError> {
        match self {
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_owned())),
                _ => Err(SecretError::MissingEnv(name.clone())),
            },
            SecretSource::File(path) => read_file(path),
        }
    }
}

fn read_file(path: &Path) -> Result<Secret, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
        path: path.to_owned(),
        source,
    })?;
    let value = text.trim();
    if value.is_empty() {
        return Err(SecretError::EmptyFile(path.to_owned()));
    }
    Ok(Secret(value.to_owned()))
}

/// Every secret problem of a config (called by `validate`): a `Secret` field or a named
/// variable or file that is set but blank, and an admin token shorter than
/// [`ADMIN_TOKEN_MIN_BYTES`] on an admin listener that is not loopback.
pub(super) fn check(c: &Config, admin: Option<SocketAddr>, p: &mut Vec<String>) {
    let values = [
        ("admin.token", c.admin.token.as_ref()),
        ("store.url", c.store.url.as_ref()),
    ];
    for (field, _) in values
        .iter()
        .filter(|(_, s)| s.is_some_and(Secret::is_blank))
    {
        p.push(format!("{field} is set but empty"));
    }
    for (field, source) in sources(c) {
        if let Some(problem) = blank(&source) {
            p.push(format!("{field}: {problem}"));
        }
    }
    if admin.is_some_and(|a| !a.ip().is_loopback()) {
        check_admin_strength(c, p);
    }
}

/// The admin token must stand guessing when anyone on the network can try.
fn check_admin_strength(c: &Config, p: &mut Vec<String>) {
    let (field, token) = match (&c.admin.token, &c.admin.token_file) {
        (Some(t), _) => ("admin.token", Some(t.clone())),
        (None, Some(f)) => match SecretSource::File(f.clone()).read() {
            Ok(t) => ("admin.token_file", Some(t)),
            Err(e) => {
                p.push(format!("admin.token_file: {e}"));
                return;
            }
        },
        (None, None) => return,
    };
    let Some(token) = token.filter(|t| !t.is_blank()) else {
        return;
    };
    if token.expose().trim().len() < ADMIN_TOKEN_MIN_BYTES {
        p.push(format!(
            "{field} is shorter than {ADMIN_TOKEN_MIN_BYTES} bytes and admin.listen {} is reachable from off this machine: use a long random token (openssl rand -hex 32)",
            c.admin.listen
        ));
    }
}

/// The variables and files the config names for secrets, each with the field that names it.
/// Upstream keys are left out in passthrough mode (the client's own key goes upstream), the
/// SMTP password when no mail host is set, Langfuse key variables unless export is switched on
/// (`enabled` absent means "on when both keys are set", so an empty one there means off).
fn sources(c: &Config) -> Vec<(String, SecretSource)> {
    let mut out = Vec::new();
    let mut file = |field: String, path: &Option<PathBuf>| {
        if let Some(path) = path {
            out.push((field, SecretSource::File(path.clone())));
        }
    };
    file("admin.token_file".into(), &c.admin.token_file);
    file("store.url_file".into(), &c.store.url_file);
    for (i, k) in c.auth.keys.iter().enumerate() {
        file(format!("auth.keys[{i}].key_file"), &k.key_file);
    }
    if c.auth.mode != AuthMode::Passthrough {
        for (name, u) in &c.upstreams {
            file(format!("upstreams.{name}.api_key_file"), &u.api_key_file);
        }
    }
    let ch = &c.alerts.channels;
    for (i, h) in ch.webhooks.iter().enumerate() {
        file(
            format!("alerts.channels.webhooks[{i}].secret_file"),
            &h.secret_file,
        );
    }
    file(
        "alerts.channels.slack.webhook_url_file".into(),
        &ch.slack.webhook_url_file,
    );
    file(
        "alerts.channels.teams.webhook_url_file".into(),
        &ch.teams.webhook_url_file,
    );
    if ch.email.host.is_some() {
        file(
            "alerts.channels.email.password_file".into(),
            &ch.email.password_file,
        );
    }
    let lf = &c.traces.langfuse;
    if lf.enabled != Some(false) {
        file(
            "traces.langfuse.public_key_file".into(),
            &lf.public_key_file,
        );
        file(
            "traces.langfuse.secret_key_file".into(),
            &lf.secret_key_file,
        );
    }
    out.extend(env_sources(c));
    out
}

fn env_sources(c: &Config) -> Vec<(String, SecretSource)> {
    let mut out = Vec::new();
    let mut env = |field: String, name: &str| out.push((field, SecretSource::Env(name.to_owned())));
    for (i, k) in c.auth.keys.iter().enumerate() {
        if let Some(name) = &k.key_env {
            env(format!("auth.keys[{i}].key_env"), name);
        }
    }
    if c.auth.mode != AuthMode::Passthrough {
        for (name, u) in c.upstreams.iter().filter(|(_, u)| u.api_key_file.is_none()) {
            env(format!("upstreams.{name}.api_key_env"), &u.key_env(name));
        }
    }
    let ch = &c.alerts.channels;
    for (i, h) in ch.webhooks.iter().enumerate() {
        if let Some(name) = &h.secret_env {
            env(format!("alerts.channels.webhooks[{i}].secret_env"), name);
        }
    }
    for (field, u) in [("slack", &ch.slack), ("teams", &ch.teams)] {
        if let Some(name) = &u.webhook_url_env {
            env(format!("alerts.channels.{field}.webhook_url_env"), name);
        }
    }
    if ch.email.host.is_some() && ch.email.password_file.is_none() {
        env(
            "alerts.channels.email.password_env".into(),
            &ch.email.password_env,
        );
    }
    let lf = &c.traces.langfuse;
    if lf.enabled == Some(true) {
        env("traces.langfuse.public_key_env".into(), &lf.public_key_env);
        env("traces.langfuse.secret_key_env".into(), &lf.secret_key_env);
    }
    for (i, o) in c.traces.otlp.iter().enumerate() {
        for (header, name) in &o.headers_env {
            env(format!("traces.otlp[{i}].headers_env.{header}"), name);
        }
    }
    out
}

/// What is wrong with a source that is set but holds nothing; `None` when it holds a value or
/// is not set at all (whether an unset secret is an error is the caller's rule).
fn blank(source: &SecretSource) -> Option<String> {
    match source {
        SecretSource::Env(name) => std::env::var_os(name)
            .filter(|v| v.to_string_lossy().trim().is_empty())
            .map(|_| format!("environment variable {name} is set but empty")),
        SecretSource::File(path) => std::fs::read_to_string(path)
            .ok()
            .filter(|v| v.trim().is_empty())
            .map(|_| format!("secret file {} is empty", path.display())),
    }
}
