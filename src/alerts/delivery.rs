//! Delivery: sends each message (an alert's notice or a report digest) to each of its channels
//! in a task of its own, with retries and exponential backoff (a channel's `Retry-After` wins
//! when longer), and stores every attempt. One failing or slow channel never holds back
//! another, nor the engine, nor the proxy.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::analytics::unix_ms;
use crate::config::DeliveryConfig;
use crate::store::{DeliveryRow, Store};

use super::channels::{Answer, Channel, Channels, Failure};
use super::{Message, Notice};

/// Messages waiting for delivery at most; senders drop (and log) beyond this.
pub const QUEUE: usize = 256;
/// Deliveries in flight at most; further notices wait in the queue.
const IN_FLIGHT: usize = 64;

/// What delivery needs: the channels, the shared HTTP client, the store and the retry policy.
pub struct Delivery {
    pub channels: Channels,
    http: reqwest::Client,
    store: Store,
    retries: u32,
    backoff: Duration,
    timeout: Duration,
}

/// The result of sending one notice to one channel, after retries.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub channel: String,
    pub attempts: u32,
    pub result: Result<Answer, Failure>,
}

impl Delivery {
    pub fn new(
        channels: Channels,
        http: reqwest::Client,
        store: Store,
        c: &DeliveryConfig,
    ) -> Delivery {
        Delivery {
            channels,
            http,
            store,
            retries: c.retries,
            backoff: Duration::from_millis(c.backoff_ms),
            timeout: Duration::from_secs(c.timeout_secs),
        }
    }

    /// The channels a rule sends to: those listed (by kind), or all when the list is empty.
    fn selected<'a>(&'a self, kinds: &'a [String]) -> impl Iterator<Item = usize> + 'a {
        self.channels
            .0
            .iter()
            .enumerate()
            .filter(move |(_, (_, c))| kinds.is_empty() || kinds.iter().any(|k| k == c.kind()))
            .map(|(i, _)| i)
    }

    /// Sends `m` to channel number `i`, retrying up to `retries` times; stores every attempt.
    pub async fn deliver(&self, i: usize, m: &Message, retries: u32) -> Outcome {
        let (label, channel) = &self.channels.0[i];
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.attempt(channel, m).await;
            self.record(label, m, attempt, &result).await;
            let wait = match &result {
                Err(Failure {
                    retry: Some(wait), ..
                }) if attempt <= retries => {
                    (*wait).max(self.backoff * 2u32.saturating_pow(attempt - 1))
                }
                _ => {
                    if let Err(f) = &result {
                        tracing::warn!(channel = %label, topic = %m.topic(), attempts = attempt, status = ?f.status, answer = %f.text, "alert channel message not delivered");
                    }
                    return Outcome {
                        channel: label.clone(),
                        attempts: attempt,
                        result,
                    };
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, channel: &Channel, m: &Message) -> Result<Answer, Failure> {
        match tokio::time::timeout(self.timeout, channel.send(&self.http, m)).await {
            Ok(r) => r,
            Err(_) => Err(Failure {
                status: None,
                text: format!("no answer within {} s", self.timeout.as_secs()),
                retry: Some(Duration::ZERO),
            }),
        }
    }

    async fn record(&self, label: &str, m: &Message, attempt: u32, r: &Result<Answer, Failure>) {
        let (ok, status, answer) = match r {
            Ok(a) => (true, a.status, a.text.clone()),
            Err(f) => (false, f.status, f.text.clone()),
        };
        let row = DeliveryRow {
            alert_id: m.id().to_owned(),
            notice: m.kind().into(),
            channel: label.into(),
            attempt: i64::from(attempt),
            ts_ms: unix_ms(SystemTime::now()),
            ok,
            status: status.map(i64::from),
            answer,
        };
        if let Err(e) = self.store.alert_delivery(&row).await {
            tracing::warn!(error = %e, channel = %label, "alert delivery attempt not stored");
        }
    }

    /// Sends a test notice to the channels of kind `kind` (or every channel) once, without
    /// retries, and returns each answer. The test alert is stored like any other.
    pub async fn test(&self, n: &Notice, kind: Option<&str>) -> Vec<Outcome> {
        if let Err(e) = self
            .store
            .alert_insert(&super::engine::row(n, "test"))
            .await
        {
            tracing::warn!(error = %e, "test alert not stored");
        }
        let kinds: Vec<String> = kind.map(str::to_owned).into_iter().collect();
        let picked: Vec<usize> = self.selected(&kinds).collect();
        let m = Message::Alert(n.clone());
        let sends = picked.into_iter().map(|i| self.deliver(i, &m, 0));
        futures_util::future::join_all(sends).await
    }
}

/// Runs delivery until the message queue closes, then lets deliveries in flight finish. Each
/// message goes to the channels of the kinds listed with it (every channel when none is).
pub async fn run_delivery(d: Arc<Delivery>, mut rx: mpsc::Receiver<(Message, Vec<String>)>) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            next = rx.recv(), if tasks.len() < IN_FLIGHT => {
                let Some((message, kinds)) = next else { break };
                let message = Arc::new(message);
                for i in d.selected(&kinds).collect::<Vec<_>>() {
                    let (d, m) = (d.clone(), message.clone());
                    tasks.spawn(async move { d.deliver(i, &m, d.retries).await });
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}
