//! Validation: every problem in a config, collected before failing, so one run shows them all.

use std::fmt;
use std::net::SocketAddr;

use super::{AuthMode, Config, UpstreamConfig, DIGEST_CHANNELS};

/// All problems found in a config.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<String>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "- {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Checks a whole config. Returns the warnings (things that run but deserve a word at start).
///
/// # Errors
/// Every problem found, listed.
pub fn validate(c: &Config) -> Result<Vec<String>, Problems> {
    let mut p = Vec::new();
    let mut warnings = Vec::new();
    let proxy = addr(&mut p, "proxy.listen", &c.proxy.listen);
    let admin = addr(&mut p, "admin.listen", &c.admin.listen);
    if let (Some(a), Some(b)) = (proxy, admin) {
        if a == b && a.port() != 0 {
            p.push(format!("proxy.listen and admin.listen are both {a}"));
        }
    }
    if let Some(tls) = &c.proxy.tls {
        for (field, path) in [("cert", &tls.cert), ("key", &tls.key)] {
            if !path.is_file() {
                p.push(format!(
                    "proxy.tls.{field}: {} is not a file",
                    path.display()
                ));
            }
        }
    }
    if c.proxy.max_body_bytes == 0 {
        p.push("proxy.max_body_bytes must be greater than 0".into());
    }
    for e in &c.proxy.passthrough {
        if let Err(e) = super::passthrough::parse_rule(e) {
            p.push(format!("proxy.passthrough: {e}"));
        }
    }
    for (field, v) in [
        ("proxy.max_connections", c.proxy.max_connections as u64),
        ("proxy.header_read_secs", c.proxy.header_read_secs),
        ("proxy.body_idle_secs", c.proxy.body_idle_secs),
        ("proxy.tls_handshake_secs", c.proxy.tls_handshake_secs),
        ("admin.max_connections", c.admin.max_connections as u64),
        ("admin.header_read_secs", c.admin.header_read_secs),
    ] {
        if v == 0 {
            p.push(format!("{field} must be greater than 0"));
        }
    }
    if c.proxy.record_queue == 0 {
        p.push("proxy.record_queue must be greater than 0".into());
    }
    check_auth(c, proxy, &mut p, &mut warnings);
    check_report(c, &mut p, &mut warnings);
    check_store(c, &mut p);
    if admin.is_some_and(|a| !a.ip().is_loopback())
        && c.admin.token.is_none()
        && c.admin.token_file.is_none()
    {
        p.push(format!(
            "admin.listen {} is reachable from off this machine: set admin.token (GATEHOUSE_ADMIN__TOKEN) or admin.token_file",
            c.admin.listen
        ));
    }
    super::secret::check(c, admin, &mut p);
    for (name, u) in &c.upstreams {
        check_upstream(c, name, u, &mut p);
    }
    check_models(c, &mut p);
    check_detect(c, &mut p);
    super::judge::check(c, &mut p, &mut warnings);
    super::traces::check(&c.traces, &mut p);
    check_alerts(c, &mut p, &mut warnings);
    super::quota::check(c, &mut p, &mut warnings);
    if p.is_empty() {
        Ok(warnings)
    } else {
        Err(Problems(p))
    }
}

fn addr(p: &mut Vec<String>, field: &str, value: &str) -> Option<SocketAddr> {
    match value.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.push(format!(
                "{field}: {value:?} is not an address like 127.0.0.1:8000"
            ));
            None
        }
    }
}

fn check_auth(c: &Config, proxy: Option<SocketAddr>, p: &mut Vec<String>, w: &mut Vec<String>) {
    for (i, k) in c.auth.keys.iter().enumerate() {
        if k.key_env.is_some() == k.key_file.is_some() {
            p.push(format!(
                "auth.keys[{i}]: set exactly one of key_env or key_file"
            ));
        }
        if k.user.trim().is_empty() {
            p.push(format!("auth.keys[{i}].user must not be empty"));
        }
    }
    if !(1..=3600).contains(&c.auth.sync_secs) {
        p.push(format!(
            "auth.sync_secs must be between 1 and 3600 seconds, got {}",
            c.auth.sync_secs
        ));
    }
    let public = proxy.is_some_and(|a| !a.ip().is_loopback());
    match c.auth.mode {
        AuthMode::Keys if c.auth.keys.is_empty() && public => p.push(format!(
            "proxy.listen {} is reachable from off this machine and auth.keys is empty: anyone could spend the upstream credit; add keys, or set auth.mode: open (or passthrough) explicitly",
            c.proxy.listen
        )),
        AuthMode::Open if public => w.push(format!(
            "auth.mode is open on {}: anyone who reaches it spends the upstream credit",
            c.proxy.listen
        )),
        _ => {}
    }
}

