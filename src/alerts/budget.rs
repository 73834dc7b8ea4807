//! The budget rule: spend budgets at the warning share (default 80 %) and spent in full.
//!
//! Each budget gives up to two conditions, with their own subjects (`team red at 80%`,
//! `team red at 100%`), so the engine keeps them apart: the warning fires first, the critical
//! one fires when the budget is spent in full while the warning stays firing (de-duplicated,
//! not sent again), and both resolve when the period starts again and the spend reads 0.
//!
//! The figures are the quota counters of this replica (`quota::Quotas::budgets`), read at each
//! evaluation (in fleet mode they hold the other replicas' spend as of the last sync); they are
//! exact to the micro-dollar, and a budget's spend only grows within a period, so a condition
//! holds until the period ends.

use crate::config::AlertLevel;
use crate::quota::{dollars, BudgetUse};

use super::rules::{figure, Condition};

/// The conditions that hold for `budgets` with warning share `warn`.
pub fn conditions(budgets: &[BudgetUse], warn: f64) -> Vec<Condition> {
    let mut out = Vec::new();
    for b in budgets {
        let ratio = b.used_ratio();
        if ratio >= warn {
            out.push(condition(b, warn, None));
        }
        if ratio >= 1.0 {
            out.push(condition(b, 1.0, Some(AlertLevel::Critical)));
        }
    }
    out
}

fn condition(b: &BudgetUse, at: f64, level: Option<AlertLevel>) -> Condition {
    let pct = |r: f64| format!("{:.0}%", r * 100.0);
    let who = format!("{} {}", b.scope.as_str(), b.name);
    let end = crate::store::rfc3339(b.period_end_ms);
    let summary = format!(
        "{who} spent ${} of its ${} budget per {} ({}, threshold {}); the period ends {end}",
        dollars(b.spent_micros),
        dollars(b.budget_micros),
        b.period.as_str(),
        pct(b.used_ratio()),
        pct(at),
    );
    Condition {
        subject: format!("{who} at {}", pct(at)),
        summary,
        figures: vec![
            figure(
                "spent_usd",
                "Spent",
                b.spent_usd(),
                format!("${}", dollars(b.spent_micros)),
            ),
            figure(
                "budget_usd",
                "Budget",
                b.budget_usd(),
                format!("${} per {}", dollars(b.budget_micros), b.period.as_str()),
            ),
            figure("used_ratio", "Used", b.used_ratio(), pct(b.used_ratio())),
            figure("period_end_ms", "Period ends", b.period_end_ms as f64, end),
        ],
        level,
    }
}
