//! Telemetry: logging set-up, the Prometheus metrics registry and trace export (OTLP).

pub mod logging;
pub mod metrics;
pub mod otel;
mod text;
