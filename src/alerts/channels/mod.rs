//! Delivery channels: each renders a `Message` (an alert's notice or a report digest) in its
//! wire format and sends it once. Retries are `delivery`'s job; a channel only says whether a
//! failure is worth retrying.
//!
//! A channel is enabled when its address (and secret, where it needs one) is present: the
//! SMTP host and recipients, `SLACK_WEBHOOK_URL` (or the configured variable or file), the
//! Teams Workflows URL, each webhook's URL with its `whsec_` secret, the Alertmanager URL.
//! Webhook URLs of Slack and Teams are credentials: they are never logged or stored.

pub mod alertmanager;
pub mod email;
pub mod slack;
pub mod teams;
pub mod webhook;

use std::path::Path;
use std::time::Duration;

use crate::config::{AlertsConfig, Secret, SecretSource, UrlChannelConfig};

use super::{Digest, Message, Notice};

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// One configured channel.
pub enum Channel {
    /// Boxed: the SMTP transport is large and there is one per process.
    Email(Box<email::Email>),
    Slack(Secret),
    Teams(Secret),
    Webhook(webhook::Webhook),
    Alertmanager(String),
}

/// What the far end answered to a successful send.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// HTTP status or SMTP reply code.
    pub status: Option<u16>,
    pub text: String,
}

/// Why a send failed, and whether another attempt may succeed.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub status: Option<u16>,
    pub text: String,
    /// `None`: do not retry (fix the config). `Some(wait)`: retry, after at least `wait`.
    pub retry: Option<Duration>,
}

impl Channel {
    /// The kind, as rules name it: `email`, `slack`, `teams`, `webhook`, `alertmanager`.
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Email(_) => "email",
            Channel::Slack(_) => "slack",
            Channel::Teams(_) => "teams",
            Channel::Webhook(_) => "webhook",
            Channel::Alertmanager(_) => "alertmanager",
        }
    }

    /// Sends `m` once.
    ///
    /// # Errors
    /// The `Failure` says what the far end (or the network) said and whether to retry.
    pub async fn send(&self, http: &reqwest::Client, m: &Message) -> Result<Answer, Failure> {
        match m {
            Message::Alert(n) => self.send_notice(http, n).await,
            Message::Digest(d) => self.send_digest(http, d).await,
        }
    }

    async fn send_notice(&self, http: &reqwest::Client, n: &Notice) -> Result<Answer, Failure> {
        match self {
            Channel::Email(e) => e.send(n).await,
            Channel::Slack(url) => {
                post_json(http, url.expose(), slack::payload(n).to_string(), &[]).await
            }
            Channel::Teams(url) => {
                post_json(http, url.expose(), teams::payload(n).to_string(), &[]).await
            }
            Channel::Webhook(w) => w.send(http, n).await,
            Channel::Alertmanager(url) => {
                post_json(http, url, alertmanager::payload(n).to_string(), &[]).await
            }
        }
    }

    async fn send_digest(&self, http: &reqwest::Client, d: &Digest) -> Result<Answer, Failure> {
        match self {
            Channel::Email(e) => e.send_digest(d).await,
            Channel::Slack(url) => {
                post_json(http, url.expose(), slack::digest(d).to_string(), &[]).await
            }
            Channel::Teams(url) => {
                post_json(http, url.expose(), teams::digest(d).to_string(), &[]).await
            }
            Channel::Webhook(w) => w.send_digest(http, d).await,
            Channel::Alertmanager(_) => Err(Failure {
                status: None,
                text: "alertmanager takes alerts, not report digests".into(),
                retry: None,
            }),
        }
    }
}

/// The enabled channels, each with its label (`email`, `slack`, `webhook#1`, …).
pub struct Channels(pub Vec<(String, Channel)>);

