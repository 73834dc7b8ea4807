//! Metrics the proxy path touches directly (in-flight requests, dropped records, reloads).
//! Everything measured per request is derived from `Exchange` records off the hot path.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    in_flight: AtomicI64,
    dropped: AtomicU64,
    reload_ok: AtomicI64,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            reload_ok: AtomicI64::new(1),
            ..Metrics::default()
        }
    }
    pub fn in_flight_inc(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }
    pub fn in_flight_dec(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }
    pub fn record_dropped(&self, _consumer: &'static str) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
    pub fn records_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    pub fn config_reload(&self, success: bool) {
        self.reload_ok.store(i64::from(success), Ordering::Relaxed);
    }
    pub fn render(&self, _openmetrics: bool) -> (&'static str, String) {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# TYPE gatehouse_requests_in_flight gauge\ngatehouse_requests_in_flight {}",
            self.in_flight()
        );
        let _ = writeln!(
            s,
            "# TYPE gatehouse_records_dropped_total counter\ngatehouse_records_dropped_total {}",
            self.records_dropped()
        );
        let _ = writeln!(
            s,
            "# TYPE gatehouse_config_reload_success gauge\ngatehouse_config_reload_success {}",
            self.reload_ok.load(Ordering::Relaxed)
        );
        ("text/plain; version=0.0.4; charset=utf-8", s)
    }
}
