//! Slack incoming webhook: top-level `text` (the notification and fallback) plus Block Kit
//! blocks — header, the summary with the figures as fields, context, and a dashboard button.
//! Slack answers `200 ok`; its 4xx codes (`invalid_payload`, `channel_is_archived`, …) mean
//! "fix the config" and are not retried.

use serde_json::{json, Value};

use super::escape_slack;
use crate::alerts::{rfc3339, Notice};

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
