//! `GET /api/quotas`: every configured limit and where it stands now, read from the proxy's
//! in-memory counters (`quota`), never from the store.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;

use super::routes::{get, query, ApiResult, Params};
use super::{params, AdminError, AdminState};
use crate::quota::QuotaView;

/// End users listed when `users` is not given.
const DEFAULT_USERS: u32 = 10;
/// The most end users one answer lists (the cache can hold many more).
const MAX_USERS: u32 = 100;

#[utoipa::path(get, path = "/api/quotas", tag = "quotas",
    params(("users" = Option<u32>, Query, description = "End users to list, the most used first, 0..=100 (default 10)", minimum = 0, maximum = 100)),
    responses((status = 200, description = "Per configured scope (keys by their user, never their secret; teams; models; the gateway) and the busiest end users: requests and tokens used and remaining this minute and day, requests in flight against the concurrency cap, spend this period against the budget (USD, period, period end); refusals since start per scope and reason", body = QuotaView),
              (status = 400, description = "Bad parameter"), (status = 401, description = "Missing or wrong token"),
              (status = 503, description = "The proxy has stopped")))]
pub(super) async fn quotas(State(s): State<AdminState>, q: Params) -> ApiResult {
    let q = query(q)?;
    let users = params::int_in("users", get(&q, "users"), DEFAULT_USERS, 0, MAX_USERS)?;
    let view = s
        .quotas
        .as_ref()
        .and_then(|f| f(users as usize))
        .ok_or_else(|| AdminError::Unavailable("the proxy has stopped".into()))?;
    Ok(Json(view).into_response())
}
