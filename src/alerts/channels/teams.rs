//! Microsoft Teams through a Workflows (Power Automate) webhook — Office 365 connectors are
//! retired. The body is a `message` with one Adaptive Card attachment (card version 1.4); the
//! flow answers 202 before it runs, so a card the flow cannot post fails silently inside the
//! flow: the shape is pinned by a test.

use serde_json::{json, Value};

use crate::alerts::{rfc3339, Level, Notice, NoticeKind};

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
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card
        }]
    })
}
