//! The store consumer: one task that batches records from its channel into transactions.
//!
//! A batch is committed when it reaches `batch` records or when its first record has waited
//! `flush`; whichever comes first. Shutdown is the channel closing (the dispatcher dropped its
//! sender): the task then commits everything still queued and returns. A batch that fails is
//! retried a few times, then dropped and counted, so a sick disk cannot wedge the task or grow
//! memory without bound (the bounded channel in front of it drops instead).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::config::{CaptureConfig, StoreConfig};
use crate::event::Exchange;

use super::Store;

/// Attempts per batch before it is dropped.
const WRITE_ATTEMPTS: u32 = 3;
/// Pause before retrying a failed batch (multiplied by the attempt number).
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Called after every commit attempt (e.g. to set the queue-depth gauge and the write-latency
/// histogram); `app` wires it to `telemetry::metrics`, so the store does not depend on metrics.
pub type FlushObserver = Arc<dyn Fn(&FlushStats) + Send + Sync>;

/// How the writer batches.
#[derive(Clone)]
pub struct WriterConfig {
    /// Records per transaction at most.
    pub batch: usize,
    /// How long a partial batch may wait.
    pub flush: Duration,
    pub capture: CaptureConfig,
    pub observer: Option<FlushObserver>,
}

impl WriterConfig {
    /// The writer settings of a store config section (no observer).
    pub fn from_config(cfg: &StoreConfig) -> WriterConfig {
        WriterConfig {
            batch: cfg.batch.max(1),
            flush: Duration::from_millis(cfg.flush_ms.max(1)),
            capture: cfg.capture.clone(),
            observer: None,
        }
    }
}

/// One commit, as reported to the observer.
#[derive(Clone, Copy, Debug)]
pub struct FlushStats {
    /// Records in the batch.
    pub records: usize,
    /// Time spent writing it (all attempts).
    pub elapsed: Duration,
    /// Records still waiting in the channel after the commit.
    pub queue_depth: usize,
    /// False when the batch was dropped after `WRITE_ATTEMPTS` failures.
    pub ok: bool,
}

/// What the writer did over its life, returned when the channel closes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterSummary {
    pub written: u64,
    pub failed: u64,
    pub batches: u64,
}

/// Runs the store writer until `rx` is closed and drained.
pub async fn run_writer(
    store: Store,
    mut rx: mpsc::Receiver<Arc<Exchange>>,
    cfg: WriterConfig,
) -> WriterSummary {
    let mut summary = WriterSummary::default();
    let mut buf: Vec<Arc<Exchange>> = Vec::with_capacity(cfg.batch);
    loop {
        if rx.recv_many(&mut buf, cfg.batch).await == 0 {
            break;
        }
        let closed = fill(&mut rx, &mut buf, &cfg).await;
        flush(&store, &mut buf, &cfg, rx.len(), &mut summary).await;
        if closed {
            break;
        }
    }
    if !buf.is_empty() {
        flush(&store, &mut buf, &cfg, 0, &mut summary).await;
    }
    tracing::debug!(
        written = summary.written,
        failed = summary.failed,
        "store writer stopped"
    );
    summary
}

/// Tops up `buf` until it is full or the flush interval has passed; true when the channel closed.
async fn fill(
    rx: &mut mpsc::Receiver<Arc<Exchange>>,
    buf: &mut Vec<Arc<Exchange>>,
    cfg: &WriterConfig,
) -> bool {
    let deadline = tokio::time::Instant::now() + cfg.flush;
    while buf.len() < cfg.batch {
        let room = cfg.batch - buf.len();
        match tokio::time::timeout_at(deadline, rx.recv_many(buf, room)).await {
            Ok(0) => return true,
            Ok(_) => {}
            Err(_elapsed) => break,
        }
    }
    false
}

async fn flush(
    store: &Store,
    buf: &mut Vec<Arc<Exchange>>,
    cfg: &WriterConfig,
    queue_depth: usize,
    summary: &mut WriterSummary,
) {
    let started = Instant::now();
    let mut ok = false;
    for attempt in 1..=WRITE_ATTEMPTS {
        match store.insert_batch(buf, &cfg.capture).await {
            Ok(()) => {
                ok = true;
                break;
            }
            Err(e) if attempt == WRITE_ATTEMPTS => {
                tracing::error!(error = %e, records = buf.len(), "store batch dropped");
            }
            Err(_) => tokio::time::sleep(RETRY_PAUSE * attempt).await,
        }
    }
    let records = buf.len();
    summary.batches += 1;
    if ok {
        summary.written += records as u64;
    } else {
        summary.failed += records as u64;
    }
    if let Some(observe) = &cfg.observer {
        observe(&FlushStats {
            records,
            elapsed: started.elapsed(),
            queue_depth,
            ok,
        });
    }
    buf.clear();
}