fn check_store(c: &Config, p: &mut Vec<String>) {
    let s = &c.store;
    if s.url.is_some() && s.url_file.is_some() {
        p.push("store: set one of url (GATEHOUSE_STORE__URL) and url_file, not both".into());
    }
    if let Some(url) = &s.url {
        let url = url.expose();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            // Never echo the URL: it holds a password.
            p.push("store.url must be a postgres:// or postgresql:// URL".into());
        }
    }
    if let Some(f) = &s.url_file {
        if !f.is_file() {
            p.push(format!("store.url_file: {} is not a file", f.display()));
        }
    }
    if s.batch == 0 {
        p.push("store.batch must be greater than 0".into());
    }
    if s.flush_ms == 0 || s.flush_ms > super::store::MAX_FLUSH_MS {
        p.push(format!(
            "store.flush_ms must be between 1 and {}",
            super::store::MAX_FLUSH_MS
        ));
    }
    if s.retry_buffer > super::store::MAX_RETRY_BUFFER {
        p.push(format!(
            "store.retry_buffer must be at most {}",
            super::store::MAX_RETRY_BUFFER
        ));
    }
    if s.max_size_mb > 0 && (s.url.is_some() || s.url_file.is_some()) {
        p.push("store.max_size_mb applies to SQLite only; unset it with store.url".into());
    }
}

fn check_upstream(c: &Config, name: &str, u: &UpstreamConfig, p: &mut Vec<String>) {
    match u.base_url.parse::<http::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {}
        _ => p.push(format!(
            "upstreams.{name}.base_url: {:?} is not an http(s) URL",
            u.base_url
        )),
    }
    let t = &u.timeouts;
    for (field, v) in [
        ("connect_secs", t.connect_secs),
        ("first_byte_secs", t.first_byte_secs),
        ("idle_secs", t.idle_secs),
        ("total_secs", t.total_secs),
    ] {
        if !(v.is_finite() && v > 0.0 && v < 1e7) {
            p.push(format!(
                "upstreams.{name}.timeouts.{field} must be a positive number of seconds"
            ));
        }
    }
    for f in &u.fallbacks {
        if f == name || !c.upstreams.contains_key(f) {
            p.push(format!(
                "upstreams.{name}.fallbacks: {f:?} is not another configured upstream"
            ));
        }
    }
    for h in u.headers.keys() {
        if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            p.push(format!(
                "upstreams.{name}.headers: {h:?} is not a valid header name"
            ));
        }
    }
}

fn check_models(c: &Config, p: &mut Vec<String>) {
    let known = |u: &str| c.upstreams.contains_key(u);
    for (alias, a) in &c.models.aliases {
        if a.model.trim().is_empty() {
            p.push(format!("models.aliases.{alias}.model must not be empty"));
        }
        if let Some(u) = a.upstream.as_deref().filter(|u| !known(u)) {
            p.push(format!(
                "models.aliases.{alias}.upstream: no upstream named {u:?}"
            ));
        }
    }
    for (i, r) in c.models.routes.iter().enumerate() {
        if r.prefix.is_empty() {
            p.push(format!("models.routes[{i}].prefix must not be empty"));
        }
        if !known(&r.upstream) {
            p.push(format!(
                "models.routes[{i}].upstream: no upstream named {:?}",
                r.upstream
            ));
        }
    }
    if let Some(u) = c.models.default_upstream.as_deref().filter(|u| !known(u)) {
        p.push(format!("models.default_upstream: no upstream named {u:?}"));
    }
}

