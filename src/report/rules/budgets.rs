//! Cost rules that refer to spend budgets (`Figures::budgets`, the live counters when the report
//! is made): a budget nearly or wholly spent, one on course to run out before its period ends,
//! and spend with no budget at all. Each action names the config key (or API call) that sets
//! the budget, and the cheapest priced model callers could move to.

use super::super::figures::{BudgetFigures, Figures};
use super::super::render::capital;
use super::super::{Group, Priority, Recommendation};
use super::{pct, rec};
use crate::quota::{dollars, micros, ScopeKind};

/// Share of a budget spent from which it is named (the budget alert's warning level).
const NEARLY_SPENT: f64 = 0.8;
/// Headroom the suggested first budget leaves over the period's spend.
const HEADROOM: f64 = 1.5;

/// Every budget rule, in the order above.
pub(super) fn recommend(f: &Figures) -> Vec<Recommendation> {
    let mut out: Vec<Recommendation> = f.budgets.iter().filter_map(|b| pressure(f, b)).collect();
    out.extend(f.budgets.iter().filter_map(|b| overrun(f, b)));
    out.extend(unbudgeted(f));
    out
}

/// A budget with `NEARLY_SPENT` or more used: high once spent (its requests are refused).
fn pressure(f: &Figures, b: &BudgetFigures) -> Option<Recommendation> {
    if b.used_ratio < NEARLY_SPENT {
        return None;
    }
    let who = who(b);
    let (priority, title) = if b.used_ratio >= 1.0 {
        (
            Priority::High,
            format!(
                "The budget of {who} is spent: its requests are refused until {}",
                b.period_end
            ),
        )
    } else {
        (
            Priority::Medium,
            capital(&format!(
                "{who} has spent {} of its budget",
                pct(b.used_ratio)
            )),
        )
    };
    Some(rec(
        Group::Cost,
        priority,
        title,
        vec![spent(b)],
        format!(
            "if the spend is expected, raise {}; if not, {}",
            setting(b),
            cheaper(f)
        ),
    ))
}

/// A budget under `NEARLY_SPENT` whose spend so far, kept up, passes it before the period ends.
fn overrun(f: &Figures, b: &BudgetFigures) -> Option<Recommendation> {
    let projected = b.projected_usd?;
    if b.used_ratio >= NEARLY_SPENT || projected <= b.budget_usd {
        return None;
    }
    let who = who(b);
    Some(rec(
        Group::Cost,
        Priority::Medium,
        capital(&format!(
            "{who} is on course to run out of budget before the {} ends",
            b.per
        )),
        vec![
            spent(b),
            format!(
                "at the rate so far ${} by {} ({} of the budget)",
                usd(projected),
                b.period_end,
                pct(projected / b.budget_usd)
            ),
        ],
        format!(
            "raise {} before its requests are refused, or {}",
            setting(b),
            cheaper(f)
        ),
    ))
}

/// Money spent in the period with no spend budget set anywhere.
fn unbudgeted(f: &Figures) -> Option<Recommendation> {
    if f.any_budget || f.total_cost <= 0.0 {
        return None;
    }
    let per = match f.period {
        super::super::Period::Daily => "day",
        super::super::Period::Weekly => "week",
        super::super::Period::Monthly => "month",
    };
    let suggested = nice_ceiling(f.total_cost * HEADROOM);
    Some(rec(
        Group::Cost,
        Priority::Low,
        "No spend budget caps the gateway".to_owned(),
        vec![format!(
            "${:.2} spent over {} requests this {per}; no key, end user, team, model or gateway \
             has a budget, so a runaway caller is stopped by nothing",
            f.total_cost, f.requests
        )],
        format!(
            "set `quotas.global: {{budget_usd: {suggested}, per: {per}}}` (the period's spend \
             with {:.0}% headroom), and budgets per team or key (`quotas.teams.<name>`, a key's \
             `limits`) for the heaviest callers; the budget alert warns at 80% and 100%",
            (HEADROOM - 1.0) * 100.0
        ),
    ))
}

/// Dollars as budgets and alerts write them (`5.00`, `0.0012`).
pub(in crate::report) fn usd(v: f64) -> String {
    dollars(micros(v))
}

fn who(b: &BudgetFigures) -> String {
    match b.scope {
        ScopeKind::Global => "the gateway".to_owned(),
        ScopeKind::Key => format!("the key of {}", b.name),
        ScopeKind::User => format!("end user {}", b.name),
        ScopeKind::Team | ScopeKind::Model => format!("{} {}", b.scope.as_str(), b.name),
    }
}

fn spent(b: &BudgetFigures) -> String {
    format!(
        "${} spent of ${} per {} ({}); the period ends {}",
        usd(b.spent_usd),
        usd(b.budget_usd),
        b.per,
        pct(b.used_ratio),
        b.period_end
    )
}

/// The setting that holds `b`'s budget.
fn setting(b: &BudgetFigures) -> String {
    match b.scope {
        ScopeKind::Global => "`quotas.global.budget_usd`".to_owned(),
        ScopeKind::Team => format!("`quotas.teams.{}.budget_usd`", b.name),
        ScopeKind::Model => format!("`quotas.models.{}.budget_usd`", b.name),
        ScopeKind::User => {
            "`quotas.users.default.budget_usd` (it applies to every end user)".to_owned()
        }
        ScopeKind::Key => {
            "the key's `limits.budget_usd` (`PATCH /api/keys/{id}` for a key made through the \
              API, `auth.keys[].limits` for a configured one)"
                .to_owned()
        }
    }
}

