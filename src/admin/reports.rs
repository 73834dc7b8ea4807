//! Report and threshold routes: list (paged) and read reports, generate one for a period (and
//! send its digest), the latest recommendations, and the risk thresholds (read, dry run,
//! change). Thin: parameters → `report::Reporter`.

use std::collections::HashMap;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiff::civil::Date;
use serde::Deserialize;
use serde_json::json;

use crate::config::ThresholdsConfig;
use crate::report::{self, Period, Reporter, Trigger};

use super::{params, AdminError, AdminState};

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;
type ApiResult = Result<Response, AdminError>;

fn reporter(s: &AdminState) -> Result<&Reporter, AdminError> {
    s.reports
        .as_ref()
        .ok_or_else(|| AdminError::Unavailable("reports are not available".into()))
}

fn query(q: Params) -> Result<HashMap<String, String>, AdminError> {
    q.map(|Query(m)| m)
        .map_err(|e| AdminError::BadRequest(format!("malformed query string: {}", e.body_text())))
}

impl From<report::Error> for AdminError {
    fn from(e: report::Error) -> AdminError {
        match e {
            report::Error::InvalidThresholds(m) => AdminError::BadRequest(m),
            report::Error::Apply(m) => {
                AdminError::Unavailable(format!("thresholds not applied: {m}"))
            }
            report::Error::Store(e) => AdminError::Store(e),
            report::Error::Analytics(e) => AdminError::Analytics(e),
            report::Error::Period(e) => AdminError::BadRequest(format!("no such period: {e}")),
        }
    }
}

#[utoipa::path(get, path = "/api/reports", tag = "reports", operation_id = "list_reports",
    params(("limit" = Option<u32>, Query, description = "Page size, 1..=500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, description = "Stored reports (without bodies), newest first, and `next_cursor` when there may be more", body = Object), (status = 400, description = "Bad parameter"), (status = 401, description = "Missing or wrong token")))]
pub(super) async fn list(State(s): State<AdminState>, q: Params) -> ApiResult {
    let q = query(q)?;
    let limit = params::int_in("limit", q.get("limit").map(String::as_str), 50, 1, 500)?;
    let after = q.get("cursor").map(|c| cursor(c)).transpose()?;
    let after = after.as_ref().map(|(ms, id)| (*ms, id.as_str()));
    let items = reporter(&s)?.store().reports(limit, after).await?;
    // A full page gets a cursor at its last report, as the request log's pages do.
    let next_cursor = (items.len() as u64 >= u64::from(limit))
        .then(|| items.last().map(|r| format!("{}.{}", r.created_ms, r.id)))
        .flatten();
    Ok(Json(json!({ "items": items, "next_cursor": next_cursor })).into_response())
}

/// A report page cursor: `<created_ms>.<id>` of the last report of the previous page.
fn cursor(raw: &str) -> Result<(i64, String), AdminError> {
    raw.split_once('.')
        .and_then(|(ms, id)| {
            let ms = ms.parse::<i64>().ok()?;
            uuid::Uuid::parse_str(id).ok()?;
            Some((ms, id.to_owned()))
        })
        .ok_or_else(|| {
            AdminError::BadRequest(format!(
                "cursor must be a next_cursor from a previous page, got {raw:?}"
            ))
        })
}

#[utoipa::path(get, path = "/api/reports/{id}", tag = "reports",
    params(("id" = String, Path, description = "Report id"), ("format" = Option<String>, Query, description = "md, html or json (default)")),
    responses((status = 200, description = "One report", body = Object), (status = 404, description = "No such report"), (status = 400, description = "Bad parameter"), (status = 401, description = "Missing or wrong token")))]
pub(super) async fn read(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    q: Params,
) -> ApiResult {
    let q = query(q)?;
    let format = q.get("format").map_or("json", String::as_str);
    let r = reporter(&s)?
        .store()
        .report(Some(&id))
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no report with id {id:?}")))?;
    let (ct, body) = match format {
        "json" => ("application/json", r.json),
        "md" => ("text/markdown; charset=utf-8", r.markdown),
        "html" => ("text/html; charset=utf-8", r.html),
        other => {
            return Err(AdminError::BadRequest(format!(
                "format must be md, html or json, got {other:?}"
            )))
        }
    };
    Ok(([(header::CONTENT_TYPE, ct)], body).into_response())
}

