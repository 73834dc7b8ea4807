//! Telemetry: logging set-up and the Prometheus metrics registry.

pub mod logging;
pub mod metrics;
mod text;