/// Where callers could go for less: the priced model with the lowest cost per request.
fn cheaper(f: &Figures) -> String {
    let cheapest = f
        .models
        .iter()
        .filter(|m| m.requests > m.unpriced_requests && m.cost_per_request > 0.0)
        .min_by(|a, b| a.cost_per_request.total_cmp(&b.cost_per_request));
    match cheapest {
        Some(m) => format!(
            "point its callers' alias at {} (${:.4} per request this period): \
             `models.aliases.<name>: {{model: {}}}`",
            m.model, m.cost_per_request, m.model
        ),
        None => "find the caller behind the spend in the Top users table".to_owned(),
    }
}

/// The smallest of 1, 2 or 5 times a power of ten at or above `x` (dollars).
fn nice_ceiling(x: f64) -> f64 {
    if x <= 0.01 {
        return 0.01;
    }
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|v| *v >= x - 1e-9)
        .unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::rules::tests::quiet;

    fn budget(
        scope: ScopeKind,
        name: &str,
        spent: f64,
        of: f64,
        projected: Option<f64>,
    ) -> BudgetFigures {
        BudgetFigures {
            scope,
            name: name.into(),
            spent_usd: spent,
            budget_usd: of,
            per: "day".into(),
            used_ratio: spent / of,
            projected_usd: projected,
            period_end: "2026-12-07T00:00:00Z".into(),
        }
    }

    fn with(budgets: Vec<BudgetFigures>) -> Figures {
        Figures {
            any_budget: !budgets.is_empty(),
            budgets,
            ..quiet()
        }
    }

    #[test]
    fn a_budget_is_named_from_80_percent_and_high_once_spent() {
        let f = with(vec![
            budget(ScopeKind::Team, "red", 5.0, 5.0, None),
            budget(ScopeKind::Key, "alice", 4.0, 5.0, None),
            budget(ScopeKind::Model, "gpt-4o", 3.9, 5.0, None),
        ]);
        let r = recommend(&f);
        assert_eq!(r.len(), 2, "{r:#?}");
        assert_eq!(r[0].priority, Priority::High);
        assert_eq!(r[0].group, Group::Cost);
        assert!(r[0].title.contains("team red is spent"), "{}", r[0].title);
        assert!(
            r[0].action.contains("`quotas.teams.red.budget_usd`"),
            "{}",
            r[0].action
        );
        assert_eq!(
            r[0].evidence,
            ["$5.00 spent of $5.00 per day (100.0%); the period ends 2026-12-07T00:00:00Z"]
        );
        assert_eq!(r[1].priority, Priority::Medium);
        assert_eq!(r[1].title, "The key of alice has spent 80.0% of its budget");
        assert!(
            r[1].action.contains("PATCH /api/keys/{id}"),
            "{}",
            r[1].action
        );
    }

    #[test]
    fn a_budget_on_course_to_run_out_is_named_before_it_does() {
        let f = with(vec![
            budget(ScopeKind::Global, "global", 2.0, 5.0, Some(6.4)),
            budget(ScopeKind::Team, "blue", 2.0, 5.0, Some(4.9)),
            budget(ScopeKind::Team, "green", 1.0, 5.0, None),
        ]);
        let r = recommend(&f);
        assert_eq!(r.len(), 1, "{r:#?}");
        assert_eq!(
            r[0].title,
            "The gateway is on course to run out of budget before the day ends"
        );
        assert_eq!(
            r[0].evidence[1],
            "at the rate so far $6.40 by 2026-12-07T00:00:00Z (128.0% of the budget)"
        );
        assert!(r[0].action.contains("`quotas.global.budget_usd`"));
    }

    #[test]
    fn spend_without_any_budget_gets_a_suggested_one() {
        let mut f = with(vec![]);
        f.total_cost = 10.0;
        let r = recommend(&f);
        assert_eq!(r.len(), 1, "{r:#?}");
        assert_eq!(r[0].priority, Priority::Low);
        assert!(
            r[0].action
                .contains("`quotas.global: {budget_usd: 20, per: week}`"),
            "a weekly report's $10 with headroom: {}",
            r[0].action
        );
        f.any_budget = true;
        assert!(
            recommend(&f).is_empty(),
            "a budget set anywhere (here: below 50% used)"
        );
        f.any_budget = false;
        f.total_cost = 0.0;
        assert!(recommend(&f).is_empty(), "nothing spent");
    }

    #[test]
    fn the_cheapest_priced_model_is_suggested() {
        let mut f = with(vec![budget(ScopeKind::Team, "red", 4.5, 5.0, None)]);
        f.models = vec![
            crate::report::rules::tests::model("big", 100, 4.0, 1.0, None),
            crate::report::rules::tests::model("small", 100, 0.1, 1.0, None),
        ];
        let r = recommend(&f);
        assert!(
            r[0].action.contains("alias at small ($0.0010 per request"),
            "{}",
            r[0].action
        );
    }

    #[test]
    fn suggested_budgets_are_round() {
        for (x, want) in [
            (0.003, 0.01),
            (1.2, 2.0),
            (15.0, 20.0),
            (20.0, 20.0),
            (51.0, 100.0),
        ] {
            assert!(
                (nice_ceiling(x) - want).abs() < 1e-9,
                "{x}: {}",
                nice_ceiling(x)
            );
        }
    }
}