#[utoipa::path(post, path = "/api/reports/generate", tag = "reports",
    params(("period" = Option<String>, Query, description = "daily (default), weekly or monthly"),
        ("date" = Option<String>, Query, description = "YYYY-MM-DD: the period containing this local date (default: the previous complete period)"),
        ("digest" = Option<bool>, Query, description = "Also send the digest through the alert channels (default false)")),
    responses((status = 201, description = "The report, written now", body = Object), (status = 400, description = "Bad parameter"), (status = 401, description = "Missing or wrong token"), (status = 503, description = "A digest was asked for but digests are off")))]
pub(super) async fn generate(State(s): State<AdminState>, q: Params) -> ApiResult {
    let q = query(q)?;
    let raw = q.get("period").map_or("daily", String::as_str);
    let period = Period::parse(raw).ok_or_else(|| {
        AdminError::BadRequest(format!(
            "period must be daily, weekly or monthly, got {raw:?}"
        ))
    })?;
    let date = q.get("date").map(|d| date(d)).transpose()?;
    let digest = match q.get("digest").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(AdminError::BadRequest(format!(
                "digest must be true or false, got {other:?}"
            )))
        }
    };
    let reporter = reporter(&s)?;
    let trigger = if digest {
        if let Some(why) = reporter.digest_unavailable() {
            return Err(AdminError::Unavailable(format!("no digest: {why}")));
        }
        Trigger::ManualWithDigest
    } else {
        Trigger::Manual
    };
    let r = reporter.generate(period, date, trigger).await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

/// A local date `YYYY-MM-DD` between 1970 and 9998.
fn date(raw: &str) -> Result<Date, AdminError> {
    raw.parse::<Date>()
        .ok()
        .filter(|d| (1970..=9998).contains(&d.year()) && raw.len() == 10)
        .ok_or_else(|| {
            AdminError::BadRequest(format!("date must be a local date YYYY-MM-DD, got {raw:?}"))
        })
}

#[utoipa::path(get, path = "/api/recommendations", tag = "reports",
    responses((status = 200, description = "The latest report's recommendations", body = Object), (status = 401, description = "Missing or wrong token")))]
pub(super) async fn recommendations(State(s): State<AdminState>) -> ApiResult {
    let Some(r) = reporter(&s)?.store().report(None).await? else {
        return Err(AdminError::NotFound(
            "no report yet: POST /api/reports/generate".into(),
        ));
    };
    let v: serde_json::Value = serde_json::from_str(&r.json).unwrap_or_default();
    Ok(Json(json!({
        "report_id": r.id,
        "period": r.period,
        "created": v["created"],
        "engine": v["engine"],
        "recommendations": v["recommendations"],
        "threshold_proposal": v["figures"]["threshold_proposal"],
        "threat_trends": v["figures"]["threat_trends"],
    }))
    .into_response())
}

/// Body of `POST /api/config/thresholds`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ThresholdsBody {
    low: f32,
    medium: f32,
    high: f32,
    critical: f32,
    #[serde(default)]
    dry_run: bool,
}

#[utoipa::path(post, path = "/api/config/thresholds", tag = "reports",
    request_body(content = Object, description = "{low, medium, high, critical, dry_run}"),
    responses((status = 200, description = "The replayed effect, and the change when not a dry run", body = Object), (status = 400, description = "Bad parameter"), (status = 401, description = "Missing or wrong token")))]
pub(super) async fn set_thresholds(
    State(s): State<AdminState>,
    body: Result<Json<ThresholdsBody>, JsonRejection>,
) -> ApiResult {
    let Json(b) = body.map_err(|e| {
        AdminError::BadRequest(format!("invalid thresholds body: {}", e.body_text()))
    })?;
    let new = ThresholdsConfig {
        low: b.low,
        medium: b.medium,
        high: b.high,
        critical: b.critical,
    };
    let outcome = reporter(&s)?
        .set_thresholds(new, b.dry_run, "admin api")
        .await?;
    Ok(Json(outcome).into_response())
}

#[utoipa::path(get, path = "/api/config/thresholds", tag = "reports",
    responses((status = 200, description = "The live thresholds and their change history", body = Object), (status = 401, description = "Missing or wrong token")))]
pub(super) async fn thresholds(State(s): State<AdminState>) -> ApiResult {
    let (current, history) = reporter(&s)?.thresholds().await?;
    Ok(Json(json!({ "current": current, "history": history })).into_response())
}
