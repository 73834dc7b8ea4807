//! Alert routes: `GET /api/alerts` (firing and past alerts, filtered, with delivery
//! attempts), `GET /api/alerts/rules` (the rules in force and the enabled channels) and
//! `POST /api/alerts/test?channel=` (sends a test notice and reports each channel's answer).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::config::validate::ALERT_CHANNELS;
use crate::store::AlertFilter;

use super::params;
use super::routes::{get, query, since_until, ApiResult, Params};
use super::{AdminError, AdminState};

const STATES: &[&str] = &["firing", "resolved", "test"];
const LEVELS: &[&str] = &["info", "warning", "critical"];

fn handle(s: &AdminState) -> Result<&crate::alerts::Handle, AdminError> {
    s.alerts.as_deref().ok_or_else(|| {
        AdminError::Unavailable("alerts are disabled (alerts.enabled: false)".into())
    })
}

#[utoipa::path(get, path = "/api/alerts", tag = "alerts", operation_id = "list_alerts",
    params(("state" = Option<String>, Query, description = "firing or resolved"), ("level" = Option<String>, Query, description = "info, warning or critical"),
           ("rule" = Option<String>, Query, description = "Rule name"), ("since" = Option<String>, Query, description = "RFC 3339 or unix seconds"),
           ("until" = Option<String>, Query, description = "RFC 3339 or unix seconds"), ("limit" = Option<u32>, Query, description = "Most alerts returned")),
    responses((status = 200, description = "Active alerts and history, each with its delivery attempts", body = Object), (status = 400, description = "Bad parameter"), (status = 401, description = "Missing or wrong token")))]
pub(super) async fn list(State(s): State<AdminState>, q: Params) -> ApiResult {
    let q = query(q)?;
    let (since_ms, until_ms) = since_until(&q, ("since", "until"))?;
    let f = AlertFilter {
        state: params::one_of("state", get(&q, "state"), STATES)?,
        level: params::one_of("level", get(&q, "level"), LEVELS)?,
        rule: params::text("rule", get(&q, "rule"))?,
        since_ms,
        until_ms,
        limit: params::int_in("limit", get(&q, "limit"), 100, 1, 1000)?,
    };
    let history = s.store.alerts(&f).await?;
    let active: Vec<_> = history
        .iter()
        .filter(|a| a.state == "firing")
        .cloned()
        .collect();
    Ok(Json(json!({"active": active, "history": history})).into_response())
}

#[utoipa::path(get, path = "/api/alerts/rules", tag = "alerts",
    responses((status = 200, description = "The alert rules and the enabled channels", body = Object), (status = 401, description = "Missing or wrong token")))]
pub(super) async fn rules(State(s): State<AdminState>) -> ApiResult {
    let h = handle(&s)?;
    Ok(Json(json!({
        "rules": h.rules,
        "channels": h.delivery.channels.labels(),
    }))
    .into_response())
}

#[utoipa::path(post, path = "/api/alerts/test", tag = "alerts", operation_id = "test_alert",
    params(("channel" = Option<String>, Query, description = "email, slack, teams, webhook or alertmanager; all enabled channels when absent")),
    responses((status = 200, description = "What each channel answered to a test alert", body = Object), (status = 400, description = "Bad parameter"), (status = 401, description = "Missing or wrong token")))]
pub(super) async fn test(State(s): State<AdminState>, q: Params) -> Result<Response, AdminError> {
    let q = query(q)?;
    let h = handle(&s)?;
    let kind = params::one_of("channel", get(&q, "channel"), &ALERT_CHANNELS)?;
    let (notice, outcomes) = h.test(kind.as_deref()).await;
    if outcomes.is_empty() {
        return Err(AdminError::BadRequest(format!(
            "no enabled channel{}",
            kind.map(|k| format!(" of kind {k}")).unwrap_or_default()
        )));
    }
    let channels: Vec<_> = outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(a) => {
                json!({"channel": o.channel, "ok": true, "status": a.status, "answer": a.text})
            }
            Err(f) => {
                json!({"channel": o.channel, "ok": false, "status": f.status, "answer": f.text})
            }
        })
        .collect();
    Ok(Json(json!({"alert_id": notice.alert_id, "channels": channels})).into_response())
}
