//! Spend budgets, read at scrape time: `gatehouse_budget_remaining_usd` and
//! `gatehouse_budget_used_ratio`, by `scope` (`key`, `team`, `model`, `global`) and `name`.
//!
//! The figures live in the proxy's quota counters; `app` hands in a closure that reads them
//! (`Metrics::watch_budgets`), so this module depends on nothing above it. Which budgets appear
//! is decided there: teams, models and the gateway by name, a key only when its limits say
//! `label: true` (by its configured user). End users and key secrets are never labels; the set
//! is bounded by the config.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

pub const BUDGET_REMAINING_USD: &str = "gatehouse_budget_remaining_usd";
pub const BUDGET_USED_RATIO: &str = "gatehouse_budget_used_ratio";

/// One budget as the gauges show it.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetGauge {
    pub scope: &'static str,
    pub name: String,
    /// Dollars left this period (0 once spent).
    pub remaining_usd: f64,
    /// Spent over budget (1 or more once spent).
    pub used_ratio: f64,
}

/// Which figure of a budget a family shows.
type Figure = fn(&BudgetGauge) -> f64;

/// The labelled budgets now.
pub type BudgetsFn = Arc<dyn Fn() -> Vec<BudgetGauge> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    scope: &'static str,
    name: String,
}

/// The budgets' collector.
pub(super) type Budgets = super::scrape::Source<BudgetsFn>;

impl Collector for Budgets {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(budgets) = self.get().map(|f| f()) else {
            return Ok(());
        };
        if budgets.is_empty() {
            return Ok(());
        }
        let kind = ConstGauge::new(0.0f64).metric_type();
        let families: [(&str, &str, Figure); 2] = [
            (
                BUDGET_REMAINING_USD,
                "Dollars left of a spend budget this period (teams, models, the gateway, and keys marked `label: true`)",
                |b| b.remaining_usd,
            ),
            (
                BUDGET_USED_RATIO,
                "Share of a spend budget spent this period (1 or more once spent)",
                |b| b.used_ratio,
            ),
        ];
        for (name, help, value) in families {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for b in &budgets {
                let labels = BudgetLabels {
                    scope: b.scope,
                    name: b.name.clone(),
                };
                ConstGauge::new(value(b)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
