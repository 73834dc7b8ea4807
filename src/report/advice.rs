//! Asking the model: the prompt (figures as compact JSON, never prompt text or secrets), the
//! JSON schema the answer must follow, and its validation.
//!
//! The schema is sent as `response_format` (OpenAI structured outputs; providers that ignore it
//! still get it in the system message). The answer is checked by `parse`, which enforces the same
//! schema — required fields, enums, no extra fields, 1–20 items — plus one rule a schema cannot
//! say: every evidence line must cite a number, so advice rests on figures, not prose. Trade-off:
//! a hand-written check of one small schema instead of a general JSON-schema validator crate
//! (a heavy dependency); a unit test keeps the two in step.

use serde::Deserialize;
use serde_json::{json, Value};

use super::figures::Figures;
use super::{Group, Recommendation};

/// Most recommendations accepted in one answer.
pub const MAX_RECOMMENDATIONS: usize = 20;
/// Longest title, evidence line or action accepted, in characters.
const MAX_TEXT: usize = 2000;
/// The `user` and `X-Title` the report's LLM calls carry, so they are recognisable upstream.
pub const CALLER: &str = "gatehouse-report";

/// The JSON schema of an answer.
pub fn schema() -> Value {
    let groups: Vec<&str> = Group::ALL.iter().map(|g| g.as_str()).collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["recommendations"],
        "properties": {
            "recommendations": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_RECOMMENDATIONS,
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["group", "priority", "title", "evidence", "action"],
                    "properties": {
                        "group": {"type": "string", "enum": groups},
                        "priority": {"type": "string", "enum": ["high", "medium", "low"]},
                        "title": {"type": "string", "minLength": 1},
                        "evidence": {
                            "type": "array", "minItems": 1,
                            "items": {"type": "string", "minLength": 1}
                        },
                        "action": {"type": "string", "minLength": 1}
                    }
                }
            }
        }
    })
}

const SYSTEM: &str = "You are the analysis agent of gatehouse, an LLM gateway. You get one \
period's figures as JSON: traffic, latency (seconds), errors, cost (USD), threats, anomalies, \
a load forecast, threat trends, spend budgets as they stand now (spent, budget, spend \
projected to the period's end) and, when there is one, a threshold proposal with its replayed \
effect. Give recommendations in four groups: security, performance, usage, cost. Each has a \
priority (high, medium, low), a short title, the evidence (the figures it rests on, each line \
quoting at least one number from the input) and one concrete action, preferably a gatehouse \
config key and value (upstreams.<name>.fallbacks, upstreams.<name>.retries, models.aliases, \
detect.thresholds, detect.actions, detect.behaviour.high_risk_limit, auth.keys, \
quotas.global.budget_usd, quotas.teams.<name>.budget_usd, a key's limits.budget_usd). Cost \
recommendations say how the spend stands against the budgets. Do not invent \
figures. Answer with JSON only, matching this schema: ";

/// The chat-completions request for `figures` (without `model`; the caller sets it).
pub fn request(figures: &Figures) -> Value {
    let figures = serde_json::to_string(figures).unwrap_or_else(|_| "{}".into());
    json!({
        "messages": [
            {"role": "system", "content": format!("{SYSTEM}{}", schema())},
            {"role": "user", "content": figures},
        ],
        "temperature": 0,
        "user": CALLER,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "recommendations", "strict": true, "schema": schema()}
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    recommendations: Vec<Recommendation>,
}

/// Extracts and validates the recommendations from a chat-completions response body.
///
/// # Errors
/// Why the answer is unusable, in one sentence.
pub fn parse(body: &[u8]) -> Result<Vec<Recommendation>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("response is not JSON: {e}"))?;
    let content = v
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or("response has no choices[0].message.content")?;
    let answer: Answer = serde_json::from_str(strip_fences(content))
        .map_err(|e| format!("answer does not match the schema: {e}"))?;
    let recs = answer.recommendations;
    if recs.is_empty() || recs.len() > MAX_RECOMMENDATIONS {
        return Err(format!(
            "answer has {} recommendations, expected 1..={MAX_RECOMMENDATIONS}",
            recs.len()
        ));
    }
    for (i, r) in recs.iter().enumerate() {
        check(r).map_err(|e| format!("recommendations[{i}]: {e}"))?;
    }
    Ok(recs)
}

