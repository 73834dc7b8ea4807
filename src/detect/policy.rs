//! Policy files: the YAML schema, loading and validation.
//!
//! Owns reading `policies/*.yaml` (build time only, never on the scan path),
//! the serde shape of a policy file, and validation that collects every
//! problem, each naming its file, rule id and field, before failing.
//! It does not compile anything: [`super::matcher`] turns validated rules
//! into automata. Trade-off: one rule has exactly one kind (phrases,
//! proximity or regex), which keeps rules easy to read at the cost of a few
//! more rule ids.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::verdict::Category;

/// What a failing load of this policy should mean to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Keep serving without this policy (and say so).
    FailOpen,
    /// Refuse to serve (or keep the previous policies) until it loads.
    FailClosed,
}

/// One policy file: a family of rules.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub family: String,
    #[serde(default)]
    pub description: String,
    pub on_error: OnError,
    pub rules: Vec<RuleSpec>,
}

/// One rule as written; exactly one of `phrases`, `proximity`, `regex`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    pub category: Category,
    pub weight: f32,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub phrases: Vec<String>,
    #[serde(default)]
    pub proximity: Option<ProximitySpec>,
    #[serde(default)]
    pub regex: Option<String>,
    /// Extra check on regex hits: `luhn` or `iban`.
    #[serde(default)]
    pub check: Option<Check>,
    /// Also look for this rule in model responses (secrets).
    #[serde(default)]
    pub response: bool,
    /// A regex rule that judges a whole short message (anchored `\A…\z`): searched only in
    /// messages of at most `regexes::SHORT_MESSAGE` bytes, so it costs nothing on ordinary
    /// prompts.
    #[serde(default)]
    pub whole_message: bool,
    /// A regex rule that judges how a message opens (anchored `\A…`): searched only in the
    /// first `regexes::OPENING` bytes of a text, so it costs nothing on the rest of it and a
    /// rule without a literal prefix does not slow the whole-text regex pass.
    #[serde(default)]
    pub opening: bool,
}

/// Ordered word groups that must all occur within `window` words, unless a word of `unless`
/// occurs within `unless_window` (default `window`) words of the chain (before it, inside it or
/// after it).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProximitySpec {
    pub window: u32,
    pub groups: Vec<Vec<String>>,
    /// Words that cancel a chain near them (a defender's framing: "detect", "prevent").
    #[serde(default)]
    pub unless: Vec<String>,
    /// How many words from the chain an `unless` word cancels it; `window` when absent. Wider
    /// than `window` for an idiom that reads like an attack for its first words and only
    /// shows itself later ("forget everything | you know about sourdough"). 0: only an `unless`
    /// phrase that overlaps the chain cancels it ("not share" over the chain's "share").
    #[serde(default)]
    pub unless_window: Option<u32>,
}

/// Validation applied to a regex hit before it counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Luhn,
    Iban,
}

/// A loaded, validated policy file.
#[derive(Clone, Debug)]
pub struct Policy {
    pub file: PathBuf,
    pub spec: PolicyFile,
}

/// One problem found while loading policies.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub file: PathBuf,
    pub rule: Option<String>,
    pub field: Option<String>,
    pub message: String,
    /// The file's declared `on_error`, when it got that far.
    pub on_error: Option<OnError>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(r) = &self.rule {
            write!(f, ": rule {r}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

const MAX_WEIGHT: f32 = 50.0;
const MAX_WINDOW: u32 = 64;
const MAX_REGEX_LEN: usize = 512;

/// Reads every `*.yaml` file in `dir`, sorted by name; returns the valid
/// policies and every problem found (I/O problems included).
/// Files in the policies directory that are not detection policies: the price table lives
/// beside them (`policies/prices.yaml`) but belongs to cost accounting.
pub const NOT_POLICIES: [&str; 1] = ["prices.yaml"];

pub fn load_dir(dir: &Path) -> (Vec<Policy>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| NOT_POLICIES.contains(&n.to_str().unwrap_or("")))
            })
            .collect(),
        Err(e) => {
            problems.push(problem(dir, None, None, format!("cannot read: {e}"), None));
            return (Vec::new(), problems);
        }
    };
    files.sort();
    let mut policies = Vec::new();
    let mut seen = HashSet::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Err(e) => problems.push(problem(
                &file,
                None,
                None,
                format!("cannot read: {e}"),
                None,
            )),
            Ok(text) => match parse(&file, &text, &mut seen) {
                Ok(p) => policies.push(p),
                Err(mut ps) => problems.append(&mut ps),
            },
        }
    }
    if policies.is_empty() && problems.is_empty() {
        problems.push(problem(dir, None, None, "no policy files".into(), None));
    }
    (policies, problems)
}

/// Parses and validates one policy file; `seen` holds rule ids from earlier files.
pub fn parse(file: &Path, text: &str, seen: &mut HashSet<String>) -> Result<Policy, Vec<Problem>> {
    let spec: PolicyFile = serde_yaml::from_str(text)
        .map_err(|e| vec![problem(file, None, None, e.to_string(), None)])?;
    let mut problems = Vec::new();
    if spec.family.trim().is_empty() {
        problems.push(problem(
            file,
            None,
            Some("family"),
            "empty".into(),
            Some(spec.on_error),
        ));
    }
    for rule in &spec.rules {
        let mut p = validate_rule(rule, seen);
        for x in &mut p {
            x.file = file.to_path_buf();
            x.on_error = Some(spec.on_error);
        }
        problems.append(&mut p);
    }
    if problems.is_empty() {
        Ok(Policy {
            file: file.to_path_buf(),
            spec,
        })
    } else {
        Err(problems)
    }
}