impl Channels {
    /// Builds the channels whose address and secret are present. Problems (a bad secret, an
    /// SMTP setting lettre refuses) disable that channel and are returned as warnings.
    pub fn build(cfg: &AlertsConfig, timeout: Duration) -> (Channels, Vec<String>) {
        let c = &cfg.channels;
        let mut out = Vec::new();
        let mut warnings = Vec::new();
        if c.email.host.is_some() {
            match email::Email::build(&c.email, timeout) {
                Ok(e) => out.push(("email".to_owned(), Channel::Email(Box::new(e)))),
                Err(w) => warnings.push(format!("alerts.channels.email disabled: {w}")),
            }
        }
        if let Some(url) = url_secret(&c.slack, "SLACK_WEBHOOK_URL") {
            out.push(("slack".into(), Channel::Slack(url)));
        }
        if let Some(url) = url_secret(&c.teams, "TEAMS_WEBHOOK_URL") {
            out.push(("teams".into(), Channel::Teams(url)));
        }
        for (i, h) in c.webhooks.iter().enumerate() {
            match webhook::Webhook::build(h) {
                Ok(w) => out.push((format!("webhook#{i}"), Channel::Webhook(w))),
                Err(e) => warnings.push(format!("alerts.channels.webhooks[{i}] disabled: {e}")),
            }
        }
        if let Some(url) = &c.alertmanager.url {
            out.push(("alertmanager".into(), Channel::Alertmanager(url.clone())));
        }
        (Channels(out), warnings)
    }

    /// Labels of the enabled channels.
    pub fn labels(&self) -> Vec<String> {
        self.0.iter().map(|(l, _)| l.clone()).collect()
    }
}

/// A URL from the configured variable (default `default_env`) or file; `None` when neither
/// gives one.
fn url_secret(c: &UrlChannelConfig, default_env: &str) -> Option<Secret> {
    let env = c.webhook_url_env.as_deref().unwrap_or(default_env);
    SecretSource::Env(env.to_owned())
        .read()
        .ok()
        .or_else(|| file_secret(c.webhook_url_file.as_deref()))
}

pub(crate) fn file_secret(path: Option<&Path>) -> Option<Secret> {
    path.and_then(|p| SecretSource::File(p.to_owned()).read().ok())
}

/// POSTs a JSON body and classifies the answer: 2xx is success; 429 and 5xx (and network
/// errors) are retried, honouring `Retry-After`; 3xx and other 4xx are not (the config is
/// wrong). Redirects are not followed (the shared client's policy).
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: String,
    headers: &[(&str, String)],
) -> Result<Answer, Failure> {
    let mut req = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let rsp = req.send().await.map_err(|e| Failure {
        status: None,
        // Without the URL: for Slack and Teams it is the credential.
        text: network_error(&e),
        retry: Some(Duration::ZERO),
    })?;
    let status = rsp.status();
    let retry_after = rsp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
    let text = rsp.text().await.unwrap_or_default();
    let code = Some(status.as_u16());
    if status.is_success() {
        return Ok(Answer { status: code, text });
    }
    let retry = (status.as_u16() == 429 || status.is_server_error())
        .then(|| retry_after.unwrap_or(Duration::ZERO));
    Err(Failure {
        status: code,
        text,
        retry,
    })
}

