//! Verdict types: what a scan takes in and what it hands back.
//!
//! Plain data shared by the detector, the proxy and the exchange record.
//! Owns the level/action/category vocabularies and their wire names; owns no
//! logic beyond level ordering and the clean verdict.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Risk level, ordered from none to critical.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl RiskLevel {
    /// All levels, lowest first.
    pub const ALL: [RiskLevel; 5] = [
        RiskLevel::None,
        RiskLevel::Low,
        RiskLevel::Medium,
        RiskLevel::High,
        RiskLevel::Critical,
    ];

    /// Wire name, as in config and records.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::None => "none",
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
            RiskLevel::Critical => "critical",
        }
    }
}

/// What the gateway does with a request at a given level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Flag,
    Block,
    Alert,
}

impl Action {
    /// Wire name, as in config and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Flag => "flag",
            Action::Block => "block",
            Action::Alert => "alert",
        }
    }
}

/// Threat category of a rule or match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    PromptInjection,
    /// Instructions arriving through tool results or documents.
    IndirectInjection,
    Jailbreak,
    DataExtraction,
    CodeInjection,
    /// Cyber-attack terms, counted only next to an action verb.
    SuspiciousKeywords,
    Obfuscation,
    SecretsInPrompt,
    PiiInPrompt,
}

impl Category {
    /// Every category, in declaration order.
    pub const ALL: [Category; 9] = [
        Category::PromptInjection,
        Category::IndirectInjection,
        Category::Jailbreak,
        Category::DataExtraction,
        Category::CodeInjection,
        Category::SuspiciousKeywords,
        Category::Obfuscation,
        Category::SecretsInPrompt,
        Category::PiiInPrompt,
    ];

    /// True for categories that say someone is attacking (not a leaked secret, PII or an
    /// encoding on its own).
    pub fn is_hostile(self) -> bool {
        !matches!(
            self,
            Category::Obfuscation | Category::SecretsInPrompt | Category::PiiInPrompt
        )
    }

    /// Wire name (snake_case), as in policies and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::PromptInjection => "prompt_injection",
            Category::IndirectInjection => "indirect_injection",
            Category::Jailbreak => "jailbreak",
            Category::DataExtraction => "data_extraction",
            Category::CodeInjection => "code_injection",
            Category::SuspiciousKeywords => "suspicious_keywords",
            Category::Obfuscation => "obfuscation",
            Category::SecretsInPrompt => "secrets_in_prompt",
            Category::PiiInPrompt => "pii_in_prompt",
        }
    }
}

/// Action per level; `Default` is the seed's: none/low allow, medium/high flag, critical block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelActions {
    pub none: Action,
    pub low: Action,
    pub medium: Action,
    pub high: Action,
    pub critical: Action,
}

impl Default for LevelActions {
    fn default() -> Self {
        LevelActions {
            none: Action::Allow,
            low: Action::Allow,
            medium: Action::Flag,
            high: Action::Flag,
            critical: Action::Block,
        }
    }
}

impl LevelActions {
    /// The action configured for `level`.
    pub fn for_level(&self, level: RiskLevel) -> Action {
        match level {
            RiskLevel::None => self.none,
            RiskLevel::Low => self.low,
            RiskLevel::Medium => self.medium,
            RiskLevel::High => self.high,
            RiskLevel::Critical => self.critical,
        }
    }
}

/// The segment cache's default size, in MiB.
pub const DEFAULT_SEGMENT_CACHE_MB: usize = 16;

/// Scan settings, built by the app from config.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Score at which low, medium, high and critical start (default 3, 7, 12, 20).
    pub thresholds: [f32; 4],
    /// Action per level.
    pub actions: LevelActions,
    /// Record but never block: the action is computed, `blocked` stays false.
    pub shadow: bool,
    /// System-prompt canary strings looked for in responses.
    pub canaries: Vec<String>,
    /// Bytes of per-segment scans kept for segments sent again (`super::cache`); 0 = off.
    pub segment_cache_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            thresholds: [3.0, 7.0, 12.0, 20.0],
            actions: LevelActions::default(),
            shadow: false,
            canaries: Vec::new(),
            segment_cache_bytes: DEFAULT_SEGMENT_CACHE_MB * 1024 * 1024,
        }
    }
}

impl Settings {
    /// Level for a score: none below the first threshold.
    pub fn level_for(&self, score: f32) -> RiskLevel {
        let t = self.thresholds;
        if score >= t[3] {
            RiskLevel::Critical
        } else if score >= t[2] {
            RiskLevel::High
        } else if score >= t[1] {
            RiskLevel::Medium
        } else if score >= t[0] {
            RiskLevel::Low
        } else {
            RiskLevel::None
        }
    }
}

