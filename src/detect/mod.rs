//! Threat detection (placeholder types until the detector lands).
use serde::Serialize;
use std::sync::Arc;
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    None,
    Low,
    Medium,
    High,
    Critical,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Flag,
    Block,
    Alert,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    PromptInjection,
    Jailbreak,
}
#[derive(Clone, Debug, Serialize)]
pub struct Match {
    pub category: Category,
    pub rule: Arc<str>,
    pub weight: f32,
    pub segment: u32,
    pub span: (usize, usize),
    pub snippet: String,
}
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub level: RiskLevel,
    pub score: f32,
    pub action: Action,
    pub blocked: bool,
    pub shadow: bool,
    pub escalated: bool,
    pub categories: Vec<Category>,
    pub matches: Vec<Match>,
    pub scan_us: u32,
    pub learned_score: Option<f32>,
}
