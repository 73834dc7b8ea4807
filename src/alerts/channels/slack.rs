//! Slack incoming webhook: top-level `text` (the notification and fallback) plus Block Kit
//! blocks — header, the summary with the figures as fields, context, and a dashboard button.
//! A report digest is a header, the period and engine, the top recommendations and a button
//! to the report. Slack answers `200 ok`; its 4xx codes (`invalid_payload`, `channel_is_archived`, …) mean
//! "fix the config" and are not retried.

use serde_json::{json, Value};

use super::escape_slack;
use crate::alerts::{rfc3339, Digest, Notice};

/// Slack allows at most 10 fields per section.
const MAX_FIELDS: usize = 10;

/// The webhook body for `n`.
pub fn payload(n: &Notice) -> Value {
    let mut fields: Vec<Value> = vec![
        mrkdwn(format!("*Level*\n{}", n.level.as_str())),
        mrkdwn(format!("*Since*\n{}", rfc3339(n.started_at))),
        mrkdwn(format!("*Gateway*\n{}", escape_slack(&n.gateway))),
    ];
    fields.extend(n.figures.iter().map(|f| {
        mrkdwn(format!(
            "*{}*\n{}",
            escape_slack(&f.label),
            escape_slack(&f.shown)
        ))
    }));
    fields.truncate(MAX_FIELDS);
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": format!("{}: {}", n.kind.title(), n.rule)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": escape_slack(&n.summary)}, "fields": fields}),
        json!({"type": "context", "elements": [mrkdwn(format!("fingerprint `{}` · alert `{}`", n.fingerprint(), n.alert_id))]}),
    ];
    if let Some(url) = &n.dashboard_url {
        blocks.push(json!({"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open dashboard"}, "url": url}]}));
    }
    json!({"text": format!("{} {}", n.title(), escape_slack(&n.summary)), "blocks": blocks})
}

fn mrkdwn(text: String) -> Value {
    json!({"type": "mrkdwn", "text": text})
}

/// The webhook body of a report digest: the title as header, the period and engine, the top
/// recommendations, and a button to the report (or its admin API path).
pub fn digest(d: &Digest) -> Value {
    let mut items: Vec<String> = d
        .items
        .iter()
        .map(|i| {
            format!(
                "• *[{}]* {}: {}",
                i.priority,
                i.group,
                escape_slack(&i.title)
            )
        })
        .collect();
    if items.is_empty() {
        items.push("Nothing to change: no recommendation this period.".into());
    }
    items.extend(d.more_line());
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&d.title(), HEADER_MAX)}}),
        json!({"type": "section", "fields": [
            mrkdwn(format!("*Period*\n{}", escape_slack(&d.period_line()))),
            mrkdwn(format!("*Written by*\n{}", escape_slack(&d.engine))),
        ]}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&items.join("\n"), SECTION_MAX)}}),
        json!({"type": "context", "elements": [mrkdwn(format!("report `{}` · {}", d.report_id, escape_slack(&d.gateway)))]}),
    ];
    if d.link_is_url() {
        blocks.push(json!({"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open report"}, "url": d.link}]}));
    } else {
        blocks.push(
            json!({"type": "context", "elements": [mrkdwn(format!("Full report: `{}`", d.link))]}),
        );
    }
    json!({"text": format!("{} {}", escape_slack(&d.title()), escape_slack(&d.period_line())), "blocks": blocks})
}

/// Slack's limits on a header and a section text, in characters.
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((i, _)) if s.chars().count() > max => format!("{}…", &s[..i]),
        _ => s.to_owned(),
    }
}
