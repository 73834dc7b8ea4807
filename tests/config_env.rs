//! Configuration from files and the environment: the shipped file parses, env overrides win,
//! fleet settings come from env and foreign `GATEHOUSE_*` variables are left alone, a bad file
//! is refused with all its problems.
//!
//! Its own test binary, so its own process: these tests set environment variables
//! (`figment::Jail`, which serialises them with one another), and in a shared process a
//! gateway test that loads its config at the same moment would read them (it once started on
//! this file's PostgreSQL URL). Every test here runs inside a jail.
#![allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error

use std::collections::BTreeMap;
use std::path::Path;

use gatehouse::config::{load, validate};
use gatehouse::llm::prices::Prices;

/// The crate's policies by absolute path: a jail's working directory is a temp dir, where the
/// configs' relative `policies` would not be found.
fn shipped_policies(jail: &mut figment::Jail) {
    jail.set_env(
        "GATEHOUSE_DETECT__POLICIES",
        concat!(env!("CARGO_MANIFEST_DIR"), "/policies"),
    );
}

#[test]
fn shipped_gateway_yaml_parses_and_validates() {
    // In a jail too: the jail's lock keeps the other tests' variables out while this one reads
    // the environment.
    figment::Jail::expect_with(|jail| {
        shipped_policies(jail);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.yaml");
        let c = load(Some(&path)).expect("gateway.yaml parses");
        validate(&c).expect("gateway.yaml validates");
        assert_eq!(c.proxy.listen, "127.0.0.1:8000");
        assert_eq!(c.admin.listen, "127.0.0.1:8001");
        assert_eq!(
            c.upstreams["openrouter"].base_url,
            "https://openrouter.ai/api/v1"
        );
        assert_eq!(
            c.upstreams["openrouter"].key_env("openrouter"),
            "OPENROUTER_API_KEY"
        );
        assert!(c.models.aliases["qwendeepseek"].model.contains("qwen"));
        Ok(())
    });
}

/// Every model a shipped configuration names has a price, so none of them shows $0: the
/// aliases of `gateway.yaml` and of the deployment manifests, and the `MODEL_NAMES` example in
/// `gateway.yaml`'s comments.
#[test]
fn every_shipped_model_has_a_price() {
    figment::Jail::expect_with(|jail| {
        shipped_policies(jail);
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let c = load(Some(&root.join("gateway.yaml"))).expect("gateway.yaml parses");
        let prices = Prices::load(&root.join(&c.prices)).expect("the shipped price table loads");
        let mut models: Vec<(String, String)> = c
            .models
            .aliases
            .iter()
            .map(|(a, m)| (format!("gateway.yaml alias {a}"), m.model.clone()))
            .collect();
        let text = std::fs::read_to_string(root.join("gateway.yaml")).expect("gateway.yaml");
        let example = text
            .split("MODEL_NAMES='")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .expect("gateway.yaml shows a MODEL_NAMES='{...}' example");
        let example: BTreeMap<String, String> =
            serde_json::from_str(example).expect("the MODEL_NAMES example is a JSON object");
        models.extend(
            example
                .into_iter()
                .map(|(a, m)| (format!("MODEL_NAMES example {a}"), m)),
        );
        for file in [
            "deploy/helm/gatehouse/values.yaml",
            "deploy/k8s/edge/configmap.yaml",
            "deploy/k8s/sidecar/configmap.yaml",
        ] {
            let text = std::fs::read_to_string(root.join(file)).expect(file);
            let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect(file);
            let mut found = Vec::new();
            alias_models(&doc, &mut found);
            assert!(
                !found.is_empty(),
                "{file}: no alias found; is the walk wrong?"
            );
            models.extend(found.into_iter().map(|m| (format!("{file} alias"), m)));
        }
        let unpriced: Vec<&(String, String)> = models
            .iter()
            .filter(|(_, m)| prices.get(m).is_none())
            .collect();
        assert!(
            unpriced.is_empty(),
            "shipped models without a price in policies/prices.yaml (their cost would show as \
             unknown): {unpriced:?}"
        );
        Ok(())
    });
}

/// The `model` of every entry under an `aliases` key anywhere in `v`, also inside string
/// values that are YAML documents themselves (a ConfigMap's `gateway.yaml: |`).
fn alias_models(v: &serde_yaml::Value, out: &mut Vec<String>) {
    use serde_yaml::Value;
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    (Some("aliases"), Value::Mapping(aliases)) => out.extend(
                        aliases
                            .values()
                            .filter_map(|a| a.get("model").and_then(Value::as_str))
                            .map(str::to_owned),
                    ),
                    _ => alias_models(v, out),
                }
            }
        }
        Value::Sequence(s) => s.iter().for_each(|v| alias_models(v, out)),
        Value::String(s) => {
            if let Ok(inner @ Value::Mapping(_)) = serde_yaml::from_str::<Value>(s) {
                alias_models(&inner, out);
            }
        }
        _ => {}
    }
}

#[test]
fn env_overrides_win_over_the_file() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "g.yaml",
            "proxy:\n  listen: 127.0.0.1:7000\nstore:\n  path: a.db\n",
        )?;
        jail.set_env("GATEHOUSE_PROXY__LISTEN", "0.0.0.0:8000");
        jail.set_env("GATEHOUSE_ADMIN__LISTEN", "127.0.0.1:9001");
        jail.set_env(
            "GATEHOUSE_UPSTREAMS__OPENROUTER__BASE_URL",
            "http://127.0.0.1:1/v1",
        );
        jail.set_env("GATEHOUSE_STORE__PATH", "/tmp/other.db");
        jail.set_env("GATEHOUSE_AUTH__MODE", "open");
        jail.set_env("MODEL_NAMES", "fast=openai/gpt-4o-mini");
        shipped_policies(jail);
        let c = load(Some(Path::new("g.yaml"))).expect("loads");
        assert_eq!(c.proxy.listen, "0.0.0.0:8000");
        assert_eq!(c.admin.listen, "127.0.0.1:9001");
        assert_eq!(c.upstreams["openrouter"].base_url, "http://127.0.0.1:1/v1");
        assert_eq!(c.store.path, Path::new("/tmp/other.db"));
        assert_eq!(c.models.aliases["fast"].model, "openai/gpt-4o-mini");
        validate(&c).expect("open auth on a public address validates, with a warning");
        Ok(())
    });
}

