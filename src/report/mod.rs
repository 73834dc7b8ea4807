//! The AI analysis agent: daily, weekly and monthly reports with recommendations an operator can
//! act on.
//!
//! A report is built in four steps: **gather** the period's figures from `analytics` and `store`
//! (`figures`; numbers and names only, never prompt text or secrets) → **advise**: ask the
//! configured model for recommendations in four groups, validate the answer against the schema
//! (`advice`), retry once, and fall back to the deterministic rule engine (`rules`) when there is
//! no model, the upstream fails or both answers are invalid → **render** Markdown and HTML
//! (`render`) → **store** (`store::insert_report`). Every report names the engine that wrote it.
//!
//! A report covers one calendar period in the configured time zone (`period`): by default the
//! previous local day, ISO week or month, or the one containing a given date.
//!
//! Threshold optimisation (`replay`) replays stored risk scores under proposed thresholds, and
//! `Reporter::set_thresholds` applies a change to the live runtime through a closure `app`
//! passes in (this module knows neither the proxy nor the admin API). Scheduling (`schedule`) is a
//! pure "next firing" function plus a loop `app` spawns.
//!
//! Trade-offs: the LLM call reuses the routed upstream (keys, headers, retries) but not the
//! proxy's request path, so it is never scanned or recorded as user traffic. Figures read from
//! hourly rollups (usage, latency, cost) count whole UTC hours, so in a zone with a half-hour
//! offset they are off by up to 30 minutes at each end of the period; figures read from single
//! records (errors per upstream, scores, threats) use the exact bounds.

pub mod advice;
mod agent;
pub mod figures;
pub mod period;
pub mod render;
pub mod replay;
pub mod rules;
pub mod schedule;
pub mod threats;

use serde::{Deserialize, Serialize};

pub use agent::{
    ApplyFn, ChatError, ChatFn, ConfigFn, DigestFn, Reporter, ThresholdOutcome, Trigger,
};
pub use figures::Figures;
pub use period::{Bounds, Zone};

/// Report errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("read analytics")]
    Analytics(#[from] crate::analytics::Error),
    #[error("read or write the store")]
    Store(#[from] crate::store::Error),
    #[error("invalid thresholds: {0}")]
    InvalidThresholds(String),
    #[error("apply thresholds: {0}")]
    Apply(String),
    #[error("report period")]
    Period(#[from] period::OutOfRange),
}

/// How long a report looks back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
        }
    }

    /// Parses `daily`, `weekly` or `monthly`.
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "daily" => Some(Period::Daily),
            "weekly" => Some(Period::Weekly),
            "monthly" => Some(Period::Monthly),
            _ => None,
        }
    }
}

/// The four groups recommendations come in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    Security,
    Performance,
    Usage,
    Cost,
}

impl Group {
    pub const ALL: [Group; 4] = [
        Group::Security,
        Group::Performance,
        Group::Usage,
        Group::Cost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Group::Security => "security",
            Group::Performance => "performance",
            Group::Usage => "usage",
            Group::Cost => "cost",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    Medium,
    Low,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }
}

/// One recommendation: what to do, and the figures it rests on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recommendation {
    pub group: Group,
    pub priority: Priority,
    pub title: String,
    /// The figures the recommendation rests on; each names at least one number.
    pub evidence: Vec<String>,
    /// A concrete change, ideally a config key and value.
    pub action: String,
}

/// Which engine wrote a report's recommendations.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Engine {
    Llm {
        model: String,
    },
    /// The deterministic rules; `reason` says why no model was used.
    Rules {
        reason: String,
    },
}

impl Engine {
    /// `llm:<model>` or `rules`.
    pub fn label(&self) -> String {
        match self {
            Engine::Llm { model } => format!("llm:{model}"),
            Engine::Rules { .. } => "rules".into(),
        }
    }
}

/// A finished report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub id: String,
    pub created: String,
    pub created_ms: i64,
    pub period: Period,
    /// The period `[from, to)` in RFC 3339 with local offsets, and the zone it was cut in.
    pub from: String,
    pub to: String,
    pub zone: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub engine: Engine,
    pub recommendations: Vec<Recommendation>,
    pub figures: Figures,
}
