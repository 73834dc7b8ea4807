//! The `Recorder`: owns one request's `Exchange` and sends it exactly once — when the response
//! finishes, or when the response (or the request future) is dropped, e.g. because the client
//! went away. On the way it settles the request's quota ticket, if it holds one: the answer's
//! usage and cost go to the limits, and the concurrency slots are freed, before the client can
//! see the end of the answer. It does nothing else on drop.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::event::{Exchange, Outcome};
use crate::llm::prices::Prices;
use crate::quota::{RateHeaders, Ticket};
use crate::telemetry::metrics::Metrics;

pub struct Recorder {
    ex: Option<Box<Exchange>>,
    started: Instant,
    tx: mpsc::Sender<Exchange>,
    metrics: Arc<Metrics>,
    /// The request's hold on its limits, and the prices to cost it with when a budget applies.
    ticket: Option<(Ticket, Option<Arc<Prices>>)>,
}

impl Recorder {
    /// Starts the record of a request that has just arrived.
    pub fn begin(tx: mpsc::Sender<Exchange>, metrics: Arc<Metrics>, ex: Exchange) -> Recorder {
        metrics.in_flight_inc();
        Recorder {
            ex: Some(Box::new(ex)),
            started: Instant::now(),
            tx,
            metrics,
            ticket: None,
        }
    }

    /// Holds the request's quota ticket until the record is finished.
    pub fn hold(&mut self, ticket: Ticket, prices: &Arc<Prices>) {
        let prices = ticket.wants_cost().then(|| prices.clone());
        self.ticket = Some((ticket, prices));
    }

    /// The `x-ratelimit-*` figures of the limits this request counts against.
    pub fn rate_headers(&self) -> Option<RateHeaders> {
        self.ticket.as_ref().map(|(t, _)| t.headers)
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// The record being filled.
    pub fn ex(&mut self) -> &mut Exchange {
        self.ex
            .as_mut()
            .expect("the exchange is only taken in finish")
    }

    /// Finishes the record with the outcome set on it and sends it.
    pub fn finish(mut self) {
        self.send();
    }

    fn send(&mut self) {
        let Some(mut ex) = self.ex.take() else {
            return;
        };
        ex.latency = self.started.elapsed();
        if ex.user.is_none() {
            ex.user.clone_from(&ex.key_user);
        }
        // What the upstream names is bounded like what the client names (`handle::bounded`).
        for s in [&mut ex.response_model, &mut ex.upstream_request_id]
            .into_iter()
            .flatten()
        {
            let keep = crate::redact::cap(s, super::handle::MAX_ID_BYTES).len();
            s.truncate(keep);
        }
        if let Some((ticket, prices)) = self.ticket.take() {
            let cost = prices.and_then(|p| ex.cost_with(&p));
            ticket.settle(ex.usage.total(), cost, super::limit::now_ms());
        }
        self.metrics.in_flight_dec();
        if self.tx.try_send(*ex).is_err() {
            self.metrics.record_dropped("channel");
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(ex) = self.ex.as_mut() {
            if ex.outcome == Outcome::Unknown {
                ex.outcome = Outcome::Cancelled;
            }
        }
        self.send();
    }
}
