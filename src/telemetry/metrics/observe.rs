//! Recording: one finished `Exchange` → every metric it moves; the in-flight guard.

use std::sync::Arc;

use crate::detect::{Action, RiskLevel};
use crate::event::Exchange;

use super::*;

fn action_str(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Flag => "flag",
        Action::Block => "block",
        Action::Alert => "alert",
    }
}

impl Metrics {
    /// Records one finished request (call from a consumer task, not the proxy path).
    pub fn observe(&self, ex: &Exchange) {
        let model = self.ex_model(ex);
        let outcome = ex.outcome.as_str();
        self.requests
            .get_or_create(&RequestLabels {
                model: model.clone(),
                endpoint: ex.endpoint.as_str(),
                outcome,
                code: ex.status,
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels {
                model: model.clone(),
                outcome,
            })
            .observe(ex.latency.as_secs_f64());
        let labels = ModelLabels { model };
        if let Some(t) = ex.ttft {
            self.ttft.get_or_create(&labels).observe(t.as_secs_f64());
        }
        if let Some(n) = ex.usage.prompt_tokens {
            self.input_tokens.get_or_create(&labels).inc_by(n);
        }
        if let Some(n) = ex.usage.completion_tokens {
            self.output_tokens.get_or_create(&labels).inc_by(n);
        }
        if let Some(c) = ex.cost.filter(|c| c.is_finite() && *c > 0.0) {
            self.cost.get_or_create(&labels).inc_by(c);
        }
        if ex.is_client_error() {
            let kind = ex.error_kind.unwrap_or("other");
            self.client_errors.get_or_create(&KindLabels { kind }).inc();
        }
        if ex.outcome.is_error() {
            let upstream = ex.upstream.as_deref().unwrap_or("none").to_owned();
            let kind = ex.error_kind.unwrap_or(outcome);
            self.upstream_errors
                .get_or_create(&UpstreamErrorLabels { upstream, kind })
                .inc();
        }
        self.observe_verdict(ex, &labels);
        if let Some(j) = &ex.judge {
            let outcome = j.outcome.as_str();
            self.judge_requests
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
            self.judge_duration.observe(j.latency.as_secs_f64());
        }
    }

    fn observe_verdict(&self, ex: &Exchange, labels: &ModelLabels) {
        let blocked = matches!(ex.outcome, crate::event::Outcome::Blocked)
            || ex.verdict.as_ref().is_some_and(|v| v.blocked);
        if blocked {
            self.blocked.get_or_create(labels).inc();
        }
        let Some(v) = ex.verdict.as_deref().filter(|v| v.level > RiskLevel::None) else {
            return;
        };
        for c in &v.categories {
            self.threats
                .get_or_create(&ThreatLabels {
                    category: c.as_str(),
                    level: v.level.as_str(),
                    action: action_str(v.action),
                })
                .inc();
        }
    }

    /// Counts a request as in flight until the returned guard is dropped.
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.in_flight_inc();
        InFlight(self.clone())
    }

    pub fn in_flight_inc(&self) {
        self.in_flight.inc();
    }

    pub fn in_flight_dec(&self) {
        self.in_flight.dec();
    }
}

/// Decrements `gatehouse_requests_in_flight` when dropped.
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight_dec();
    }
}
