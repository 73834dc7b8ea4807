//! Virtual gateway keys (`gateway_keys`): written by the admin API, read whole by every
//! replica's key sync. The secret is never here, only its hash (see `crate::keys`); models,
//! limits and metadata are JSON text, read back by this module alone.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{query_err, Error, Store};
use crate::keys::VirtualKey;

const COLUMNS: &str =
    "id, secret_hash, prefix, name, \"user\", team, end_users, models, limits, metadata, \
    expires_at_ms, created_at_ms, updated_at_ms, revoked_at_ms";

impl Store {
    /// Stores a new key.
    ///
    /// # Errors
    /// The insert fails (a duplicate id or secret hash included).
    pub async fn insert_key(&self, k: &VirtualKey) -> Result<(), Error> {
        let sql = format!(
            "INSERT INTO gateway_keys ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        );
        sqlx::query(&sql)
            .bind(&k.id)
            .bind(&k.secret_hash)
            .bind(&k.prefix)
            .bind(k.name.as_deref())
            .bind(&k.user)
            .bind(k.team.as_deref())
            .bind(json(&k.end_users))
            .bind(json(&k.models))
            .bind(json(&k.limits))
            .bind(json(&k.metadata))
            .bind(k.expires_at_ms)
            .bind(k.created_at_ms)
            .bind(k.updated_at_ms)
            .bind(k.revoked_at_ms)
            .execute(&self.write)
            .await
            .map_err(query_err("insert key"))?;
        Ok(())
    }

    /// Every key, revoked ones included, oldest first.
    ///
    /// # Errors
    /// The query fails, or a row's JSON cannot be read.
    pub async fn keys(&self) -> Result<Vec<VirtualKey>, Error> {
        let sql = format!("SELECT {COLUMNS} FROM gateway_keys ORDER BY created_at_ms, id");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.read)
            .await
            .map_err(query_err("keys"))?;
        rows.iter()
            .map(key_from)
            .collect::<Result<_, _>>()
            .map_err(query_err("keys"))
    }

    /// One key by id.
    ///
    /// # Errors
    /// The query fails.
    pub async fn key(&self, id: &str) -> Result<Option<VirtualKey>, Error> {
        let sql = format!("SELECT {COLUMNS} FROM gateway_keys WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(query_err("key"))?;
        row.as_ref()
            .map(key_from)
            .transpose()
            .map_err(query_err("key"))
    }

    /// Writes a key's changeable fields (name, end users, models, limits, metadata, expiry). Returns
    /// false when no key with that id is live (missing or revoked).
    ///
    /// # Errors
    /// The update fails.
    pub async fn update_key(&self, k: &VirtualKey) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE gateway_keys SET name = $2, models = $3, limits = $4, metadata = $5, \
             expires_at_ms = $6, updated_at_ms = $7, end_users = $8 \
             WHERE id = $1 AND revoked_at_ms IS NULL",
        )
        .bind(&k.id)
        .bind(k.name.as_deref())
        .bind(json(&k.models))
        .bind(json(&k.limits))
        .bind(json(&k.metadata))
        .bind(k.expires_at_ms)
        .bind(k.updated_at_ms)
        .bind(json(&k.end_users))
        .execute(&self.write)
        .await
        .map_err(query_err("update key"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a live key's secret (its hash and prefix): the old secret stops matching.
    /// Returns false when no key with that id is live.
    ///
    /// # Errors
    /// The update fails.
    pub async fn rotate_key(
        &self,
        id: &str,
        hash: &str,
        prefix: &str,
        now_ms: i64,
    ) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE gateway_keys SET secret_hash = $2, prefix = $3, updated_at_ms = $4 \
             WHERE id = $1 AND revoked_at_ms IS NULL",
        )
        .bind(id)
        .bind(hash)
        .bind(prefix)
        .bind(now_ms)
        .execute(&self.write)
        .await
        .map_err(query_err("rotate key"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Revokes a key at `now_ms` (the row stays). Returns false when it was not live.
    ///
    /// # Errors
    /// The update fails.
    pub async fn revoke_key(&self, id: &str, now_ms: i64) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE gateway_keys SET revoked_at_ms = $2, updated_at_ms = $2 \
             WHERE id = $1 AND revoked_at_ms IS NULL",
        )
        .bind(id)
        .bind(now_ms)
        .execute(&self.write)
        .await
        .map_err(query_err("revoke key"))?;
        Ok(done.rows_affected() == 1)
    }
}

fn json(v: &impl serde::Serialize) -> String {
    // Plain data (strings, numbers, maps of JSON values): serialising cannot fail.
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

fn parsed<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Result<T, sqlx::Error> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode {
        index: col.to_owned(),
        source: Box::new(e),
    })
}

fn key_from(r: &AnyRow) -> Result<VirtualKey, sqlx::Error> {
    Ok(VirtualKey {
        id: r.try_get("id")?,
        secret_hash: r.try_get("secret_hash")?,
        prefix: r.try_get("prefix")?,
        name: r.try_get("name")?,
        user: r.try_get("user")?,
        team: r.try_get("team")?,
        end_users: parsed(r, "end_users")?,
        models: parsed(r, "models")?,
        limits: parsed(r, "limits")?,
        metadata: parsed(r, "metadata")?,
        expires_at_ms: r.try_get("expires_at_ms")?,
        created_at_ms: r.try_get("created_at_ms")?,
        updated_at_ms: r.try_get("updated_at_ms")?,
        revoked_at_ms: r.try_get("revoked_at_ms")?,
    })
}