fn check_report(c: &Config, p: &mut Vec<String>, warnings: &mut Vec<String>) {
    let r = &c.report;
    p.extend(r.schedule.problems());
    if r.schedule.utc_offset.is_some() {
        warnings.push(
            "report.schedule.utc_offset is deprecated: write the offset (or an IANA zone) as report.schedule.time_zone".into(),
        );
    }
    let d = &r.digest;
    if d.enabled && !c.alerts.enabled {
        p.push(
            "report.digest.enabled needs alerts.enabled: digests go through the alert channels"
                .into(),
        );
    }
    for ch in d
        .channels
        .iter()
        .filter(|ch| !DIGEST_CHANNELS.contains(&ch.as_str()))
    {
        p.push(format!(
            "report.digest.channels: {ch:?} is not one of {}",
            DIGEST_CHANNELS.join(", ")
        ));
    }
    if !(1..=20).contains(&d.top) {
        p.push("report.digest.top must be between 1 and 20".into());
    }
    if let Some(u) = d.admin_url.as_deref().filter(|u| !http_url(u)) {
        p.push(format!(
            "report.digest.admin_url: {u:?} is not an http(s) URL"
        ));
    }
    if !(r.timeout_secs.is_finite() && r.timeout_secs > 0.0) {
        p.push("report.timeout_secs must be greater than 0".into());
    }
    if !(r.auto_tune_max_step > 0.0 && r.auto_tune_max_step <= 1.0) {
        p.push("report.auto_tune_max_step must be in (0, 1]".into());
    }
    if r.model.as_deref().is_some_and(str::is_empty) {
        p.push("report.model must not be empty (leave it out for the rule engine)".into());
    }
    let ttft = r.rules.ttft_p95_secs;
    if !(ttft.is_finite() && ttft > 0.0) {
        p.push(format!(
            "report.rules.ttft_p95_secs must be a number of seconds greater than 0, not {ttft}"
        ));
    }
}

fn check_detect(c: &Config, p: &mut Vec<String>) {
    let d = &c.detect;
    let t = d.thresholds;
    let ordered = [t.low, t.medium, t.high, t.critical];
    if ordered.windows(2).any(|w| w[0] >= w[1] || w[0].is_nan())
        || !ordered.iter().all(|v| v.is_finite() && *v > 0.0)
    {
        p.push(
            "detect.thresholds must be positive and rising: low < medium < high < critical".into(),
        );
    }
    if d.segment_cache_mb > 65_536 {
        p.push(format!(
            "detect.segment_cache_mb {} is more than 65536 (64 GiB); 0 turns the cache off",
            d.segment_cache_mb
        ));
    }
    if !(400..=499).contains(&d.block_status) {
        p.push(format!(
            "detect.block_status {} must be a 4xx status",
            d.block_status
        ));
    }
    if d.enabled && !d.policies.is_dir() {
        p.push(format!(
            "detect.policies: {} is not a directory",
            d.policies.display()
        ));
    }
    const ENDPOINTS: [&str; 5] = [
        "chat_completions",
        "completions",
        "embeddings",
        "responses",
        "generate",
    ];
    for (i, o) in d.overrides.iter().enumerate() {
        for e in o
            .endpoints
            .iter()
            .filter(|e| !ENDPOINTS.contains(&e.as_str()))
        {
            p.push(format!(
                "detect.overrides[{i}].endpoints: unknown endpoint {e:?}"
            ));
        }
    }
    let b = &d.behaviour;
    if b.enabled && (b.window_secs == 0 || b.high_risk_limit == 0 || b.max_users == 0) {
        p.push(
            "detect.behaviour: window_secs, high_risk_limit and max_users must be greater than 0"
                .into(),
        );
    }
}

/// Channel names a rule may list.
pub const ALERT_CHANNELS: [&str; 5] = ["email", "slack", "teams", "webhook", "alertmanager"];

fn http_url(v: &str) -> bool {
    v.parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
}

