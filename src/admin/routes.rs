//! The admin handlers, one per route, each: parameters → one call → JSON.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::analytics::{self, unix_ms, ExportFormat};
use crate::store::{ExportKind, Feedback, RequestFilter, SecurityFilter};
use crate::telemetry::metrics::Metrics;

use super::params::{self, CATEGORIES, LEVELS, OUTCOMES};
use super::{AdminError, AdminState};

pub(super) type Params = Result<Query<HashMap<String, String>>, QueryRejection>;
pub(super) type ApiResult = Result<Response, AdminError>;

const DAY_MS: i64 = 86_400_000;

pub(super) fn query(q: Params) -> Result<HashMap<String, String>, AdminError> {
    q.map(|Query(m)| m)
        .map_err(|e| AdminError::BadRequest(format!("malformed query string: {}", e.body_text())))
}

pub(super) fn get<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(String::as_str)
}

pub(super) async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

pub(super) async fn not_found() -> AdminError {
    AdminError::NotFound("no such admin route".into())
}

pub(super) async fn metrics(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (content_type, body) = s.metrics.render(Metrics::wants_openmetrics(accept));
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

pub(super) async fn usage(State(s): State<AdminState>, q: Params) -> ApiResult {
    let q = query(q)?;
    let days = params::int_in("days", get(&q, "days"), 7, 1, 365)?;
    Ok(Json(analytics::usage(&s.store, days).await?).into_response())
}

pub(super) async fn forecast(State(s): State<AdminState>, q: Params) -> ApiResult {
    let q = query(q)?;
    let days = params::int_in("days", get(&q, "days"), 14, 3, 90)?;
    Ok(Json(analytics::forecast_requests(&s.store, days).await?).into_response())
}

pub(super) async fn live(State(s): State<AdminState>, q: Params) -> ApiResult {
    let q = query(q)?;
    let secs = params::int_in("window", get(&q, "window"), 300, 1, 86_400)?;
    let window = Duration::from_secs(u64::from(secs));
    let now = SystemTime::now();
    Ok(Json(json!({
        "total": s.live.window_at(now, window),
        "by_model": s.live.models_at(now, window).into_iter().collect::<HashMap<_, _>>(),
        "top_users": s.live.top_users_at(now, 20),
    }))
    .into_response())
}

/// `since`/`until` (or `from`/`to`) as unix ms, checked for order.
pub(super) fn since_until(
    q: &HashMap<String, String>,
    names: (&str, &str),
) -> Result<(Option<i64>, Option<i64>), AdminError> {
    let since = params::time_ms(names.0, get(q, names.0))?;
    let until = params::time_ms(names.1, get(q, names.1))?;
    params::range(since, until, names)?;
    Ok((since, until))
}

pub(super) async fn security_events(State(s): State<AdminState>, q: Params) -> ApiResult {
    let q = query(q)?;
    let (since_ms, until_ms) = since_until(&q, ("since", "until"))?;
    let f = SecurityFilter {
        since_ms,
        until_ms,
        risk_level: params::one_of("risk_level", get(&q, "risk_level"), LEVELS)?,
        category: params::one_of("category", get(&q, "category"), CATEGORIES)?,
        user: params::text("user_id", get(&q, "user_id"))?,
        oldest_first: false,
    };
    let limit = params::int_in("limit", get(&q, "limit"), 100, 1, 1000)?;
    let after = params::cursor(get(&q, "cursor"))?;
    Ok(Json(s.store.security_events(&f, after, limit).await?).into_response())
}

pub(super) async fn security_summary(State(s): State<AdminState>, q: Params) -> ApiResult {
    let q = query(q)?;
    let (since, until) = since_until(&q, ("since", "until"))?;
    let until = until.unwrap_or_else(|| unix_ms(SystemTime::now()));
    let since = since.unwrap_or(until - 7 * DAY_MS);
    params::range(Some(since), Some(until), ("since", "until"))?;
    Ok(Json(analytics::security_summary(&s.store, since, until).await?).into_response())
}

pub(super) async fn requests(State(s): State<AdminState>, q: Params) -> ApiResult {
    let q = query(q)?;
    let (since_ms, until_ms) = since_until(&q, ("since", "until"))?;
    let f = RequestFilter {
        since_ms,
        until_ms,
        user: params::text("user_id", get(&q, "user_id"))?,
        model: params::text("model", get(&q, "model"))?,
        outcome: params::one_of("outcome", get(&q, "outcome"), OUTCOMES)?,
        oldest_first: false,
    };
    let limit = params::int_in("limit", get(&q, "limit"), 100, 1, 1000)?;
    let after = params::cursor(get(&q, "cursor"))?;
    Ok(Json(s.store.requests(&f, after, limit).await?).into_response())
}

pub(super) async fn request(State(s): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    match s.store.request(&id).await? {
        Some(row) => Ok(Json(row).into_response()),
        None => Err(AdminError::NotFound(format!("no request with id {id:?}"))),
    }
}

pub(super) async fn export(State(s): State<AdminState>, q: Params) -> ApiResult {
    let q = query(q)?;
    let format = match get(&q, "format").unwrap_or("json") {
        "json" => ExportFormat::Json,
        "csv" => ExportFormat::Csv,
        other => {
            return Err(AdminError::BadRequest(format!(
                "format must be json or csv, got {other:?}"
            )))
        }
    };
    let kind = match get(&q, "kind").unwrap_or("requests") {
        "requests" => ExportKind::Requests,
        "security" => ExportKind::Security,
        other => {
            return Err(AdminError::BadRequest(format!(
                "kind must be requests or security, got {other:?}"
            )))
        }
    };
    let (from, to) = since_until(&q, ("from", "to"))?;
    let name = format!(
        "attachment; filename=\"gatehouse-{}.{}\"",
        if kind == ExportKind::Requests {
            "requests"
        } else {
            "security"
        },
        if format == ExportFormat::Csv {
            "csv"
        } else {
            "json"
        }
    );
    let body = Body::from_stream(analytics::export(s.store.clone(), kind, format, from, to));
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        body,
    )
        .into_response())
}

pub(super) async fn feedback(
    State(s): State<AdminState>,
    body: Result<Json<Feedback>, JsonRejection>,
) -> ApiResult {
    let Json(fb) = body
        .map_err(|e| AdminError::BadRequest(format!("invalid feedback body: {}", e.body_text())))?;
    s.store.feedback(&fb).await?;
    Ok((StatusCode::CREATED, Json(json!({"status": "stored"}))).into_response())
}

pub(super) async fn feedback_summary(State(s): State<AdminState>, q: Params) -> ApiResult {
    let q = query(q)?;
    let days = params::int_in("days", get(&q, "days"), 7, 1, 365)?;
    let since = unix_ms(SystemTime::now()) - i64::from(days) * DAY_MS;
    Ok(Json(s.store.feedback_summary(since).await?).into_response())
}
