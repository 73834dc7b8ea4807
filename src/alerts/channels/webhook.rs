//! Generic webhooks signed per Standard Webhooks 1.0: headers `webhook-id` (the alert id and
//! notice kind: stable across retries, the receiver's idempotency key), `webhook-timestamp`
//! (unix seconds of *this* attempt) and `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `"{id}.{timestamp}.{body}"`, keyed with the base64-*decoded* part of the `whsec_` secret.
//! The body is `{"type", "timestamp", "data"}` with `data` shaped like one Alertmanager alert,
//! so receivers can share parsers. A report digest has type `gateway.report.digest`, id
//! `msg_<report id>_digest`, and the digest's fields as `data`.

use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{file_secret, post_json, Answer, Failure};
use crate::alerts::{rfc3339, Digest, Notice};
use crate::config::{SecretSource, WebhookConfig};

/// A webhook endpoint with its signing key.
pub struct Webhook {
    url: String,
    key: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("no signing secret: set secret_env or secret_file")]
    Missing,
    #[error("the signing secret is not whsec_ followed by base64")]
    Malformed,
}

/// The HMAC key of a `whsec_<base64>` secret (the prefix is optional, as in the reference
/// libraries).
///
/// # Errors
/// The rest is not base64.
pub fn key_of(secret: &str) -> Result<Vec<u8>, SecretError> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD.decode(b64).map_err(|_| SecretError::Malformed)
}

/// The `webhook-signature` value for one message.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

impl Webhook {
    /// # Errors
    /// The secret is missing or not `whsec_<base64>`.
    pub fn build(c: &WebhookConfig) -> Result<Webhook, SecretError> {
        let secret = c
            .secret_env
            .as_ref()
            .and_then(|e| SecretSource::Env(e.clone()).read().ok())
            .or_else(|| file_secret(c.secret_file.as_deref()))
            .ok_or(SecretError::Missing)?;
        Ok(Webhook {
            url: c.url.clone(),
            key: key_of(secret.expose())?,
        })
    }

    /// Signs and posts `n`.
    ///
    /// # Errors
    /// As `post_json`.
    pub async fn send(&self, http: &reqwest::Client, n: &Notice) -> Result<Answer, Failure> {
        let id = format!("msg_{}_{}", n.alert_id, n.kind.as_str());
        self.post(http, &id, body(n).to_string()).await
    }

    /// Signs and posts a report digest.
    ///
    /// # Errors
    /// As `post_json`.
    pub async fn send_digest(&self, http: &reqwest::Client, d: &Digest) -> Result<Answer, Failure> {
        let id = format!("msg_{}_digest", d.report_id);
        self.post(http, &id, digest_body(d).to_string()).await
    }

    async fn post(
        &self,
        http: &reqwest::Client,
        id: &str,
        body: String,
    ) -> Result<Answer, Failure> {
        let ts = crate::analytics::unix_ms(SystemTime::now()) / 1000;
        let headers = [
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sign(&self.key, id, ts, &body)),
        ];
        post_json(http, &self.url, body, &headers).await
    }
}

/// `{"type": "gateway.report.digest", "timestamp", "data": <digest>}`.
pub fn digest_body(d: &Digest) -> serde_json::Value {
    let top: Vec<serde_json::Value> = d
        .items
        .iter()
        .map(|i| json!({"priority": i.priority, "group": i.group, "title": i.title}))
        .collect();
    json!({
        "type": "gateway.report.digest",
        "timestamp": rfc3339(d.created_at),
        "data": {
            "report_id": d.report_id,
            "period": d.period,
            "from": d.from,
            "to": d.to,
            "zone": d.zone,
            "engine": d.engine,
            "recommendations": d.total,
            "top": top,
            "link": d.link,
            "gateway": d.gateway,
        }
    })
}

/// `{"type": "gateway.alert.<fired|resolved|test>", "timestamp", "data": <alert>}`.
pub fn body(n: &Notice) -> serde_json::Value {
    let alert = &super::alertmanager::payload(n)["alerts"][0];
    json!({
        "type": format!("gateway.alert.{}", n.kind.as_str()),
        "timestamp": rfc3339(n.resolved_at.unwrap_or(n.started_at)),
        "data": {
            "id": n.alert_id,
            "status": alert["status"],
            "labels": alert["labels"],
            "annotations": alert["annotations"],
            "startsAt": alert["startsAt"],
            "endsAt": alert["endsAt"],
            "fingerprint": alert["fingerprint"],
            "figures": n.figures_json(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published vector of the reference file (cross-checked with the `standardwebhooks`
    /// Python library).
    #[test]
    fn signature_matches_the_spec_test_vector() {
        let key = key_of("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("base64");
        assert_eq!(
            key,
            (0u8..32).collect::<Vec<_>>(),
            "the secret is base64-decoded"
        );
        let body = r#"{"type":"gateway.alert.fired","timestamp":"2026-01-01T00:00:00Z","data":{"alert":"HighErrorRate"}}"#;
        assert_eq!(
            sign(&key, "msg_gw_0001", 1_767_225_600, body),
            "v1,wjhjp8Mcy+YPmx/rdT/4sB3/rqdBqhw+ZgNRyq1oqbM="
        );
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert!(key_of("whsec_not base64!").is_err());
    }
}
