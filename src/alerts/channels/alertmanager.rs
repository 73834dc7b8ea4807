//! The Alertmanager webhook format (message version 4), for teams that route alerts through
//! Prometheus Alertmanager tooling: one group with one alert per notice. `endsAt` is the zero
//! time while firing and the resolve time once resolved.

use serde_json::{json, Value};

use crate::alerts::{rfc3339, Notice, NoticeKind};

/// Alertmanager's "no end time".
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The webhook body for `n`.
pub fn payload(n: &Notice) -> Value {
    let status = match n.kind {
        NoticeKind::Resolved => "resolved",
        NoticeKind::Fired | NoticeKind::Test => "firing",
    };
    let labels = json!({
        "alertname": n.rule,
        "severity": n.level.as_str(),
        "subject": n.subject,
        "gateway": n.gateway,
    });
    let annotations = json!({"summary": n.summary, "description": describe(n)});
    let ends = n.resolved_at.map_or_else(|| ZERO_TIME.to_owned(), rfc3339);
    let reason = if status == "resolved" {
        "all alerts resolved"
    } else {
        "first notification"
    };
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{}\"}}", n.rule),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "gatehouse",
        "groupLabels": {"alertname": n.rule},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": n.dashboard_url.clone().unwrap_or_default(),
        "notification_reason": reason,
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(n.started_at),
            "endsAt": ends,
            "generatorURL": n.dashboard_url.clone().unwrap_or_default(),
            "fingerprint": n.fingerprint(),
        }]
    })
}

fn describe(n: &Notice) -> String {
    n.figures
        .iter()
        .map(|f| format!("{}: {}", f.label, f.shown))
        .collect::<Vec<_>>()
        .join("; ")
}