#[test]
fn fleet_settings_come_from_env_and_foreign_gatehouse_variables_are_left_alone() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("GATEHOUSE_STORE__URL", "postgres://gh:pw@db:5432/gatehouse");
        jail.set_env("GATEHOUSE_INSTANCE", "gatehouse-7f9c-abcde");
        // Read by logging, and what Kubernetes injects for a Service named `gatehouse`.
        jail.set_env("GATEHOUSE_LOG_FORMAT", "json");
        jail.set_env("GATEHOUSE_PORT", "tcp://10.0.0.7:8000");
        jail.set_env("GATEHOUSE_SERVICE_HOST", "10.0.0.7");
        jail.set_env("GATEHOUSE_PORT_8000_TCP_ADDR", "10.0.0.7");
        shipped_policies(jail);
        let c = load(None).expect("loads");
        assert_eq!(
            c.store.url.as_ref().map(|u| u.expose()),
            Some("postgres://gh:pw@db:5432/gatehouse")
        );
        assert_eq!(c.instance_name(), "gatehouse-7f9c-abcde");
        validate(&c).expect("validates");
        // A misspelt key inside a section is still refused, and a bad URL is named, not echoed.
        jail.set_env("GATEHOUSE_STORE__URLL", "x");
        assert!(load(None).is_err(), "unknown store key");
        jail.set_env("GATEHOUSE_STORE__URLL", "");
        Ok(())
    });
    figment::Jail::expect_with(|jail| {
        jail.set_env("GATEHOUSE_STORE__URL", "mysql://root:hunter2@db/x");
        shipped_policies(jail);
        let c = load(None).expect("loads");
        let problems = validate(&c).expect_err("not a PostgreSQL URL").to_string();
        assert!(
            problems.contains("store.url must be a postgres://"),
            "{problems}"
        );
        assert!(
            !problems.contains("hunter2"),
            "the password never appears: {problems}"
        );
        Ok(())
    });
}

#[test]
fn a_bad_file_is_refused_with_every_problem() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "bad.yaml",
            "proxy:\n  listen: nowhere\nadmin:\n  listen: 0.0.0.0:8001\nmodels:\n  default_upstream: ghost\n  aliases:\n    a:\n      model: ''\n",
        )?;
        shipped_policies(jail);
        let c = load(Some(Path::new("bad.yaml"))).expect("parses");
        let problems = validate(&c).expect_err("refused").0;
        assert_eq!(problems.len(), 4, "{problems:#?}");
        jail.create_file("typo.yaml", "proxy:\n  lisen: 127.0.0.1:1\n")?;
        let err = load(Some(Path::new("typo.yaml"))).expect_err("unknown field");
        assert!(err.to_string().contains("lisen"), "{err}");
        assert!(
            load(Some(Path::new("missing.yaml"))).is_err(),
            "a missing --config is an error"
        );
        Ok(())
    });
}

/// Quotas come from the file and from `GATEHOUSE_QUOTAS__…`; a bad figure from either is
/// refused naming its field.
#[test]
fn quotas_come_from_the_file_and_the_environment() {
    figment::Jail::expect_with(|jail| {
        shipped_policies(jail);
        jail.create_file(
            "g.yaml",
            "auth:\n  keys:\n    - key_env: K\n      user: alice\n      models: [qwendeepseek]\n      limits:\n        requests_per_minute: 60\n        budget_usd: 5\n        per: day\nquotas:\n  teams:\n    research:\n      tokens_per_day: 1000000\n",
        )?;
        jail.set_env("GATEHOUSE_QUOTAS__GLOBAL__CONCURRENT", "64");
        jail.set_env("GATEHOUSE_QUOTAS__USERS__DEFAULT__REQUESTS_PER_DAY", "500");
        let c = load(Some(Path::new("g.yaml"))).expect("loads");
        let key = &c.auth.keys[0];
        assert_eq!(key.limits.requests_per_minute, Some(60));
        assert_eq!(key.limits.budget_usd, Some(5.0));
        assert_eq!(key.limits.per, Some(gatehouse::config::BudgetPeriod::Day));
        assert_eq!(key.models, ["qwendeepseek"]);
        assert_eq!(c.quotas.teams["research"].tokens_per_day, Some(1_000_000));
        assert_eq!(c.quotas.global.concurrent, Some(64));
        assert_eq!(c.quotas.users.default.requests_per_day, Some(500));
        jail.set_env("GATEHOUSE_QUOTAS__GLOBAL__CONCURRENT", "0");
        let c = load(Some(Path::new("g.yaml"))).expect("loads");
        let problems = validate(&c).expect_err("0 in flight").0;
        assert!(
            problems
                .iter()
                .any(|p| p == "quotas.global.concurrent must be greater than 0"),
            "{problems:#?}"
        );
        jail.set_env("GATEHOUSE_QUOTAS__GLOBAL__PER", "fortnight");
        let err = load(Some(Path::new("g.yaml"))).expect_err("not a period");
        assert!(err.to_string().contains("fortnight"), "{err}");
        Ok(())
    });
}
