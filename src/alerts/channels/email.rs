//! E-mail over SMTP (lettre, tokio, rustls with ring). STARTTLS is required by default
//! (`Tls::Required`: certificate and host name verified, webpki roots); `starttls: false`
//! sends in plain text, for a relay on loopback. Subject: `[LEVEL] FIRING: rule (subject)`;
//! the plain-text body carries the summary, every figure and the dashboard link. A report
//! digest's subject is its title and period; its body is `Digest::text`.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{file_secret, Answer, Failure};
use crate::alerts::{rfc3339, Digest, Notice};
use crate::config::{EmailConfig, SecretSource};

/// A configured SMTP channel.
pub struct Email {
    mailer: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Email {
    /// # Errors
    /// An address lettre cannot parse, a user without a password, bad TLS parameters.
    pub fn build(c: &EmailConfig, timeout: Duration) -> Result<Email, String> {
        let host = c.host.clone().unwrap_or_default();
        let parse = |a: &str| a.parse::<Mailbox>().map_err(|e| format!("{a:?}: {e}"));
        let from = parse(&c.from)?;
        let to =
            c.to.iter()
                .map(|a| parse(a))
                .collect::<Result<Vec<_>, _>>()?;
        let tls = if c.starttls {
            let params = TlsParameters::new(host.clone()).map_err(|e| e.to_string())?;
            Tls::Required(params)
        } else {
            Tls::None
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(c.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Ok(user) = SecretSource::Env(c.user_env.clone()).read() {
            let password = SecretSource::Env(c.password_env.clone())
                .read()
                .ok()
                .or_else(|| file_secret(c.password_file.as_deref()))
                .ok_or_else(|| format!("{} is set but there is no password", c.user_env))?;
            builder = builder.credentials(Credentials::new(
                user.expose().to_owned(),
                password.expose().to_owned(),
            ));
        }
        Ok(Email {
            mailer: builder.build(),
            from,
            to,
        })
    }

    /// Sends `n` to every recipient in one message.
    ///
    /// # Errors
    /// SMTP errors; transient (4xx) and connection errors are retried, permanent (5xx) not.
    pub async fn send(&self, n: &Notice) -> Result<Answer, Failure> {
        let subject = format!("{} {}", n.title(), n.summary);
        // Stable per alert and notice: a retried send is recognisably the same message.
        let id = format!("<{}.{}@gatehouse>", n.alert_id, n.kind.as_str());
        self.deliver(subject, id, body(n)).await
    }

    /// Sends a report digest to every recipient in one message.
    ///
    /// # Errors
    /// As `send`.
    pub async fn send_digest(&self, d: &Digest) -> Result<Answer, Failure> {
        let subject = format!("{} ({})", d.title(), d.period_line());
        let id = format!("<{}.digest@gatehouse>", d.report_id);
        self.deliver(subject, id, d.text()).await
    }

    async fn deliver(&self, subject: String, id: String, body: String) -> Result<Answer, Failure> {
        let msg = self.message(subject, id, body).map_err(|e| Failure {
            status: None,
            text: format!("building the message: {e}"),
            retry: None,
        })?;
        match self.mailer.send(msg).await {
            Ok(rsp) => Ok(Answer {
                status: Some(u16::from(rsp.code())),
                text: rsp.message().collect::<Vec<_>>().join(" "),
            }),
            Err(e) => Err(Failure {
                status: e.status().map(u16::from),
                text: smtp_error(&e),
                retry: (!e.is_permanent()).then_some(Duration::ZERO),
            }),
        }
    }

    fn message(
        &self,
        subject: String,
        id: String,
        body: String,
    ) -> Result<Message, lettre::error::Error> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(id))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            b = b.to(to.clone());
        }
        b.body(body)
    }
}

/// The plain-text body.
pub fn body(n: &Notice) -> String {
    let mut out = format!("{}\n\n{}\n\n", n.title(), n.summary);
    out.push_str(&format!("Level: {}\n", n.level.as_str()));
    out.push_str(&format!("Since: {}\n", rfc3339(n.started_at)));
    if let Some(r) = n.resolved_at {
        out.push_str(&format!("Resolved: {}\n", rfc3339(r)));
    }
    out.push_str(&format!("Gateway: {}\n", n.gateway));
    for f in &n.figures {
        out.push_str(&format!("{}: {}\n", f.label, f.shown));
    }
    if let Some(u) = &n.dashboard_url {
        out.push_str(&format!("\nDashboard: {u}\n"));
    }
    out.push_str(&format!(
        "\nAlert {} (fingerprint {})\n",
        n.alert_id,
        n.fingerprint()
    ));
    out
}

fn smtp_error(e: &lettre::transport::smtp::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
