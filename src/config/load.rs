//! Loading: defaults → YAML file → `GATEHOUSE_*` env (with `__` for nesting) → seed variables.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Yaml};
use figment::Figment;

use super::{AliasConfig, Config};

/// The file read when no `--config` is given, if it exists in the working directory.
pub const DEFAULT_FILE: &str = "gateway.yaml";

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    #[error("{0}")]
    Parse(String),
    #[error("MODEL_NAMES: {0}")]
    ModelNames(String),
    #[error("{name}: {value:?} is not a number")]
    Threshold { name: &'static str, value: String },
}

/// Loads the configuration. With `path` the file must exist; without it `gateway.yaml` in the
/// working directory is read when present, else the defaults stand alone.
///
/// # Errors
/// A missing file, YAML or type errors (each with the key path), or a malformed `MODEL_NAMES`.
pub fn load(path: Option<&Path>) -> Result<Config, LoadError> {
    let file = match path {
        Some(p) if !p.is_file() => return Err(LoadError::Missing(p.to_owned())),
        Some(p) => Some(p.to_owned()),
        None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
    };
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(file) = &file {
        figment = figment.merge(Yaml::file_exact(file));
    }
    figment = figment.merge(
        Env::prefixed("GATEHOUSE_")
            .filter(is_config_key)
            .split("__"),
    );
    let mut config: Config = figment
        .extract()
        .map_err(|e| LoadError::Parse(describe(e)))?;
    apply_model_names(&mut config, std::env::var("MODEL_NAMES").ok().as_deref())?;
    apply_alert_thresholds(&mut config, |name| std::env::var(name).ok())?;
    Ok(config)
}

/// Top-level config sections `GATEHOUSE_*` variables may set.
const SECTIONS: [&str; 13] = [
    "proxy",
    "admin",
    "auth",
    "upstreams",
    "models",
    "store",
    "detect",
    "traces",
    "alerts",
    "prices",
    "report",
    "quotas",
    "instance",
];

/// Whether a `GATEHOUSE_`-prefixed variable (prefix stripped) is meant for the config. Others
/// are left alone rather than refused: `GATEHOUSE_LOG_FORMAT` is read by logging, and
/// Kubernetes injects `GATEHOUSE_PORT`, `GATEHOUSE_SERVICE_HOST`, … for a Service named
/// `gatehouse`. A misspelt key inside a section is still an error (`deny_unknown_fields`).
fn is_config_key(key: &figment::value::UncasedStr) -> bool {
    let first = key.as_str().split("__").next().unwrap_or_default();
    SECTIONS.iter().any(|s| first.eq_ignore_ascii_case(s))
}

/// Every error figment found, one per line, each with where it came from.
fn describe(err: figment::Error) -> String {
    err.into_iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The seed's `MODEL_NAMES`: extra aliases, as a JSON object `{"alias": "upstream/model"}` or as
/// `alias=upstream/model,alias2=model2`. Aliases from the file win over these.
fn apply_model_names(config: &mut Config, value: Option<&str>) -> Result<(), LoadError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let pairs: Vec<(String, String)> = if value.starts_with('{') {
        let map: std::collections::BTreeMap<String, String> =
            serde_json::from_str(value).map_err(|e| LoadError::ModelNames(e.to_string()))?;
        map.into_iter().collect()
    } else {
        value
            .split(',')
            .map(|pair| match pair.split_once('=') {
                Some((a, m)) if !a.trim().is_empty() && !m.trim().is_empty() => {
                    Ok((a.trim().to_owned(), m.trim().to_owned()))
                }
                _ => Err(LoadError::ModelNames(format!(
                    "expected alias=model, got {pair:?}"
                ))),
            })
            .collect::<Result<_, _>>()?
    };
    for (alias, model) in pairs {
        config
            .models
            .aliases
            .entry(alias)
            .or_insert_with(|| AliasConfig {
                model,
                upstream: None,
            });
    }
    Ok(())
}

/// The seed's `ALERT_SECURITY_THRESHOLD`, `ALERT_LATENCY_THRESHOLD` (seconds) and
/// `ALERT_ERROR_RATE_THRESHOLD` (0..1): they override `alerts.thresholds`.
fn apply_alert_thresholds(
    config: &mut Config,
    var: impl Fn(&str) -> Option<String>,
) -> Result<(), LoadError> {
    let t = &mut config.alerts.thresholds;
    let targets: [(&'static str, &mut f64); 3] = [
        ("ALERT_SECURITY_THRESHOLD", &mut t.security),
        ("ALERT_LATENCY_THRESHOLD", &mut t.latency_secs),
        ("ALERT_ERROR_RATE_THRESHOLD", &mut t.error_rate),
    ];
    for (name, slot) in targets {
        let Some(value) = var(name).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        *slot = value
            .trim()
            .parse()
            .map_err(|_| LoadError::Threshold { name, value })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_thresholds_come_from_the_seed_variables() {
        let mut c = Config::default();
        let env = |n: &str| match n {
            "ALERT_SECURITY_THRESHOLD" => Some("7".to_owned()),
            "ALERT_LATENCY_THRESHOLD" => Some("2.5".to_owned()),
            _ => None,
        };
        apply_alert_thresholds(&mut c, env).expect("numbers");
        assert_eq!(c.alerts.thresholds.security, 7.0);
        assert_eq!(c.alerts.thresholds.latency_secs, 2.5);
        assert_eq!(
            c.alerts.thresholds.error_rate, 0.05,
            "unset keeps the default"
        );
        let bad = |_: &str| Some("lots".to_owned());
        assert!(apply_alert_thresholds(&mut c, bad).is_err());
    }

    #[test]
    fn model_names_accepts_json_and_pairs() {
        let mut c = Config::default();
        apply_model_names(&mut c, Some(r#"{"fast": "openai/gpt-4o-mini"}"#)).expect("json");
        apply_model_names(&mut c, Some("smart=anthropic/claude-sonnet-4, x=y")).expect("pairs");
        assert_eq!(c.models.aliases["fast"].model, "openai/gpt-4o-mini");
        assert_eq!(c.models.aliases["smart"].model, "anthropic/claude-sonnet-4");
        assert_eq!(c.models.aliases["x"].model, "y");
        assert!(apply_model_names(&mut c, Some("nonsense")).is_err());
    }
}
