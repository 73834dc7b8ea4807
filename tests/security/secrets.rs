//! Secrets in the config: one set to nothing (empty or whitespace) is an error that names its
//! field, never "no secret"; a short admin token is refused on a public admin listener.
//!
//! These tests set environment variables, so each runs inside a `figment::Jail` (which
//! serialises them). They only set `GATEHOUSE_ADMIN__*`, `GATEHOUSE_DETECT__POLICIES` and
//! variables of their own, none of which a gateway started by a neighbouring test reads.

use std::path::Path;

use gatehouse::config::{load, validate};

/// The crate's policies by absolute path: the jail's working directory has none.
fn shipped_policies(jail: &mut figment::Jail) {
    jail.set_env(
        "GATEHOUSE_DETECT__POLICIES",
        concat!(env!("CARGO_MANIFEST_DIR"), "/policies"),
    );
}

/// The problems `validate` finds in the config loaded from `file` (or none) and the jail's
/// environment.
fn problems(file: Option<&str>) -> Vec<String> {
    let c = load(file.map(Path::new)).expect("the config loads");
    match validate(&c) {
        Ok(_) => Vec::new(),
        Err(p) => p.0,
    }
}

/// REGRESSION: `GATEHOUSE_ADMIN__TOKEN=` with the admin on 0.0.0.0 passed `gatehouse check`,
/// and the gateway started with the empty string as its token.
#[test]
fn an_empty_or_blank_admin_token_is_a_config_error() {
    for listen in ["0.0.0.0:8001", "127.0.0.1:8001"] {
        for value in ["", "   "] {
            figment::Jail::expect_with(|jail| {
                shipped_policies(jail);
                jail.set_env("GATEHOUSE_ADMIN__LISTEN", listen);
                jail.set_env("GATEHOUSE_ADMIN__TOKEN", value);
                let p = problems(None);
                assert!(
                    p.iter().any(|p| p == "admin.token is set but empty"),
                    "{listen} {value:?}: {p:#?}"
                );
                Ok(())
            });
        }
    }
}

#[test]
fn a_short_admin_token_is_refused_only_off_loopback() {
    figment::Jail::expect_with(|jail| {
        shipped_policies(jail);
        jail.set_env("GATEHOUSE_ADMIN__LISTEN", "0.0.0.0:8001");
        jail.set_env("GATEHOUSE_ADMIN__TOKEN", "hunter2");
        let p = problems(None);
        assert!(
            p.iter()
                .any(|p| p.starts_with("admin.token is shorter than 16 bytes")),
            "{p:#?}"
        );
        assert!(
            !p.iter().any(|p| p.contains("hunter2")),
            "never echoed: {p:#?}"
        );
        jail.set_env("GATEHOUSE_ADMIN__TOKEN", "9c1d6f0e4b7a2c58e3f19d0a6b4c7e21");
        assert_eq!(problems(None), Vec::<String>::new(), "a long token is fine");
        jail.set_env("GATEHOUSE_ADMIN__LISTEN", "127.0.0.1:8001");
        jail.set_env("GATEHOUSE_ADMIN__TOKEN", "hunter2");
        assert_eq!(
            problems(None),
            Vec::<String>::new(),
            "loopback takes any token"
        );
        Ok(())
    });
}

#[test]
fn a_short_admin_token_file_is_refused_off_loopback() {
    figment::Jail::expect_with(|jail| {
        shipped_policies(jail);
        jail.create_file("token", "short\n")?;
        jail.create_file("blank", " \n")?;
        jail.create_file(
            "g.yaml",
            "admin:\n  listen: 0.0.0.0:8001\n  token_file: token\n",
        )?;
        let p = problems(Some("g.yaml"));
        assert!(
            p.iter()
                .any(|p| p.starts_with("admin.token_file is shorter than 16 bytes")),
            "{p:#?}"
        );
        jail.create_file(
            "g.yaml",
            "admin:\n  listen: 127.0.0.1:8001\n  token_file: blank\n",
        )?;
        let p = problems(Some("g.yaml"));
        assert!(
            p.iter()
                .any(|p| p.starts_with("admin.token_file: secret file blank is empty")),
            "{p:#?}"
        );
        Ok(())
    });
}

/// Secrets named by a variable or a file — gateway keys, upstream keys, webhook signing
/// secrets, the store URL — are refused by field when set but blank.
#[test]
fn blank_secrets_named_by_variable_or_file_are_refused_by_field() {
    figment::Jail::expect_with(|jail| {
        shipped_policies(jail);
        jail.create_file("empty-url", "\n")?;
        jail.create_file(
            "g.yaml",
            "auth:\n  keys:\n    - key_env: SECRETS_TEST_GATEWAY_KEY\n      user: u1\n\
             upstreams:\n  openrouter:\n    base_url: https://openrouter.ai/api/v1\n    api_key_env: SECRETS_TEST_UPSTREAM_KEY\n\
             store:\n  url_file: empty-url\n\
             alerts:\n  channels:\n    webhooks:\n      - url: https://hooks.example/x\n        secret_env: SECRETS_TEST_WHSEC\n",
        )?;
        jail.set_env("SECRETS_TEST_GATEWAY_KEY", " ");
        jail.set_env("SECRETS_TEST_UPSTREAM_KEY", "");
        jail.set_env("SECRETS_TEST_WHSEC", "\t");
        jail.set_env("GATEHOUSE_STORE__URL", "");
        let p = problems(Some("g.yaml"));
        for field in [
            "store.url is set but empty",
            "store.url_file: secret file",
            "auth.keys[0].key_env: environment variable SECRETS_TEST_GATEWAY_KEY is set but empty",
            "upstreams.openrouter.api_key_env: environment variable SECRETS_TEST_UPSTREAM_KEY is set but empty",
            "alerts.channels.webhooks[0].secret_env: environment variable SECRETS_TEST_WHSEC is set but empty",
        ] {
            assert!(p.iter().any(|p| p.starts_with(field)), "{field}: {p:#?}");
        }
        Ok(())
    });
}