fn network_error(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut out = what.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Escapes the three characters Slack's mrkdwn reserves.
pub fn escape_slack(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::alerts::{Figure, Level, NoticeKind};

    fn notice(kind: NoticeKind) -> Notice {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        Notice {
            alert_id: "0190abc".into(),
            kind,
            rule: "error_rate".into(),
            subject: "-".into(),
            level: Level::Critical,
            summary: "error rate 7.5% > 5.0% over 5m <b>&".into(),
            figures: vec![Figure {
                name: "error_rate".into(),
                label: "Error rate".into(),
                value: 0.075,
                shown: "7.5% (threshold 5.0%)".into(),
            }],
            started_at: start,
            resolved_at: (kind == NoticeKind::Resolved).then(|| start + Duration::from_secs(600)),
            gateway: "prod-eu-1".into(),
            dashboard_url: Some("https://grafana.example.com/d/gatehouse".into()),
        }
    }

    #[test]
    fn slack_has_text_blocks_figures_and_a_dashboard_button() {
        let p = slack::payload(&notice(NoticeKind::Fired));
        assert!(p["text"]
            .as_str()
            .expect("text")
            .starts_with("[CRITICAL] FIRING: error_rate"));
        let blocks = p["blocks"].as_array().expect("blocks");
        let types: Vec<&str> = blocks
            .iter()
            .map(|b| b["type"].as_str().expect("type"))
            .collect();
        assert_eq!(types, ["header", "section", "context", "actions"]);
        assert_eq!(blocks[0]["text"]["text"], "FIRING: error_rate");
        assert_eq!(
            blocks[1]["text"]["text"], "error rate 7.5% &gt; 5.0% over 5m &lt;b&gt;&amp;",
            "mrkdwn escaped"
        );
        let fields = blocks[1]["fields"].to_string();
        assert!(
            fields.contains("*Error rate*\\n7.5% (threshold 5.0%)"),
            "{fields}"
        );
        assert_eq!(
            blocks[3]["elements"][0]["url"],
            "https://grafana.example.com/d/gatehouse"
        );
    }

    #[test]
    fn teams_is_a_message_with_one_adaptive_card() {
        let p = teams::payload(&notice(NoticeKind::Resolved));
        assert_eq!(p["type"], "message");
        let att = &p["attachments"][0];
        assert_eq!(
            att["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let card = &att["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
        assert_eq!(card["body"][0]["text"], "RESOLVED: error_rate");
        assert_eq!(card["body"][0]["color"], "Good");
        assert_eq!(card["body"][2]["type"], "FactSet");
        assert!(card["body"][2]["facts"]
            .to_string()
            .contains("7.5% (threshold 5.0%)"));
        assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
    }

    #[test]
    fn alertmanager_is_a_version_4_message() {
        let firing = alertmanager::payload(&notice(NoticeKind::Fired));
        assert_eq!(firing["version"], "4");
        assert_eq!(firing["status"], "firing");
        let a = &firing["alerts"][0];
        assert_eq!(a["labels"]["alertname"], "error_rate");
        assert_eq!(a["labels"]["severity"], "critical");
        assert_eq!(a["startsAt"], "2026-01-01T00:00:00Z");
        assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(a["fingerprint"].as_str().expect("fp").len(), 16);
        let resolved = alertmanager::payload(&notice(NoticeKind::Resolved));
        assert_eq!(resolved["status"], "resolved");
        assert_eq!(resolved["alerts"][0]["endsAt"], "2026-01-01T00:10:00Z");
        assert_eq!(
            resolved["alerts"][0]["fingerprint"], a["fingerprint"],
            "same alert"
        );
    }

    #[test]
    fn email_body_has_the_figures_and_the_link() {
        let b = email::body(&notice(NoticeKind::Fired));
        assert!(b.starts_with("[CRITICAL] FIRING: error_rate\n"), "{b}");
        assert!(b.contains("Error rate: 7.5% (threshold 5.0%)"), "{b}");
        assert!(
            b.contains("Dashboard: https://grafana.example.com/d/gatehouse"),
            "{b}"
        );
    }

    #[test]
    fn slack_digest_has_a_header_the_items_and_a_report_button() {
        let d = crate::alerts::digest::tests::digest();
        let p = slack::digest(&d);
        let blocks = p["blocks"].as_array().expect("blocks");
        assert_eq!(
            blocks[0]["text"]["text"],
            "prod-eu-1 daily report: 3 recommendations"
        );
        let items = blocks[2]["text"]["text"].as_str().expect("items");
        assert!(
            items.starts_with("• *[high]* security: User &lt;mallory&gt; keeps probing\n"),
            "{items}"
        );
        assert!(items.ends_with("and 1 more in the report"), "{items}");
        assert_eq!(blocks[4]["elements"][0]["url"], d.link.as_str());
        let mut path_only = d.clone();
        path_only.link = "/api/reports/x?format=html".into();
        let p = slack::digest(&path_only);
        assert_eq!(p["blocks"][4]["type"], "context", "no button without a URL");
    }

    #[test]
    fn teams_digest_is_one_adaptive_card_with_the_period_and_a_link() {
        let d = crate::alerts::digest::tests::digest();
        let p = teams::digest(&d);
        assert_eq!(p["type"], "message");
        let card = &p["attachments"][0]["content"];
        assert_eq!(card["version"], "1.4");
        assert_eq!(
            card["body"][0]["text"],
            "prod-eu-1 daily report: 3 recommendations"
        );
        assert_eq!(card["body"][1]["facts"][0]["value"], d.period_line());
        assert_eq!(
            card["body"][2]["text"],
            "[high] security: User <mallory> keeps probing"
        );
        assert_eq!(card["actions"][0]["url"], d.link.as_str());
    }

    #[test]
    fn webhook_digest_body_carries_the_digest_fields() {
        let d = crate::alerts::digest::tests::digest();
        let b = webhook::digest_body(&d);
        assert_eq!(b["type"], "gateway.report.digest");
        let data = &b["data"];
        assert_eq!(data["report_id"], d.report_id.as_str());
        assert_eq!(data["zone"], "Europe/Paris");
        assert_eq!(data["from"], "2026-03-29T00:00:00+01:00");
        assert_eq!(data["recommendations"], 3);
        assert_eq!(data["top"].as_array().map(Vec::len), Some(2));
        assert_eq!(data["top"][0]["priority"], "high");
    }
}