/// One rule hit.
#[derive(Clone, Debug, Serialize)]
pub struct Match {
    pub category: Category,
    pub rule: Arc<str>,
    pub weight: f32,
    /// Index of the segment in the [`ScanInput`].
    pub segment: u32,
    /// Byte range in that segment's original text.
    pub span: (usize, usize),
    /// At most 80 chars of the original text around the span.
    pub snippet: String,
}

/// The outcome of one scan.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub level: RiskLevel,
    pub score: f32,
    pub action: Action,
    pub blocked: bool,
    pub shadow: bool,
    /// Raised by per-user behaviour, not by this request's content alone.
    pub escalated: bool,
    pub categories: Vec<Category>,
    pub matches: Vec<Match>,
    pub scan_us: u32,
    /// Attack probability from the learned stage, when it ran.
    pub learned_score: Option<f32>,
}

impl Verdict {
    /// A verdict with nothing found.
    pub fn clean() -> Verdict {
        Verdict {
            level: RiskLevel::None,
            score: 0.0,
            action: Action::Allow,
            blocked: false,
            shadow: false,
            escalated: false,
            categories: Vec::new(),
            matches: Vec::new(),
            scan_us: 0,
            learned_score: None,
        }
    }

    /// True at medium or above: the "detected" line used by eval.
    pub fn detected(&self) -> bool {
        self.level >= RiskLevel::Medium
    }

    /// True when this verdict counts towards a user's repeat-offender cool-down: high or
    /// critical on this request's own content, with corroborated hostile evidence
    /// ([`corroborated`]). One weak signal, a pasted secret or an escalation never counts.
    pub fn counts_as_offence(&self) -> bool {
        self.level >= RiskLevel::High && !self.escalated && corroborated(&self.matches)
    }
}

/// Rule id prefix of the learned stage's matches.
pub const LEARNED_PREFIX: &str = "learned.";

/// Rule id prefix of the optional judge's evidence (`judge.safe`, `judge.unsafe`, `judge.error`,
/// `judge.timeout`), added by the proxy after a guard model's second opinion.
pub const JUDGE_PREFIX: &str = "judge.";

/// Rule weight from which one rule alone counts as corroborated (a policy author's "this alone
/// is high risk").
pub const SELF_EVIDENT_WEIGHT: f32 = 12.0;

/// True when a verdict's hostile evidence is corroborated: two distinct hostile rules (the
/// learned stage counts as one), or one hostile rule weighted [`SELF_EVIDENT_WEIGHT`] or more.
/// Secrets, PII and obfuscation alone are not hostile: pasting an API key is a leak, not an
/// attack. Only matches that added points count: a judge's opinion that moved nothing or
/// lowered the score, or a rule that echoed another's words (see `scoring`), corroborates
/// nothing.
pub fn corroborated(matches: &[Match]) -> bool {
    let hostile = |m: &&Match| m.category.is_hostile() && m.weight > 0.0;
    let mut rules: Vec<&str> = matches.iter().filter(hostile).map(|m| &*m.rule).collect();
    rules.sort_unstable();
    rules.dedup();
    rules.len() >= 2
        || matches
            .iter()
            .filter(hostile)
            .any(|m| m.weight >= SELF_EVIDENT_WEIGHT && !m.rule.starts_with(LEARNED_PREFIX))
}

/// Who wrote a segment; tool results and documents are indirect input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
    ToolArgs,
    Document,
}

impl Role {
    /// Weight multiplier: instructions in indirect input count more,
    /// text the operator or the model wrote counts less.
    pub fn weight(self) -> f32 {
        match self {
            Role::System | Role::Assistant => 0.5,
            Role::User | Role::ToolArgs => 1.0,
            Role::Tool | Role::Document => 1.5,
        }
    }

    /// True for text that arrived from somewhere other than the user.
    pub fn is_indirect(self) -> bool {
        matches!(self, Role::Tool | Role::Document)
    }
}

/// One text the model will read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub role: Role,
    pub text: String,
}

/// Everything one request makes the model read, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanInput {
    pub segments: Vec<Segment>,
}

impl ScanInput {
    /// One user segment.
    pub fn user(text: impl Into<String>) -> ScanInput {
        ScanInput {
            segments: vec![Segment {
                role: Role::User,
                text: text.into(),
            }],
        }
    }
}
