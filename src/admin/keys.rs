//! Virtual gateway keys: `POST /api/keys` (create; the secret is in this answer only),
//! `GET /api/keys`, `GET /api/keys/{id}`, `PATCH /api/keys/{id}`, `POST /api/keys/{id}/rotate`
//! (a new secret, in this answer only; the old one stops working) and `DELETE /api/keys/{id}`
//! (revoke; the key is kept, with `revoked_at`).
//!
//! Each write goes to the store, then this replica's proxy re-reads the keys before the answer
//! is sent, so the change applies here at once; other replicas apply it at their next sync
//! (`auth.sync_secs`). Logs name a key by id and prefix, never by its secret.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;

use crate::analytics::unix_ms;
use crate::keys::{KeyPatch, KeySpec, KeyView, NewSecret, VirtualKey};

use super::routes::ApiResult;
use super::{AdminError, AdminState};

/// A key with its secret: the answer to create and rotate, the only time the secret is shown.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct WithSecret {
    #[serde(flatten)]
    key: KeyView,
    /// The key to send as `Authorization: Bearer <secret>`. Shown once: store it now.
    secret: String,
}

fn now() -> i64 {
    unix_ms(std::time::SystemTime::now())
}

fn secret() -> Result<NewSecret, AdminError> {
    NewSecret::generate()
        .map_err(|_| AdminError::Unavailable("no randomness available for a new key".into()))
}

async fn synced(s: &AdminState) {
    if let Some(sync) = &s.keys_synced {
        sync().await;
    }
}

fn invalid(problems: Vec<String>) -> AdminError {
    AdminError::BadRequest(problems.join("; "))
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, AdminError> {
    b.map(|Json(v)| v)
        .map_err(|e| AdminError::BadRequest(format!("invalid key body: {}", e.body_text())))
}

async fn find(s: &AdminState, id: &str) -> Result<VirtualKey, AdminError> {
    s.store
        .key(id)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no key with id {id:?}")))
}

#[utoipa::path(post, path = "/api/keys", tag = "keys", request_body = KeySpec,
    responses((status = 201, description = "The key, with its secret (shown this once)", body = WithSecret),
              (status = 400, description = "Bad body; the message names each bad field"), (status = 401, description = "Missing or wrong token")))]
pub(super) async fn create(
    State(s): State<AdminState>,
    spec: Result<Json<KeySpec>, JsonRejection>,
) -> ApiResult {
    let spec = body(spec)?;
    let new = secret()?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = now();
    let key = spec.build(id, &new, now).map_err(invalid)?;
    s.store.insert_key(&key).await?;
    tracing::info!(id = %key.id, prefix = %key.prefix, user = %key.user, "virtual key created");
    synced(&s).await;
    let answer = WithSecret {
        key: KeyView::new(&key, now),
        secret: new.secret.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

#[utoipa::path(get, path = "/api/keys", tag = "keys", operation_id = "list_keys",
    responses((status = 200, description = "Every virtual key, revoked ones included, oldest first; never a secret", body = Vec<KeyView>),
              (status = 401, description = "Missing or wrong token")))]
pub(super) async fn list(State(s): State<AdminState>) -> ApiResult {
    let now = now();
    let keys: Vec<KeyView> = s
        .store
        .keys()
        .await?
        .iter()
        .map(|k| KeyView::new(k, now))
        .collect();
    Ok(Json(keys).into_response())
}

#[utoipa::path(get, path = "/api/keys/{id}", tag = "keys", operation_id = "get_key",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 200, description = "One key; never its secret", body = KeyView),
              (status = 401, description = "Missing or wrong token"), (status = 404, description = "No such key")))]
pub(super) async fn read(State(s): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    Ok(Json(KeyView::new(&find(&s, &id).await?, now())).into_response())
}

#[utoipa::path(patch, path = "/api/keys/{id}", tag = "keys", request_body = KeyPatch,
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 200, description = "The key as changed", body = KeyView),
              (status = 400, description = "Bad body; the message names each bad field"), (status = 401, description = "Missing or wrong token"),
              (status = 404, description = "No such key"), (status = 409, description = "The key is revoked")))]
pub(super) async fn update(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    patch: Result<Json<KeyPatch>, JsonRejection>,
) -> ApiResult {
    let patch = body(patch)?;
    let key = live(find(&s, &id).await?)?;
    let now = now();
    let key = patch.apply(key, now).map_err(invalid)?;
    if !s.store.update_key(&key).await? {
        return Err(revoked(&id));
    }
    tracing::info!(id = %key.id, prefix = %key.prefix, "virtual key changed");
    synced(&s).await;
    Ok(Json(KeyView::new(&key, now)).into_response())
}

#[utoipa::path(post, path = "/api/keys/{id}/rotate", tag = "keys",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 200, description = "The key with its new secret (shown this once); the old secret no longer works", body = WithSecret),
              (status = 401, description = "Missing or wrong token"), (status = 404, description = "No such key"), (status = 409, description = "The key is revoked")))]
pub(super) async fn rotate(State(s): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    let mut key = live(find(&s, &id).await?)?;
    let new = secret()?;
    let now = now();
    if !s.store.rotate_key(&id, &new.hash, &new.prefix, now).await? {
        return Err(revoked(&id));
    }
    (key.secret_hash, key.prefix, key.updated_at_ms) = (new.hash.clone(), new.prefix.clone(), now);
    tracing::info!(id = %key.id, prefix = %key.prefix, "virtual key rotated");
    synced(&s).await;
    let answer = WithSecret {
        key: KeyView::new(&key, now),
        secret: new.secret.expose().to_owned(),
    };
    Ok(Json(answer).into_response())
}

#[utoipa::path(delete, path = "/api/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 200, description = "The key, revoked (revoking again changes nothing)", body = KeyView),
              (status = 401, description = "Missing or wrong token"), (status = 404, description = "No such key")))]
pub(super) async fn revoke(State(s): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    find(&s, &id).await?;
    if s.store.revoke_key(&id, now()).await? {
        tracing::info!(id = %id, "virtual key revoked");
    }
    synced(&s).await;
    Ok(Json(KeyView::new(&find(&s, &id).await?, now())).into_response())
}

fn live(k: VirtualKey) -> Result<VirtualKey, AdminError> {
    match k.revoked_at_ms {
        Some(_) => Err(revoked(&k.id)),
        None => Ok(k),
    }
}

fn revoked(id: &str) -> AdminError {
    AdminError::Conflict(format!("key {id:?} is revoked and cannot be changed"))
}
