//! The admin handlers, one per route, each: parameters → one call → JSON.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::analytics::{self, unix_ms, ExportFormat, Forecast, SecuritySummary, UsageAnalytics};
use crate::analytics::{UserWindow, WindowStats};
use crate::store::{
    ExportKind, Feedback, FeedbackSummary, MatchRow, Page, RequestFilter, RequestRow,
    SecurityFilter,
};
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

#[utoipa::path(get, path = "/health", tag = "meta", security(()),
    responses((status = 200, description = "The admin listener is up", body = Object, example = json!({"status": "ok"}))))]
pub(super) async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

pub(super) async fn not_found() -> AdminError {
    AdminError::NotFound("no such admin route".into())
}

#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "Prometheus text format 0.0.4, or OpenMetrics when the Accept header asks for it", content_type = "text/plain", body = String),
              (status = 401, description = "Missing or wrong token (unless `admin.public_metrics`)")))]
pub(super) async fn metrics(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    // `model_performance_score` is computed now, so the first scrape after traffic has it.
    match analytics::model_scores(&s.live, &s.store, analytics::SCORE_WINDOW).await {
        Ok(scores) => scores
            .iter()
            .for_each(|(m, v)| s.metrics.set_model_score(m, *v)),
        Err(e) => tracing::warn!(error = %e, "model scores not updated"),
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (content_type, body) = s.metrics.render(Metrics::wants_openmetrics(accept));
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

#[utoipa::path(get, path = "/api/usage/analytics", tag = "usage",
    params(("days" = Option<u32>, Query, description = "Window in days, 1..=365 (default 7)", minimum = 1, maximum = 365)),
    responses((status = 200, description = "The seed's usage analytics: general metrics, by model, by user, time series, temporal patterns, anomalies", body = UsageAnalytics),
              (status = 400, description = "Bad parameter"), (status = 401, description = "Missing or wrong token")))]
pub(super) async fn usage(State(s): State<AdminState>, q: Params) -> ApiResult {
    let q = query(q)?;
    let days = params::int_in("days", get(&q, "days"), 7, 1, 365)?;
    Ok(Json(analytics::usage(&s.store, days).await?).into_response())
}

#[utoipa::path(get, path = "/api/usage/forecast", tag = "usage",
    params(("days" = Option<u32>, Query, description = "History to fit, 3..=90 days (default 14)", minimum = 3, maximum = 90)),
    responses((status = 200, description = "Holt-Winters forecast of requests per hour for the next day, with its backtest", body = Forecast),
              (status = 400, description = "Bad parameter"), (status = 401, description = "Missing or wrong token"),
              (status = 422, description = "Not enough history")))]
pub(super) async fn forecast(State(s): State<AdminState>, q: Params) -> ApiResult {
    let q = query(q)?;
    let days = params::int_in("days", get(&q, "days"), 14, 3, 90)?;
    Ok(Json(analytics::forecast_requests(&s.store, days).await?).into_response())
}

#[utoipa::path(get, path = "/api/usage/live", tag = "usage",
    params(("window" = Option<u32>, Query, description = "Window in seconds, 1..=86400 (default 300)", minimum = 1, maximum = 86400)),
    responses((status = 200, description = "In-memory figures over the last window: totals, per model, top users of the last hour", body = LiveUsage),
              (status = 400, description = "Bad parameter"), (status = 401, description = "Missing or wrong token")))]
pub(super) async fn live(State(s): State<AdminState>, q: Params) -> ApiResult {
    let q = query(q)?;
    let secs = params::int_in("window", get(&q, "window"), 300, 1, 86_400)?;
    let window = Duration::from_secs(u64::from(secs));
    let now = SystemTime::now();
    Ok(Json(LiveUsage {
        total: s.live.window_at(now, window),
        by_model: s.live.models_at(now, window).into_iter().collect(),
        top_users: s.live.top_users_at(now, 20),
    })
    .into_response())
}

/// `/api/usage/live`: figures over the last window, from memory.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct LiveUsage {
    total: WindowStats,
    by_model: BTreeMap<String, WindowStats>,
    /// The busiest users of the last hour.
    top_users: Vec<UserWindow>,
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

#[utoipa::path(get, path = "/api/security/events", tag = "security",
    params(("since" = Option<String>, Query, description = "RFC 3339 time or unix seconds"), ("until" = Option<String>, Query, description = "RFC 3339 time or unix seconds"),
        ("risk_level" = Option<String>, Query, description = "none, low, medium, high or critical"),
        ("category" = Option<String>, Query, description = "A threat category, e.g. prompt_injection"),
        ("user_id" = Option<String>, Query, description = "Exact user id"),
        ("limit" = Option<u32>, Query, description = "Page size, 1..=1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, description = "Detector matches, newest first", body = Page<MatchRow>),
              (status = 400, description = "Bad parameter"), (status = 401, description = "Missing or wrong token")))]
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

