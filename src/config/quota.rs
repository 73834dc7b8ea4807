//! Quotas: rate limits, concurrency caps and spend budgets, attached to a gateway key
//! (`auth.keys[].limits`) or set in the `quotas:` section for end users, teams, models and the
//! whole gateway. Plain data; `quota` builds the counters from it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Config;

/// The limits of one scope. Every field is optional; an unset field is no limit.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests admitted per clock minute (UTC-aligned fixed window).
    pub requests_per_minute: Option<u64>,
    /// Requests admitted per UTC day.
    pub requests_per_day: Option<u64>,
    /// Tokens (prompt + completion) per clock minute: the prompt is estimated before forwarding
    /// and corrected with the answer's usage after.
    pub tokens_per_minute: Option<u64>,
    /// Tokens per UTC day, counted like `tokens_per_minute`.
    pub tokens_per_day: Option<u64>,
    /// Requests in flight at once (a stream counts until it ends or the client goes away).
    pub concurrent: Option<u64>,
    /// Spend in US dollars per `per`, from the cost each record carries. A request is admitted
    /// while the spend so far is below the budget.
    pub budget_usd: Option<f64>,
    /// The budget's period, in the report time zone (`report.schedule.time_zone`): `day`,
    /// `week` (Monday to Monday) or `month`. Required with `budget_usd`.
    pub per: Option<BudgetPeriod>,
    /// On a key's limits only: show the key in `/metrics` under its `user` (the
    /// `gatehouse_budget_*` gauges' `name` label). Default false: a key is never a metric label
    /// unless the operator says so (its secret never is).
    pub label: bool,
}

/// A budget period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    Day,
    Week,
    Month,
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Week => "week",
            BudgetPeriod::Month => "month",
        }
    }
}

impl LimitsConfig {
    /// No limit set at all (`label` is no limit).
    pub fn is_empty(&self) -> bool {
        LimitsConfig {
            label: false,
            ..self.clone()
        } == LimitsConfig::default()
    }
}

/// The `quotas:` section: limits beyond those attached to keys.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotasConfig {
    /// Limits for each end user (the user a request is recorded under).
    pub users: UserQuotasConfig,
    /// Limits per team name (the team of a gateway key), shared by all its keys.
    pub teams: BTreeMap<String, LimitsConfig>,
    /// Limits per model: an alias or an upstream model id, shared by everyone calling it.
    pub models: BTreeMap<String, LimitsConfig>,
    /// Limits on the whole gateway (every replica together, in fleet mode).
    pub global: LimitsConfig,
    /// Milliseconds between two syncs of every limit's counters (keys, end users, teams,
    /// models, the gateway) with the other replicas, in fleet mode (a PostgreSQL store; ignored
    /// with SQLite): the shorter, the smaller the fleet's overshoot of a limit (README, Quotas)
    /// and the more store round trips. 100..=60000, default 1000.
    pub sync_ms: u64,
}

impl Default for QuotasConfig {
    fn default() -> Self {
        QuotasConfig {
            users: UserQuotasConfig::default(),
            teams: BTreeMap::new(),
            models: BTreeMap::new(),
            global: LimitsConfig::default(),
            sync_ms: 1000,
        }
    }
}

/// The bounds of `quotas.sync_ms`: below 100 ms the store round trips cost more than the
/// overshoot they save; above a minute a minute window would pass between two syncs.
pub const SYNC_MS: std::ops::RangeInclusive<u64> = 100..=60_000;

/// Per-user limits.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserQuotasConfig {
    /// Limits every end user gets, each counted separately. Default none.
    pub default: LimitsConfig,
    /// End users whose counters are kept at once; the least recently seen are forgotten
    /// (their counts start again at 0). Default 100000.
    pub max_tracked: usize,
}

impl Default for UserQuotasConfig {
    fn default() -> Self {
        UserQuotasConfig {
            default: LimitsConfig::default(),
            max_tracked: 100_000,
        }
    }
}

/// The largest count a limit may name: counters keep 40 bits.
pub const MAX_LIMIT: u64 = (1 << 40) - 1;
/// The largest budget, in dollars (spend is counted in micro-dollars).
pub const MAX_BUDGET_USD: f64 = 1e9;

/// Every problem in the quota settings, each naming its field.
pub(super) fn check(c: &Config, p: &mut Vec<String>, w: &mut Vec<String>) {
    let mut labelled = std::collections::BTreeSet::new();
    for (i, k) in c.auth.keys.iter().enumerate() {
        check_limits(&format!("auth.keys[{i}].limits"), &k.limits, p);
        if k.limits.label && !labelled.insert(k.user.as_str()) {
            p.push(format!(
                "auth.keys[{i}].limits.label: another labelled key has user {:?}; a label names one key",
                k.user
            ));
        }
        if k.models.iter().any(|m| m.trim().is_empty()) {
            p.push(format!("auth.keys[{i}].models: names must not be empty"));
        }
    }
    let q = &c.quotas;
    check_limits("quotas.users.default", &q.users.default, p);
    let others = q
        .teams
        .iter()
        .map(|(t, l)| (format!("quotas.teams.{t}"), l));
    let others = others
        .chain(
            q.models
                .iter()
                .map(|(m, l)| (format!("quotas.models.{m}"), l)),
        )
        .chain([
            ("quotas.users.default".to_owned(), &q.users.default),
            ("quotas.global".to_owned(), &q.global),
        ]);
    for (field, _) in others.filter(|(_, l)| l.label) {
        p.push(format!(
            "{field}.label only applies to a key's limits (teams, models and the gateway are labelled by name; end users never are)"
        ));
    }
    if q.users.max_tracked == 0 {
        p.push("quotas.users.max_tracked must be greater than 0".into());
    }
    for (team, l) in &q.teams {
        check_limits(&format!("quotas.teams.{team}"), l, p);
        if !c.auth.keys.iter().any(|k| k.team.as_deref() == Some(team)) {
            w.push(format!(
                "quotas.teams.{team}: no key in auth.keys has this team, so the limits apply only to keys made with it through /api/keys"
            ));
        }
    }
    for (model, l) in &q.models {
        check_limits(&format!("quotas.models.{model}"), l, p);
    }
    check_limits("quotas.global", &q.global, p);
    if !SYNC_MS.contains(&q.sync_ms) {
        p.push(format!(
            "quotas.sync_ms must be between {} and {}",
            SYNC_MS.start(),
            SYNC_MS.end()
        ));
    }
}

