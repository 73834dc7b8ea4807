//! The store consumer: one task that batches records from its channel into transactions, and
//! keeps them for a while when the store cannot take them.
//!
//! A batch is committed when it reaches `batch` records or when its first record has waited
//! `flush`; whichever comes first. Shutdown is the channel closing (the dispatcher dropped its
//! sender): the task then commits everything still queued and returns.
//!
//! When a write fails (disk full, database down), its records move to a bounded retry buffer
//! and the writer is *failing*: it keeps draining its channel into the buffer, so the queue in
//! front of it never backs up into drops it cannot see, and retries the oldest `batch` records
//! with back-off (`RETRY_FIRST`, doubling to `RETRY_MAX`). A record that finds the buffer full
//! is dropped and counted, never silently. The first write that succeeds ends the episode; the
//! buffer is then written, oldest first, ahead of new records. Every failure is counted
//! (`FlushStats`, `WriterSummary`, `Store::health`), logged at ERROR at most once per
//! `LOG_EVERY` with the number of lines held back, and read by the alert rule `store_failing`
//! and by `/ready` (through the metrics `app` wires).
//!
//! Trade-offs: the buffer is memory, so a crash while failing loses it with the channel; when
//! it is full the newest records are dropped (the buffer keeps the oldest, in order). At
//! shutdown a failing store gets one more attempt per batch; what still fails is dropped and
//! counted rather than holding the shutdown.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use crate::config::{CaptureConfig, StoreConfig};
use crate::event::Exchange;

use super::{Error, Failing, Store};

/// First pause before a failed write is retried; doubled after each failure.
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest pause between retries: how late, at most, the writer notices that space came back.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// At most one ERROR line per this interval while writes keep failing: a full disk fails
/// every batch, and the log usually shares that disk.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Called after every write attempt and whenever records are buffered or dropped (e.g. to set
/// the queue-depth gauge and the write-latency histogram); `app` wires it to
/// `telemetry::metrics`, so the store does not depend on metrics.
pub type FlushObserver = Arc<dyn Fn(&FlushStats) + Send + Sync>;

/// How the writer batches.
#[derive(Clone)]
pub struct WriterConfig {
    /// Records per transaction at most.
    pub batch: usize,
    /// How long a partial batch may wait.
    pub flush: Duration,
    /// Records kept while the store cannot be written; more are dropped.
    pub retry_buffer: usize,
    pub capture: CaptureConfig,
    pub observer: Option<FlushObserver>,
}

impl WriterConfig {
    /// The writer settings of a store config section (no observer).
    pub fn from_config(cfg: &StoreConfig) -> WriterConfig {
        WriterConfig {
            batch: cfg.batch.max(1),
            flush: Duration::from_millis(cfg.flush_ms.max(1)),
            retry_buffer: cfg.retry_buffer,
            capture: cfg.capture.clone(),
            observer: None,
        }
    }
}

/// One step of the writer, as reported to the observer.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlushStats {
    /// Records in the write attempt; 0 when the step wrote nothing (records only buffered or
    /// dropped).
    pub records: usize,
    /// Time spent on the attempt.
    pub elapsed: Duration,
    /// Records still waiting in the channel after the step.
    pub queue_depth: usize,
    /// The attempt committed.
    pub ok: bool,
    /// Records counted as failed in this step: a failed write's new records, or records that
    /// arrived while failing (each record is counted once, however often it is retried).
    pub failed: usize,
    /// Records dropped in this step (retry buffer full, or shutdown while failing).
    pub dropped: usize,
    /// Records waiting in the retry buffer after the step.
    pub buffered: usize,
    /// Writes are failing after the step.
    pub failing: bool,
}

/// What the writer did over its life, returned when the channel closes.
/// `written + dropped` is every record it received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterSummary {
    pub written: u64,
    /// Records not written at first (kept for retry, or dropped).
    pub failed: u64,
    /// Records given up.
    pub dropped: u64,
    pub batches: u64,
}

