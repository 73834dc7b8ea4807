//! The price table: USD per million input/output tokens per model id, loaded from
//! `policies/prices.yaml`, used by the proxy's recorder when the upstream reports no cost.
//!
//! Trade-off: one `HashMap` lookup per record (exact id, then the id without its
//! `provider/` prefix, and `:free` variants cost 0); no date-based price history — a price
//! change applies from the next load on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Prices of one model, USD per million tokens.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Cached prompt tokens; `input` when absent.
    #[serde(default)]
    pub cached_input: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    models: HashMap<String, Price>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("read price table {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse price table {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("price table {path}: model {model}: prices must be finite and not negative")]
    Invalid { path: PathBuf, model: String },
}

/// Model id → price.
#[derive(Clone, Debug, Default)]
pub struct Prices {
    by_id: HashMap<String, Price>,
}

const PER_TOKEN: f64 = 1e-6;

impl Prices {
    /// Loads a price file (`models: {id: {input, output, cached_input?}}`).
    ///
    /// # Errors
    /// The file cannot be read or parsed, or a price is negative or not finite.
    pub fn load(path: &Path) -> Result<Prices, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let file: PriceFile = serde_yaml::from_str(&text).map_err(|source| Error::Parse {
            path: path.to_owned(),
            source,
        })?;
        let mut by_id = HashMap::with_capacity(file.models.len() * 2);
        for (id, price) in file.models {
            let ok = [price.input, price.output, price.cached_input.unwrap_or(0.0)]
                .iter()
                .all(|p| p.is_finite() && *p >= 0.0);
            if !ok {
                return Err(Error::Invalid {
                    path: path.to_owned(),
                    model: id,
                });
            }
            if let Some((_, bare)) = id.split_once('/') {
                by_id.entry(bare.to_owned()).or_insert(price);
            }
            by_id.insert(id, price);
        }
        Ok(Prices { by_id })
    }

    /// The price file at `path`, or an empty table (with a warning) when it cannot be used:
    /// cost is then recorded only when the upstream reports it.
    pub fn load_or_empty(path: &Path) -> Prices {
        Prices::load(path).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no price table: cost is recorded only when the upstream reports it");
            Prices::default()
        })
    }

    /// Every priced model id (with and without its provider prefix).
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().map(String::as_str)
    }

    /// The price of a model id, if known.
    pub fn get(&self, model: &str) -> Option<Price> {
        if model.ends_with(":free") {
            return Some(Price {
                input: 0.0,
                output: 0.0,
                cached_input: None,
            });
        }
        let base = model.split_once(':').map_or(model, |(b, _)| b);
        self.by_id
            .get(base)
            .or_else(|| {
                base.split_once('/')
                    .and_then(|(_, bare)| self.by_id.get(bare))
            })
            .copied()
    }

    /// Cost in USD of a request, `None` for an unknown model or when no token counts are known.
    pub fn cost(
        &self,
        model: &str,
        prompt_tokens: Option<u64>,
        completion_tokens: Option<u64>,
        cached_tokens: Option<u64>,
    ) -> Option<f64> {
        if prompt_tokens.is_none() && completion_tokens.is_none() {
            return None;
        }
        let p = self.get(model)?;
        let prompt = prompt_tokens.unwrap_or(0);
        let cached = cached_tokens.unwrap_or(0).min(prompt);
        let input =
            (prompt - cached) as f64 * p.input + cached as f64 * p.cached_input.unwrap_or(p.input);
        Some((input + completion_tokens.unwrap_or(0) as f64 * p.output) * PER_TOKEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Prices {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/prices.yaml");
        Prices::load(&path).expect("the shipped price table parses")
    }

    #[test]
    fn prices_by_full_and_bare_id() {
        let p = shipped();
        // 1M in + 1M out of gpt-4o-mini = 0.15 + 0.60.
        let c = p.cost("openai/gpt-4o-mini", Some(1_000_000), Some(1_000_000), None);
        assert!((c.expect("known") - 0.75).abs() < 1e-9);
        let c = p.cost("gpt-4o-mini", Some(1_000_000), Some(0), Some(1_000_000));
        assert!(
            (c.expect("known") - 0.075).abs() < 1e-9,
            "cached tokens at the cached price"
        );
        assert_eq!(
            p.cost(
                "meta-llama/llama-3.3-70b-instruct:free",
                Some(10),
                Some(10),
                None
            ),
            Some(0.0)
        );
        assert_eq!(p.cost("nobody/unknown", Some(10), Some(10), None), None);
        assert_eq!(p.cost("openai/gpt-4o", None, None, None), None);
    }
}
