//! The data plane: the OpenAI-compatible proxy listener.
//!
//! Owns the request path (`handle`), the upstream clients, and the bytes on the wire. It never
//! imports the store, exporters or the admin API: each request's `Exchange` goes onto a bounded
//! channel that `app` wires to the consumers.

mod body;
mod capture;
mod error;
mod extras;
pub mod feedback;
mod guard;
mod handle;
mod headers;
mod id;
mod judge;
pub mod kind;
mod limit;
pub mod openapi;
mod record;
mod route;
mod runtime;
mod server;
pub mod side;
mod upstream;
mod vkeys;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

pub use error::ProxyError;
pub use guard::settings as detect_settings;
pub use runtime::Runtime;
pub use server::{accept_loop, serve, Limits, Listener, TlsFiles};
pub use vkeys::VirtualKeys;

use crate::detect::{Behaviour, BehaviourConfig};
use crate::event::Exchange;
use crate::telemetry::metrics::Metrics;

/// State shared by every connection of the proxy listener.
pub struct Proxy {
    /// The live runtime; replaced whole on reload.
    pub runtime: ArcSwap<Runtime>,
    records: mpsc::Sender<Exchange>,
    metrics: Arc<Metrics>,
    /// Last readiness probe: when, and whether the upstream answered.
    ready: Mutex<Option<(Instant, bool)>>,
    /// Per-user threat history; outlives reloads.
    behaviour: Option<Behaviour>,
    /// Where `POST /v1/feedback` goes (the store, wired by `app`); `None` answers 404.
    feedback: Option<mpsc::Sender<feedback::Rating>>,
    /// The keys created at run time (`app` keeps them in step with the store); outlive
    /// reloads.
    pub keys: VirtualKeys,
}

impl Proxy {
    pub fn new(runtime: Runtime, records: mpsc::Sender<Exchange>, metrics: Arc<Metrics>) -> Proxy {
        let b = &runtime.config.detect.behaviour;
        let behaviour = b.enabled.then(|| {
            Behaviour::new(BehaviourConfig {
                window: Duration::from_secs(b.window_secs),
                high_risk_limit: b.high_risk_limit,
                cooldown: Duration::from_secs(b.cooldown_secs),
                max_users: b.max_users,
            })
        });
        Proxy {
            behaviour,
            runtime: ArcSwap::from_pointee(runtime),
            records,
            metrics,
            ready: Mutex::new(None),
            feedback: None,
            keys: VirtualKeys::default(),
        }
    }

    /// The per-user behaviour window, when enabled (the fleet sync feeds it).
    pub fn behaviour(&self) -> Option<&Behaviour> {
        self.behaviour.as_ref()
    }

    /// Accepts `POST /v1/feedback` and hands each rating to `tx`, whose consumer answers it
    /// (a full queue answers 503 at once).
    pub fn with_feedback(mut self, tx: mpsc::Sender<feedback::Rating>) -> Proxy {
        self.feedback = Some(tx);
        self
    }
}