fn check_alerts(c: &Config, p: &mut Vec<String>, w: &mut Vec<String>) {
    let a = &c.alerts;
    if a.eval_secs == 0 || a.eval_secs > 3600 {
        p.push("alerts.eval_secs must be between 1 and 3600".into());
    }
    let t = &a.thresholds;
    if !(t.security.is_finite() && t.security >= 1.0) {
        p.push("alerts.thresholds.security must be at least 1 threat".into());
    }
    if !(t.latency_secs.is_finite() && t.latency_secs > 0.0) {
        p.push("alerts.thresholds.latency_secs must be a positive number of seconds".into());
    }
    for (f, v) in [
        ("error_rate", t.error_rate),
        ("upstream_failure_ratio", t.upstream_failure_ratio),
    ] {
        if !(v > 0.0 && v <= 1.0) {
            p.push(format!("alerts.thresholds.{f} must be in (0, 1]"));
        }
    }
    if let Some(u) = a.dashboard_url.as_deref().filter(|u| !http_url(u)) {
        p.push(format!("alerts.dashboard_url: {u:?} is not an http(s) URL"));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, r) in a.rules.iter().enumerate() {
        if r.name.trim().is_empty() || !names.insert(r.name.as_str()) {
            p.push(format!("alerts.rules[{i}].name must be set and unique"));
        }
        if r.window_secs == 0 || r.window_secs > 86_400 {
            p.push(format!(
                "alerts.rules[{i}].window_secs must be between 1 and 86400"
            ));
        }
        if r.threshold.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            p.push(format!("alerts.rules[{i}].threshold must be positive"));
        }
        if r.kind == super::RuleKind::Budget && r.threshold.is_some_and(|v| v >= 1.0) {
            p.push(format!(
                "alerts.rules[{i}].threshold of a budget rule is the share of the budget that warns, below 1 (spending it all fires critical by itself)"
            ));
        }
        for ch in r
            .channels
            .iter()
            .filter(|ch| !ALERT_CHANNELS.contains(&ch.as_str()))
        {
            p.push(format!(
                "alerts.rules[{i}].channels: unknown channel {ch:?} (one of {})",
                ALERT_CHANNELS.join(", ")
            ));
        }
    }
    let ch = &a.channels;
    if ch.email.host.is_some() {
        if ch.email.to.is_empty() {
            p.push("alerts.channels.email.to must list at least one recipient".into());
        }
        for addr in std::iter::once(&ch.email.from).chain(&ch.email.to) {
            if addr.parse::<lettre::message::Mailbox>().is_err() {
                p.push(format!(
                    "alerts.channels.email: {addr:?} is not an e-mail address"
                ));
            }
        }
        if !ch.email.starttls {
            w.push(
                "alerts.channels.email.starttls is off: alert mail is sent in plain text".into(),
            );
        }
    }
    for (i, h) in ch.webhooks.iter().enumerate() {
        if !http_url(&h.url) {
            p.push(format!(
                "alerts.channels.webhooks[{i}].url is not an http(s) URL"
            ));
        }
        if h.secret_env.is_none() && h.secret_file.is_none() {
            p.push(format!(
                "alerts.channels.webhooks[{i}]: set secret_env or secret_file (whsec_...)"
            ));
        }
    }
    if let Some(u) = ch.alertmanager.url.as_deref().filter(|u| !http_url(u)) {
        p.push(format!(
            "alerts.channels.alertmanager.url: {u:?} is not an http(s) URL"
        ));
    }
    let d = &a.delivery;
    if d.timeout_secs == 0 || d.retries > 20 {
        p.push("alerts.delivery: timeout_secs must be > 0 and retries at most 20".into());
    }
}