/// One recommendation's content rules: non-empty texts within bounds, evidence that cites
/// numbers.
///
/// # Errors
/// What is wrong.
pub fn check(r: &Recommendation) -> Result<(), String> {
    let texts = [("title", &r.title), ("action", &r.action)];
    for (name, t) in texts {
        if t.trim().is_empty() || t.chars().count() > MAX_TEXT {
            return Err(format!(
                "{name} is empty or longer than {MAX_TEXT} characters"
            ));
        }
    }
    if r.evidence.is_empty() {
        return Err("no evidence".into());
    }
    for e in &r.evidence {
        if !e.chars().any(|c| c.is_ascii_digit()) || e.chars().count() > MAX_TEXT {
            return Err(format!("evidence {e:?} cites no figure"));
        }
    }
    Ok(())
}

/// Models sometimes wrap JSON in a Markdown code fence despite being told not to.
fn strip_fences(s: &str) -> &str {
    let t = s.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Priority;

    fn completion(content: &str) -> Vec<u8> {
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
            .to_string()
            .into_bytes()
    }

    const GOOD: &str = r#"{"recommendations":[{"group":"cost","priority":"high","title":"t","evidence":["12 requests"],"action":"a"}]}"#;

    #[test]
    fn a_valid_answer_parses() {
        let r = parse(&completion(GOOD)).expect("valid");
        assert_eq!((r[0].group, r[0].priority), (Group::Cost, Priority::High));
        let fenced = format!("```json\n{GOOD}\n```");
        assert!(parse(&completion(&fenced)).is_ok(), "code fence tolerated");
    }

    #[test]
    fn invalid_answers_say_why() {
        let cases = [
            ("not json", "does not match the schema"),
            (r#"{"recommendations":[]}"#, "0 recommendations"),
            (
                r#"{"recommendations":[{"group":"vibes","priority":"high","title":"t","evidence":["1"],"action":"a"}]}"#,
                "unknown variant",
            ),
            (
                r#"{"recommendations":[{"group":"cost","priority":"high","title":"t","evidence":["1"],"action":"a","extra":1}]}"#,
                "unknown field",
            ),
            (
                r#"{"recommendations":[{"group":"cost","priority":"high","title":"t","evidence":["it is bad"],"action":"a"}]}"#,
                "cites no figure",
            ),
            (
                r#"{"recommendations":[{"group":"cost","priority":"high","title":"t","evidence":["1"]}]}"#,
                "missing field",
            ),
        ];
        for (content, why) in cases {
            let e = parse(&completion(content)).expect_err(content);
            assert!(e.contains(why), "{content}: {e}");
        }
        assert!(parse(b"<html>").expect_err("html").contains("not JSON"));
    }

    #[test]
    fn schema_and_checker_agree_on_the_vocabulary() {
        let s = schema();
        let item = &s["properties"]["recommendations"]["items"];
        let groups: Vec<&str> = item["properties"]["group"]["enum"]
            .as_array()
            .expect("enum")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for g in &groups {
            let r: Result<Group, _> = serde_json::from_value(json!(g));
            assert!(r.is_ok(), "{g}");
        }
        let required: Vec<&str> = item["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let fields = serde_json::to_value(Recommendation {
            group: Group::Cost,
            priority: Priority::Low,
            title: "t".into(),
            evidence: vec!["1".into()],
            action: "a".into(),
        })
        .expect("serialise");
        let mut keys: Vec<&str> = fields
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut req = required.clone();
        req.sort_unstable();
        assert_eq!(
            keys, req,
            "every field required, no field unknown to the schema"
        );
        assert_eq!(
            s["properties"]["recommendations"]["maxItems"],
            MAX_RECOMMENDATIONS
        );
    }
}