/// Runs the store writer until `rx` is closed and drained.
pub async fn run_writer(
    store: Store,
    mut rx: mpsc::Receiver<Arc<Exchange>>,
    cfg: WriterConfig,
) -> WriterSummary {
    let mut w = Writer::new(store, cfg);
    let mut buf: Vec<Arc<Exchange>> = Vec::with_capacity(w.cfg.batch);
    loop {
        if !w.pending.is_empty() {
            if !w.retry_or_buffer(&mut rx, &mut buf).await {
                break;
            }
            continue;
        }
        if rx.recv_many(&mut buf, w.cfg.batch).await == 0 {
            break;
        }
        let closed = fill(&mut rx, &mut buf, &w.cfg).await;
        w.write_new(&mut buf, rx.len()).await;
        if closed {
            break;
        }
    }
    w.finish().await
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

/// The writer's state between steps.
struct Writer {
    store: Store,
    cfg: WriterConfig,
    /// The retry buffer: records whose write failed or that came while failing, oldest first.
    pending: VecDeque<Arc<Exchange>>,
    backoff: Duration,
    retry_at: tokio::time::Instant,
    log: ErrorLog,
    summary: WriterSummary,
}

impl Writer {
    fn new(store: Store, cfg: WriterConfig) -> Writer {
        Writer {
            store,
            cfg,
            pending: VecDeque::new(),
            backoff: RETRY_FIRST,
            retry_at: tokio::time::Instant::now(),
            log: ErrorLog::default(),
            summary: WriterSummary::default(),
        }
    }

    /// Writes a batch fresh from the channel; on failure its records go to the retry buffer.
    async fn write_new(&mut self, buf: &mut Vec<Arc<Exchange>>, queue_depth: usize) {
        let started = Instant::now();
        let result = self.store.insert_batch(buf, &self.cfg.capture).await;
        let mut step = FlushStats {
            records: buf.len(),
            elapsed: started.elapsed(),
            queue_depth,
            ok: result.is_ok(),
            ..FlushStats::default()
        };
        self.summary.batches += 1;
        match result {
            Ok(()) => {
                self.summary.written += buf.len() as u64;
                buf.clear();
                self.recovered();
            }
            Err(e) => {
                self.failed(&e);
                self.keep(buf.drain(..), &mut step);
                self.retry_in(RETRY_FIRST);
            }
        }
        self.report(step);
    }

    /// While records wait: retries the oldest batch when its back-off is due, and meanwhile
    /// moves new records from the channel to the retry buffer. False when the channel closed.
    async fn retry_or_buffer(
        &mut self,
        rx: &mut mpsc::Receiver<Arc<Exchange>>,
        buf: &mut Vec<Arc<Exchange>>,
    ) -> bool {
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(self.retry_at) => {
                self.retry(rx.len()).await;
                true
            }
            // `recv_many` is cancel safe: nothing is lost when the timer wins.
            n = rx.recv_many(buf, self.cfg.batch) => {
                if n == 0 {
                    return false;
                }
                let mut step = FlushStats { queue_depth: rx.len(), ..FlushStats::default() };
                self.keep(buf.drain(..), &mut step);
                self.report(step);
                true
            }
        }
    }

    /// Writes the oldest batch of the retry buffer; true when it committed.
    async fn retry(&mut self, queue_depth: usize) -> bool {
        let n = self.pending.len().min(self.cfg.batch);
        let batch: Vec<Arc<Exchange>> = self.pending.iter().take(n).cloned().collect();
        let started = Instant::now();
        let result = self.store.insert_batch(&batch, &self.cfg.capture).await;
        self.summary.batches += 1;
        let ok = result.is_ok();
        match result {
            Ok(()) => {
                self.pending.drain(..n);
                self.summary.written += n as u64;
                self.recovered();
                // The rest of the buffer goes next, without waiting.
                self.retry_in(Duration::ZERO);
            }
            Err(e) => {
                self.failed(&e);
                self.retry_in((self.backoff * 2).min(RETRY_MAX));
            }
        }
        self.report(FlushStats {
            records: n,
            elapsed: started.elapsed(),
            queue_depth,
            ok,
            ..FlushStats::default()
        });
        ok
    }

    /// Puts records that could not be written into the retry buffer, dropping what does not fit.
    fn keep(&mut self, records: impl Iterator<Item = Arc<Exchange>>, step: &mut FlushStats) {
        for ex in records {
            step.failed += 1;
            if self.pending.len() < self.cfg.retry_buffer {
                self.pending.push_back(ex);
            } else {
                step.dropped += 1;
            }
        }
        self.summary.failed += step.failed as u64;
        self.summary.dropped += step.dropped as u64;
        if step.dropped > 0 {
            let buffer = self.cfg.retry_buffer;
            let dropped = self.summary.dropped;
            self.log.error(|suppressed| {
                tracing::error!(
                    dropped,
                    buffer,
                    suppressed,
                    "store retry buffer full: records dropped"
                );
            });
        }
    }

    /// Notes a failed write: health, and an ERROR line unless one was logged lately.
    fn failed(&mut self, e: &Error) {
        let error = chain(e);
        self.store.health.update(|h| match &mut h.failing {
            Some(f) => f.error.clone_from(&error),
            None => {
                h.failing = Some(Failing {
                    since: SystemTime::now(),
                    error: error.clone(),
                })
            }
        });
        let buffered = self.pending.len();
        let dropped = self.summary.dropped;
        self.log.error(|suppressed| {
            tracing::error!(error = %error, buffered, dropped, suppressed, "store write failed; records kept for retry");
        });
    }

    /// Notes a write that succeeded: ends a failing episode (logged once).
    fn recovered(&mut self) {
        self.backoff = RETRY_FIRST;
        let mut ended = None;
        self.store.health.update(|h| ended = h.failing.take());
        if let Some(f) = ended {
            let failed_for = f.since.elapsed().unwrap_or_default();
            let buffered = self.pending.len();
            let dropped = self.summary.dropped;
            tracing::info!(?failed_for, buffered, dropped, "store writes succeed again");
            self.log = ErrorLog::default();
        }
    }

    fn retry_in(&mut self, pause: Duration) {
        if pause > Duration::ZERO {
            self.backoff = pause;
        }
        self.retry_at = tokio::time::Instant::now() + pause;
    }

    /// Updates the shared health and tells the observer about one step.
    fn report(&self, mut step: FlushStats) {
        step.buffered = self.pending.len();
        let mut failing = false;
        self.store.health.update(|h| {
            h.buffered = step.buffered;
            h.failed = self.summary.failed;
            h.dropped = self.summary.dropped;
            failing = h.failing.is_some();
        });
        step.failing = failing;
        if let Some(observe) = &self.cfg.observer {
            observe(&step);
        }
    }

    /// Shutdown: one more attempt for what waits, oldest first; the rest is dropped and counted.
    async fn finish(mut self) -> WriterSummary {
        while !self.pending.is_empty() {
            if !self.retry(0).await {
                let left = self.pending.len();
                self.pending.clear();
                self.summary.dropped += left as u64;
                tracing::error!(
                    dropped = left,
                    "store still failing at shutdown: buffered records dropped"
                );
                self.report(FlushStats {
                    dropped: left,
                    ..FlushStats::default()
                });
            }
        }
        // Once per run, and the only place a shutdown says what the store lost.
        tracing::info!(
            written = self.summary.written,
            failed = self.summary.failed,
            dropped = self.summary.dropped,
            "store writer stopped"
        );
        self.summary
    }
}

/// `e` and its causes, `: `-separated (the cause says what failed: "database or disk is full").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        // sqlx's errors repeat their source's text in their own.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// At most one ERROR line per `LOG_EVERY`; counts the lines held back in between.
#[derive(Debug, Default)]
struct ErrorLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    /// Calls `log` with the number of lines held back since the last one, if one is due.
    fn error(&mut self, log: impl FnOnce(u64)) {
        if self.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            self.suppressed += 1;
            return;
        }
        log(self.suppressed);
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}
