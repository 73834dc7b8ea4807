//! Virtual gateway keys in the store, on both backends: a key round-trips whole, only the
//! hash of its secret is stored, and update, rotate and revoke change what they say and only
//! for a live key.

#[path = "store_support/mod.rs"]
mod support;

use gatehouse::config::{BudgetPeriod, LimitsConfig};
use gatehouse::keys::{KeySpec, NewSecret};
use sqlx::Row;
use support::*;

fn spec() -> KeySpec {
    serde_json::from_value(serde_json::json!({
        "name": "ci runner",
        "user": "alice",
        "team": "research",
        "end_users": "trusted",
        "models": ["qwendeepseek"],
        "expires_at": "2030-01-01T00:00:00Z",
        "metadata": {"ticket": "OPS-1", "n": 3},
        "limits": {"requests_per_minute": 60, "budget_usd": 5.0, "per": "day"}
    }))
    .expect("spec parses")
}

#[tokio::test]
async fn keys_round_trip_and_change_only_while_live() {
    for t in temp_stores().await {
        let (store, b) = (&t.store, t.backend);
        let secret = NewSecret::generate().expect("randomness");
        let key = spec()
            .build("k1".into(), &secret, MONDAY_MS)
            .expect("valid spec");
        store.insert_key(&key).await.expect("insert");
        assert_eq!(
            store.keys().await.expect("list"),
            std::slice::from_ref(&key),
            "{b}"
        );
        assert_eq!(
            store.key("k1").await.expect("get"),
            Some(key.clone()),
            "{b}"
        );
        assert_eq!(store.key("nope").await.expect("get"), None, "{b}");
        assert_eq!(key.limits.per, Some(BudgetPeriod::Day));

        // No column holds the secret, or any long piece of it.
        let pool = sqlx::AnyPool::connect(&t.url)
            .await
            .expect("open the database directly");
        {
            let row = sqlx::query("SELECT * FROM gateway_keys")
                .fetch_one(&pool)
                .await
                .expect("row");
            let tail = &secret.secret.expose()[12..];
            for i in 0..row.len() {
                let text: Option<String> = row.try_get(i).ok().flatten();
                assert!(
                    !text.unwrap_or_default().contains(tail),
                    "{b}: column {i} holds the secret"
                );
            }
        }

        assert_eq!(key.end_users, gatehouse::config::EndUsers::Trusted);
        let mut changed = key.clone();
        changed.end_users = gatehouse::config::EndUsers::Ignored;
        changed.limits = LimitsConfig {
            concurrent: Some(2),
            ..LimitsConfig::default()
        };
        changed.updated_at_ms += 1;
        assert!(store.update_key(&changed).await.expect("update"), "{b}");
        let fresh = NewSecret::generate().expect("randomness");
        assert!(store
            .rotate_key("k1", &fresh.hash, &fresh.prefix, MONDAY_MS + 2)
            .await
            .expect("rotate"));
        let now = store.key("k1").await.expect("get").expect("kept");
        assert_eq!(now.limits.concurrent, Some(2), "{b}");
        assert_eq!(now.end_users, gatehouse::config::EndUsers::Ignored, "{b}");
        assert_eq!(now.secret_hash, fresh.hash, "{b}");
        assert_ne!(now.secret_hash, key.secret_hash, "{b}");

        assert!(store.revoke_key("k1", MONDAY_MS + 3).await.expect("revoke"));
        assert!(
            !store.revoke_key("k1", MONDAY_MS + 4).await.expect("again"),
            "{b}"
        );
        assert!(!store.update_key(&changed).await.expect("update"), "{b}");
        assert!(
            !store.rotate_key("k1", "h", "p", 0).await.expect("rotate"),
            "{b}"
        );
        let gone = store.key("k1").await.expect("get").expect("row kept");
        assert_eq!(gone.revoked_at_ms, Some(MONDAY_MS + 3), "{b}");
        assert_eq!(
            gone.secret_hash, fresh.hash,
            "{b}: a revoked key is not changed"
        );
    }
}
