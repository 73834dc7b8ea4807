//! `gatehouse check` for trace backends: an empty export (no spans) to each backend, which
//! every OTLP receiver accepts (Langfuse answers `{}`), tells whether it is reachable and
//! whether it accepts the credentials, without creating a trace.

use std::time::Duration;

use super::send::{self, Sent};
use super::Exporter;

/// What one backend answered to the probe.
#[derive(Debug)]
pub struct Check {
    pub backend: String,
    pub url: String,
    /// One line for the operator.
    pub summary: String,
    /// False when the backend rejected the keys or could not be reached.
    pub ok: bool,
}

/// Probes every backend, each within `timeout`.
pub async fn check(e: &Exporter, client: &reqwest::Client, timeout: Duration) -> Vec<Check> {
    let mut out = Vec::new();
    for b in &e.backends {
        let body = send::encode(&e.source, Vec::new());
        let sent = tokio::time::timeout(timeout, send::post(client, b, body))
            .await
            .unwrap_or_else(|_| Sent::Retry {
                reason: "timeout".into(),
                retry_after: None,
            });
        let (ok, summary) = match sent {
            Sent::Ok => (true, "reachable, credentials accepted".to_owned()),
            Sent::Unauthorized(code) => (false, format!("credentials rejected ({code})")),
            Sent::Rejected(code, body) => (false, format!("answered {code}: {body}")),
            Sent::Retry { reason, .. } => (false, format!("not usable now: {reason}")),
        };
        out.push(Check {
            backend: b.name.clone(),
            url: b.url.clone(),
            summary,
            ok,
        });
    }
    out
}