#[utoipa::path(get, path = "/api/security/summary", tag = "security",
    params(("since" = Option<String>, Query, description = "RFC 3339 time or unix seconds"), ("until" = Option<String>, Query, description = "RFC 3339 time or unix seconds")),
    responses((status = 200, description = "Threats by level and category and the top offending users (default: the last 7 days)", body = SecuritySummary),
              (status = 400, description = "Bad parameter"), (status = 401, description = "Missing or wrong token")))]
pub(super) async fn security_summary(State(s): State<AdminState>, q: Params) -> ApiResult {
    let q = query(q)?;
    let (since, until) = since_until(&q, ("since", "until"))?;
    let until = until.unwrap_or_else(|| unix_ms(SystemTime::now()));
    let since = since.unwrap_or(until - 7 * DAY_MS);
    params::range(Some(since), Some(until), ("since", "until"))?;
    Ok(Json(analytics::security_summary(&s.store, since, until).await?).into_response())
}

#[utoipa::path(get, path = "/api/requests", tag = "requests",
    params(("since" = Option<String>, Query, description = "RFC 3339 time or unix seconds"), ("until" = Option<String>, Query, description = "RFC 3339 time or unix seconds"),
        ("user_id" = Option<String>, Query, description = "Exact user id"),
        ("model" = Option<String>, Query, description = "Exact model (as asked for, or the upstream id)"),
        ("outcome" = Option<String>, Query, description = "ok, upstream_error, stream_error, failed, rejected, blocked, cancelled or unknown"),
        ("limit" = Option<u32>, Query, description = "Page size, 1..=1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, description = "The request log, newest first", body = Page<RequestRow>),
              (status = 400, description = "Bad parameter"), (status = 401, description = "Missing or wrong token")))]
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

#[utoipa::path(get, path = "/api/requests/{id}", tag = "requests",
    params(("id" = String, Path, description = "Gatehouse request id (x-gatehouse-request-id)")),
    responses((status = 200, description = "One stored request", body = RequestRow),
              (status = 401, description = "Missing or wrong token"), (status = 404, description = "No such request")))]
pub(super) async fn request(State(s): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    match s.store.request(&id).await? {
        Some(row) => Ok(Json(row).into_response()),
        None => Err(AdminError::NotFound(format!("no request with id {id:?}"))),
    }
}

#[utoipa::path(get, path = "/api/export", tag = "requests",
    params(("format" = Option<String>, Query, description = "json (default) or csv"),
        ("kind" = Option<String>, Query, description = "requests (default) or security"),
        ("from" = Option<String>, Query, description = "RFC 3339 time or unix seconds"), ("to" = Option<String>, Query, description = "RFC 3339 time or unix seconds")),
    responses((status = 200, description = "A streamed download (Content-Disposition: attachment): a JSON array or CSV with a header row", content((Vec<RequestRow> = "application/json"), (String = "text/csv"))),
              (status = 400, description = "Bad parameter"), (status = 401, description = "Missing or wrong token")))]
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

#[utoipa::path(post, path = "/api/feedback", tag = "feedback",
    request_body = Feedback,
    responses((status = 201, description = "Stored", body = Object, example = json!({"status": "stored"})),
              (status = 400, description = "Bad body"), (status = 401, description = "Missing or wrong token")))]
pub(super) async fn feedback(
    State(s): State<AdminState>,
    body: Result<Json<Feedback>, JsonRejection>,
) -> ApiResult {
    let Json(fb) = body
        .map_err(|e| AdminError::BadRequest(format!("invalid feedback body: {}", e.body_text())))?;
    s.store.feedback(&fb).await?;
    Ok((StatusCode::CREATED, Json(json!({"status": "stored"}))).into_response())
}

#[utoipa::path(get, path = "/api/feedback/summary", tag = "feedback",
    params(("days" = Option<u32>, Query, description = "Window in days, 1..=365 (default 7)")),
    responses((status = 200, description = "Feedback count and mean score per model", body = Vec<FeedbackSummary>),
              (status = 400, description = "Bad parameter"), (status = 401, description = "Missing or wrong token")))]
pub(super) async fn feedback_summary(State(s): State<AdminState>, q: Params) -> ApiResult {
    let q = query(q)?;
    let days = params::int_in("days", get(&q, "days"), 7, 1, 365)?;
    let since = unix_ms(SystemTime::now()) - i64::from(days) * DAY_MS;
    Ok(Json(s.store.feedback_summary(since).await?).into_response())
}
