//! Figures read at scrape time rather than fed from records: the detector's segment cache
//! (hits and misses), which lives in the detector and is counted there with two atomics.
//!
//! The source is set once at wiring (`Metrics::watch_segment_cache`), as a closure, so this
//! module does not depend on `detect`. The counts belong to the live detector: a reload builds
//! a new one with an empty cache, so they start again from zero, as after a restart
//! (Prometheus's `rate` and `increase` treat a drop as a counter reset).

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

/// The segment cache's `(hits, misses)` so far, or `None` when detection is off.
pub type CacheStatsFn = Arc<dyn Fn() -> Option<(u64, u64)> + Send + Sync>;

pub const SEGMENT_CACHE_LOOKUPS: &str = "gatehouse_detect_segment_cache_lookups";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    result: &'static str,
}

/// A registered collector's source of figures, set once at wiring as a closure (`app` hands
/// it in, so `telemetry` depends on nothing above it); the collector reports nothing until it
/// is set. Each kind of figure implements `Collector` for its own `Source<…Fn>`.
pub(super) struct Source<F>(OnceLock<F>);

impl<F> Default for Source<F> {
    fn default() -> Self {
        Source(OnceLock::new())
    }
}

impl<F> Source<F> {
    /// Sets the source; a second call is ignored (one detector slot and one proxy per
    /// process).
    pub(super) fn set(&self, f: F) {
        let _ = self.0.set(f);
    }

    pub(super) fn get(&self) -> Option<&F> {
        self.0.get()
    }
}

impl<F> std::fmt::Debug for Source<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("set", &self.0.get().is_some())
            .finish()
    }
}

/// The segment cache's collector.
pub(super) type SegmentCache = Source<CacheStatsFn>;

impl Collector for SegmentCache {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some((hits, misses)) = self.get().and_then(|f| f()) else {
            return Ok(());
        };
        let help = "Message segments the detector looked up in its cache of earlier scans, by \
                    result (a hit skips the scan); since the detector was built.";
        let kind = ConstCounter::new(0u64).metric_type();
        let mut family = encoder.encode_descriptor(SEGMENT_CACHE_LOOKUPS, help, None, kind)?;
        for (result, n) in [("hit", hits), ("miss", misses)] {
            let labels = LookupLabels { result };
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
