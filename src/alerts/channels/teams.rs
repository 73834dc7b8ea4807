//! Microsoft Teams through a Workflows (Power Automate) webhook — Office 365 connectors are
//! retired. The body is a `message` with one Adaptive Card attachment (card version 1.4); the
//! flow answers 202 before it runs, so a card the flow cannot post fails silently inside the
//! flow: the shape is pinned by a test. Report digests use the same envelope.

use serde_json::{json, Value};

use crate::alerts::{rfc3339, Digest, Level, Notice, NoticeKind};

/// The webhook body for `n`.
pub fn payload(n: &Notice) -> Value {
    let color = match (n.kind, n.level) {
        (NoticeKind::Resolved, _) => "Good",
        (_, Level::Critical) => "Attention",
        (_, Level::Warning) => "Warning",
        (_, Level::Info) => "Accent",
    };
    let mut facts = vec![
        json!({"title": "Level", "value": n.level.as_str()}),
        json!({"title": "Since", "value": rfc3339(n.started_at)}),
        json!({"title": "Gateway", "value": n.gateway}),
    ];
    facts.extend(
        n.figures
            .iter()
            .map(|f| json!({"title": f.label, "value": f.shown})),
    );
    let actions: Vec<Value> = n
        .dashboard_url
        .iter()
        .map(|u| json!({"type": "Action.OpenUrl", "title": "Open dashboard", "url": u}))
        .collect();
    let card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": [
            {"type": "TextBlock", "text": format!("{}: {}", n.kind.title(), n.rule), "weight": "Bolder", "size": "Medium", "color": color, "wrap": true},
            {"type": "TextBlock", "text": n.summary, "wrap": true},
            {"type": "FactSet", "facts": facts}
        ],
        "actions": actions
    });
    message(card)
}

/// The webhook body of a report digest: one Adaptive Card with the title, the period and
/// engine as facts, one line per top recommendation, and a button to the report (or its path).
pub fn digest(d: &Digest) -> Value {
    let mut body = vec![
        json!({"type": "TextBlock", "text": d.title(), "weight": "Bolder", "size": "Medium", "wrap": true}),
        json!({"type": "FactSet", "facts": [
            {"title": "Period", "value": d.period_line()},
            {"title": "Written by", "value": d.engine},
            {"title": "Gateway", "value": d.gateway},
        ]}),
    ];
    let mut lines = d.item_lines();
    if lines.is_empty() {
        lines.push("Nothing to change: no recommendation this period.".into());
    }
    lines.extend(d.more_line());
    body.extend(
        lines
            .into_iter()
            .map(|l| json!({"type": "TextBlock", "text": l, "wrap": true})),
    );
    let actions: Vec<Value> = if d.link_is_url() {
        vec![json!({"type": "Action.OpenUrl", "title": "Open report", "url": d.link})]
    } else {
        body.push(json!({"type": "TextBlock", "text": format!("Full report: {}", d.link), "wrap": true, "isSubtle": true}));
        Vec::new()
    };
    message(json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
        "actions": actions
    }))
}

/// A `message` with one Adaptive Card attachment.
fn message(card: Value) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card
        }]
    })
}