/// Every problem in one scope's limits, each named `{field}.<name>` (also used for the limits of
/// keys created through the admin API).
pub fn check_limits(field: &str, l: &LimitsConfig, p: &mut Vec<String>) {
    for (name, v) in [
        ("requests_per_minute", l.requests_per_minute),
        ("requests_per_day", l.requests_per_day),
        ("tokens_per_minute", l.tokens_per_minute),
        ("tokens_per_day", l.tokens_per_day),
        ("concurrent", l.concurrent),
    ] {
        match v {
            Some(0) => p.push(format!("{field}.{name} must be greater than 0")),
            Some(v) if v > MAX_LIMIT => {
                p.push(format!("{field}.{name} must be at most {MAX_LIMIT}"));
            }
            _ => {}
        }
    }
    match (l.budget_usd, l.per) {
        (Some(b), _) if !(b.is_finite() && b > 0.0 && b <= MAX_BUDGET_USD) => p.push(format!(
            "{field}.budget_usd must be a number of dollars above 0 and at most {MAX_BUDGET_USD}"
        )),
        (Some(_), None) => p.push(format!(
            "{field}.per must be day, week or month when budget_usd is set"
        )),
        (None, Some(_)) => p.push(format!("{field}.per is set without budget_usd")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{validate, Config, KeyConfig};

    use super::*;

    #[test]
    fn bad_limits_are_each_named() {
        let mut c = Config::default();
        c.auth.keys.push(KeyConfig {
            key_env: Some("K".into()),
            user: "u".into(),
            limits: LimitsConfig {
                requests_per_minute: Some(0),
                budget_usd: Some(5.0),
                ..LimitsConfig::default()
            },
            models: vec![" ".into()],
            ..KeyConfig::default()
        });
        c.quotas.global.tokens_per_day = Some(MAX_LIMIT + 1);
        c.quotas.models.insert(
            "gpt".into(),
            LimitsConfig {
                budget_usd: Some(f64::NAN),
                per: Some(BudgetPeriod::Day),
                ..LimitsConfig::default()
            },
        );
        c.quotas.users.default.per = Some(BudgetPeriod::Week);
        c.quotas.users.max_tracked = 0;
        c.quotas.sync_ms = 99;
        let problems = validate(&c).expect_err("bad quotas").0;
        let want = [
            "auth.keys[0].limits.requests_per_minute must be greater than 0",
            "auth.keys[0].limits.per must be day, week or month when budget_usd is set",
            "auth.keys[0].models: names must not be empty",
            "quotas.users.default.per is set without budget_usd",
            "quotas.users.max_tracked must be greater than 0",
            "quotas.models.gpt.budget_usd must be a number of dollars above 0 and at most 1000000000",
            "quotas.global.tokens_per_day must be at most 1099511627775",
            "quotas.sync_ms must be between 100 and 60000",
        ];
        for w in want {
            assert!(problems.iter().any(|p| p == w), "{w}: {problems:#?}");
        }
        assert_eq!(problems.len(), want.len(), "{problems:#?}");
    }

    #[test]
    fn a_label_names_one_key_and_only_keys() {
        let labelled = |user: &str| KeyConfig {
            key_env: Some(format!("KEY_{user}")),
            user: user.into(),
            limits: LimitsConfig {
                label: true,
                ..LimitsConfig::default()
            },
            ..KeyConfig::default()
        };
        let mut c = Config::default();
        c.auth.keys = vec![labelled("ci"), labelled("batch"), labelled("ci")];
        c.quotas.teams.insert(
            "eng".into(),
            LimitsConfig {
                label: true,
                ..LimitsConfig::default()
            },
        );
        c.auth.keys[0].team = Some("eng".into());
        c.quotas.global.label = true;
        let problems = validate(&c).expect_err("bad labels").0;
        let want = [
            "auth.keys[2].limits.label: another labelled key has user \"ci\"; a label names one key",
            "quotas.teams.eng.label only applies to a key's limits (teams, models and the gateway are labelled by name; end users never are)",
            "quotas.global.label only applies to a key's limits (teams, models and the gateway are labelled by name; end users never are)",
        ];
        assert_eq!(problems, want);
        assert!(c.auth.keys[1].limits.is_empty(), "a label is no limit");
    }

    #[test]
    fn a_team_no_key_has_is_a_warning() {
        let mut c = Config::default();
        c.quotas.teams.insert(
            "ghosts".into(),
            LimitsConfig {
                concurrent: Some(1),
                ..LimitsConfig::default()
            },
        );
        let warnings = validate(&c).expect("valid");
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("quotas.teams.ghosts")),
            "{warnings:#?}"
        );
    }
}
