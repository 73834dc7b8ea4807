//! `POST /api/security/analyze`: the detector's verdict for a prompt or a message list,
//! without sending anything upstream — the seed's analysis endpoint.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{error, AdminState};
use crate::detect::{extract, ScanEndpoint, ScanInput};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeRequest {
    prompt: Option<String>,
    messages: Option<Value>,
    user_id: Option<String>,
}

pub async fn analyze(State(s): State<AdminState>, body: axum::body::Bytes) -> Response {
    let req: AnalyzeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"prompt\": string}} or {{\"messages\": [...]}}: {e}"),
            )
        }
    };
    let input = match (req.prompt, req.messages) {
        (Some(p), None) => ScanInput::user(p),
        (None, Some(m)) if m.is_array() => {
            extract(ScanEndpoint::ChatCompletions, &json!({"messages": m}))
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "send exactly one of \"prompt\" (a string) or \"messages\" (an array)",
            )
        }
    };
    let Some(v) = (s.scan)(&input, req.user_id.as_deref()) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "detection is disabled (detect.enabled is false or the policies failed to load)",
        );
    };
    let categories: Vec<&str> = v.categories.iter().map(|c| c.as_str()).collect();
    let matches: Vec<Value> = v
        .matches
        .iter()
        .map(|m| json!({"category": m.category.as_str(), "rule": &*m.rule, "segment": m.segment, "span": [m.span.0, m.span.1], "snippet": m.snippet, "weight": m.weight}))
        .collect();
    Json(json!({
        "risk_level": v.level.as_str(),
        "risk_score": v.score,
        "threats_detected": categories,
        "matches": matches,
        "action": v.action.as_str(),
        "blocked": v.blocked,
        "shadow": v.shadow,
        "escalated": v.escalated,
        "learned_score": v.learned_score,
        "scan_us": v.scan_us,
    }))
    .into_response()
}