fn validate_rule(rule: &RuleSpec, seen: &mut HashSet<String>) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut bad = |field: &str, msg: String| {
        out.push(problem(
            Path::new(""),
            Some(&rule.id),
            Some(field),
            msg,
            None,
        ));
    };
    if rule.id.trim().is_empty() || rule.id.contains(char::is_whitespace) {
        bad("id", "must be non-empty without spaces".into());
    } else if !seen.insert(rule.id.clone()) {
        bad("id", "duplicate rule id".into());
    }
    if !(rule.weight.is_finite() && (0.0..=MAX_WEIGHT).contains(&rule.weight)) {
        bad("weight", format!("must be between 0 and {MAX_WEIGHT}"));
    }
    let kinds = usize::from(!rule.phrases.is_empty())
        + usize::from(rule.proximity.is_some())
        + usize::from(rule.regex.is_some());
    if kinds != 1 {
        bad(
            "phrases",
            "exactly one of phrases, proximity, regex is required".into(),
        );
    }
    for (i, p) in rule.phrases.iter().enumerate() {
        if p.trim_matches('*').trim().chars().count() < 2 {
            bad(&format!("phrases[{i}]"), "phrase too short".into());
        }
    }
    if let Some(px) = &rule.proximity {
        validate_proximity(px, &mut bad);
    }
    if let Some(re) = &rule.regex {
        validate_regex(re, &mut bad);
    }
    if rule.check.is_some() && rule.regex.is_none() {
        bad("check", "only applies to regex rules".into());
    }
    if rule.whole_message && rule.regex.is_none() {
        bad("whole_message", "only applies to regex rules".into());
    }
    if rule.opening && rule.regex.is_none() {
        bad("opening", "only applies to regex rules".into());
    }
    if rule.opening && rule.whole_message {
        bad(
            "opening",
            "a rule judges the whole message or its opening, not both".into(),
        );
    }
    out
}

fn validate_proximity(px: &ProximitySpec, bad: &mut impl FnMut(&str, String)) {
    if px.window == 0 || px.window > MAX_WINDOW {
        bad(
            "proximity.window",
            format!("must be 1..={MAX_WINDOW} words"),
        );
    }
    if !(2..=4).contains(&px.groups.len()) {
        bad("proximity.groups", "needs 2 to 4 groups".into());
    }
    for (i, g) in px.groups.iter().enumerate() {
        if g.is_empty() || g.iter().any(|w| w.trim().is_empty()) {
            bad(
                &format!("proximity.groups[{i}]"),
                "empty group or word".into(),
            );
        }
    }
    if px.unless_window.is_some_and(|w| w > MAX_WINDOW) {
        bad(
            "proximity.unless_window",
            format!("must be 0..={MAX_WINDOW} words"),
        );
    }
    if px.unless_window.is_some() && px.unless.is_empty() {
        bad(
            "proximity.unless_window",
            "only applies with unless words".into(),
        );
    }
    if px.unless.iter().any(|w| w.trim().is_empty()) {
        bad("proximity.unless", "empty word".into());
    }
}

fn validate_regex(re: &str, bad: &mut impl FnMut(&str, String)) {
    if re.len() > MAX_REGEX_LEN {
        bad("regex", format!("longer than {MAX_REGEX_LEN} bytes"));
    } else if let Err(e) = regex::Regex::new(re) {
        bad("regex", e.to_string());
    }
}

fn problem(
    file: &Path,
    rule: Option<&str>,
    field: Option<&str>,
    message: String,
    on_error: Option<OnError>,
) -> Problem {
    Problem {
        file: file.to_path_buf(),
        rule: rule.map(str::to_owned),
        field: field.map(str::to_owned),
        message,
        on_error,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use super::parse;

    fn prox_rule(extra: &str) -> String {
        format!(
            "family: t\ndescription: d\non_error: fail_closed\nrules:\n  - id: t.r\n    \
             category: prompt_injection\n    weight: 5\n    proximity:\n      window: 2\n      \
             groups: [[forget], [everything]]\n{extra}"
        )
    }

    fn fields(text: &str) -> Vec<String> {
        match parse(Path::new("t.yaml"), text, &mut HashSet::new()) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.into_iter().filter_map(|p| p.field).collect(),
        }
    }

    #[test]
    fn opening_is_for_regex_rules_that_do_not_judge_the_whole_message() {
        assert_eq!(fields(&prox_rule("    opening: true\n")), ["opening"]);
        let regex = |extra: &str| {
            format!(
                "family: t\ndescription: d\non_error: fail_closed\nrules:\n  - id: t.r\n    \
                 category: code_injection\n    weight: 5\n    regex: '\\A<x'\n{extra}"
            )
        };
        assert!(fields(&regex("    opening: true\n")).is_empty());
        assert_eq!(
            fields(&regex("    opening: true\n    whole_message: true\n")),
            ["opening"]
        );
    }

    #[test]
    fn an_unless_window_needs_unless_words_and_a_size_in_range() {
        assert!(fields(&prox_rule(
            "      unless: [about]\n      unless_window: 4\n"
        ))
        .is_empty());
        assert!(fields(&prox_rule("      unless: [about]\n")).is_empty());
        assert!(fields(&prox_rule(
            "      unless: [\"not show\"]\n      unless_window: 0\n"
        ))
        .is_empty());
        for bad in [
            "      unless_window: 4\n",
            "      unless: [about]\n      unless_window: 65\n",
        ] {
            assert_eq!(
                fields(&prox_rule(bad)),
                ["proximity.unless_window"],
                "{bad}"
            );
        }
    }
}