/// The field each problem names (the text before its first `:` or space), for tests that check
/// every problem of a section is reported, in order.
#[cfg(test)]
pub(crate) fn problem_fields(problems: &[String]) -> Vec<&str> {
    problems
        .iter()
        .map(|p| p.split([':', ' ']).next().unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn default_config_validates() {
        validate(&Config::default()).expect("defaults must validate");
    }

    #[test]
    fn the_key_sync_interval_is_bounded() {
        for (secs, ok) in [(0, false), (1, true), (3600, true), (3601, false)] {
            let mut c = Config::default();
            c.auth.sync_secs = secs;
            match validate(&c) {
                Ok(_) => assert!(ok, "{secs} should be refused"),
                Err(p) => {
                    assert!(!ok, "{secs} should pass: {p:?}");
                    assert_eq!(
                        p.0,
                        [format!(
                            "auth.sync_secs must be between 1 and 3600 seconds, got {secs}"
                        )]
                    );
                }
            }
        }
    }

    #[test]
    fn every_problem_is_reported() {
        let mut c = Config::default();
        c.proxy.listen = "0.0.0.0:8000".into();
        c.admin.listen = "nonsense".into();
        c.models.default_upstream = Some("nowhere".into());
        c.upstreams.get_mut("openrouter").expect("default").base_url = "ftp://x".into();
        let problems = validate(&c).expect_err("bad config").0;
        assert_eq!(problems.len(), 4, "{problems:#?}");
    }

    #[test]
    fn open_auth_on_public_address_is_a_warning() {
        let mut c = Config::default();
        c.proxy.listen = "0.0.0.0:8000".into();
        c.auth.mode = AuthMode::Open;
        let warnings = validate(&c).expect("open is allowed when explicit");
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn alert_problems_are_reported() {
        let mut c = Config::default();
        c.alerts.rules[1].name = c.alerts.rules[0].name.clone();
        c.alerts.rules[2].channels = vec!["pager".into()];
        c.alerts.channels.email.host = Some("smtp.example.com".into());
        c.alerts
            .channels
            .webhooks
            .push(crate::config::WebhookConfig {
                url: "ftp://x".into(),
                ..Default::default()
            });
        let problems = validate(&c).expect_err("bad alerts").0;
        assert_eq!(problems.len(), 5, "{problems:#?}");
    }

    #[test]
    fn a_budget_rule_warns_below_the_whole_budget() {
        let mut c = Config::default();
        let i = c
            .alerts
            .rules
            .iter()
            .position(|r| r.kind == super::super::RuleKind::Budget)
            .expect("a default budget rule");
        c.alerts.rules[i].threshold = Some(0.9);
        assert!(validate(&c).is_ok(), "90% warns");
        c.alerts.rules[i].threshold = Some(1.0);
        let problems = validate(&c).expect_err("100% is the critical tier").0;
        assert_eq!(
            problems,
            [format!("alerts.rules[{i}].threshold of a budget rule is the share of the budget that warns, below 1 (spending it all fires critical by itself)")]
        );
    }

    #[test]
    fn report_problems_name_their_field() {
        let mut c = Config::default();
        c.report.schedule.time_zone = "Europe/Atlantis".into();
        c.report.digest.enabled = true;
        c.report.digest.channels = vec!["slack".into(), "alertmanager".into()];
        c.report.digest.top = 0;
        c.report.rules.ttft_p95_secs = f64::NAN;
        c.alerts.enabled = false;
        let problems = validate(&c).expect_err("bad report section").0;
        assert_eq!(
            problem_fields(&problems),
            [
                "report.schedule.time_zone",
                "report.digest.enabled",
                "report.digest.channels",
                "report.digest.top",
                "report.rules.ttft_p95_secs"
            ],
            "{problems:#?}"
        );
        assert!(problems[0].contains("Europe/Atlantis"), "{problems:#?}");
    }

    #[test]
    fn an_oversized_segment_cache_is_refused_and_zero_is_off() {
        let mut c = Config::default();
        c.detect.segment_cache_mb = 70_000;
        let problems = validate(&c).expect_err("too big").0;
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("detect.segment_cache_mb 70000")),
            "{problems:#?}"
        );
        c.detect.segment_cache_mb = 0;
        assert!(validate(&c).is_ok());
        assert_eq!(
            crate::proxy::detect_settings(&c.detect).segment_cache_bytes,
            0
        );
        c.detect.segment_cache_mb = 16;
        assert_eq!(
            crate::proxy::detect_settings(&c.detect).segment_cache_bytes,
            16 << 20
        );
    }

    #[test]
    fn public_admin_needs_a_long_token() {
        let mut c = Config::default();
        c.admin.listen = "0.0.0.0:8001".into();
        assert!(validate(&c).is_err());
        c.admin.token = Some(Secret::new("t"));
        let problems = validate(&c).expect_err("a 1-byte token on 0.0.0.0").0;
        assert!(
            problems[0].starts_with("admin.token is shorter than 16 bytes"),
            "{problems:#?}"
        );
        c.admin.token = Some(Secret::new("0123456789abcdef"));
        assert!(validate(&c).is_ok());
        c.admin.listen = "127.0.0.1:8001".into();
        c.admin.token = Some(Secret::new("t"));
        assert!(validate(&c).is_ok(), "a short token is allowed on loopback");
    }

    /// REGRESSION: `GATEHOUSE_ADMIN__TOKEN=` validated and the empty string signed in.
    #[test]
    fn blank_secrets_are_refused_by_name_wherever_the_listener_is() {
        for (listen, blank) in [("0.0.0.0:8001", ""), ("127.0.0.1:8001", "   \t")] {
            let mut c = Config::default();
            c.admin.listen = listen.into();
            c.admin.token = Some(Secret::new(blank));
            c.store.url = Some(Secret::new(" "));
            let problems = validate(&c).expect_err("blank secrets").0;
            for field in ["admin.token is set but empty", "store.url is set but empty"] {
                assert!(
                    problems.iter().any(|p| p == field),
                    "{field}: {problems:#?}"
                );
            }
        }
    }

    #[test]
    fn blank_secret_files_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").expect("write");
        let mut c = Config::default();
        c.admin.token_file = Some(empty.clone());
        c.auth.keys.push(crate::config::KeyConfig {
            key_file: Some(empty.clone()),
            user: "u".into(),
            ..Default::default()
        });
        let problems = validate(&c).expect_err("empty files").0;
        for field in [
            "admin.token_file: secret file",
            "auth.keys[0].key_file: secret file",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(field)),
                "{field}: {problems:#?}"
            );
        }
    }
}
