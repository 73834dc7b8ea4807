//! The data plane: the OpenAI-compatible proxy listener.
//!
//! Owns the request path (`handle`), the upstream clients, and the bytes on the wire. It never
//! imports the store, exporters or the admin API: each request's `Exchange` goes onto a bounded
//! channel that `app` wires to the consumers.

mod body;
mod error;
mod extras;
mod handle;
mod headers;
mod record;
mod route;
mod runtime;
mod server;
mod upstream;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

pub use error::ProxyError;
pub use runtime::Runtime;
pub use server::{serve, Listener, TlsFiles};

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
}

impl Proxy {
    pub fn new(runtime: Runtime, records: mpsc::Sender<Exchange>, metrics: Arc<Metrics>) -> Proxy {
        Proxy {
            runtime: ArcSwap::from_pointee(runtime),
            records,
            metrics,
            ready: Mutex::new(None),
        }
    }
}
