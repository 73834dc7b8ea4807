//! Config section for the event store (serde shapes only; the runtime objects are
//! `store::Store` and `store::WriterConfig`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::secret::{Secret, SecretError, SecretSource};

/// Default `store.flush_ms`: a batch of the default size (1024) fills in 200 ms at about 5,000
/// requests/s, so below that rate this interval, not the batch size, sets the commit cadence.
pub const DEFAULT_FLUSH_MS: u64 = 200;
/// Largest `store.flush_ms`: beyond a minute the crash window stops being "recent records".
pub const MAX_FLUSH_MS: u64 = 60_000;
/// Largest `store.retry_buffer`: records can carry captured text (up to `capture.max_bytes`
/// each), so the buffer is a memory bound too.
pub const MAX_RETRY_BUFFER: usize = 1_000_000;

/// The event store: an embedded SQLite file (WAL) by default, or one PostgreSQL database that
/// several replicas share (fleet mode).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite file; created with its `-wal`/`-shm` companions. Default `gatehouse.db`.
    /// Ignored when `url` or `url_file` is set.
    pub path: PathBuf,
    /// PostgreSQL URL (`postgres://user:password@host:5432/db`, libpq options such as
    /// `?sslmode=require` allowed): fleet mode. It holds a password, so set it with
    /// `GATEHOUSE_STORE__URL` or `url_file`, not in this file.
    #[serde(skip_serializing)]
    pub url: Option<Secret>,
    /// File holding the PostgreSQL URL (e.g. a mounted Kubernetes secret).
    pub url_file: Option<PathBuf>,
    /// Days of requests, matches, rollups and feedback kept; older rows are deleted by the
    /// retention task. 0 keeps everything. Default 30.
    pub retention_days: u32,
    /// Capacity (records) of the store consumer's channel; a full channel drops and counts.
    /// Default 65536.
    pub queue: usize,
    /// Records per write transaction at most. Default 1024.
    pub batch: usize,
    /// Milliseconds a partial batch may wait before it is committed (1 … 60000). Default 200.
    /// A hard crash (SIGKILL, OOM kill, power loss) loses the records finished in the last
    /// `flush_ms` plus the batch being written: about `rate × flush_ms / 1000` records.
    pub flush_ms: u64,
    /// Records kept in memory while the store cannot be written (disk full, database down);
    /// they are written, oldest first, once it recovers. Records beyond it are dropped and
    /// counted (`gatehouse_store_records_total{result="dropped"}`). 0 drops at once.
    /// Default 4096.
    pub retry_buffer: usize,
    /// SQLite only: largest size of the database file, MiB; 0 = no limit (default). Reaching
    /// it fails writes the way a full disk does (buffered, counted, alerted, retried), so the
    /// store cannot fill a volume it shares. Space freed by retention is reused.
    pub max_size_mb: u64,
    /// Prompt/response text capture (off by default).
    pub capture: CaptureConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("gatehouse.db"),
            url: None,
            url_file: None,
            retention_days: 30,
            queue: 65536,
            batch: 1024,
            flush_ms: DEFAULT_FLUSH_MS,
            retry_buffer: 4096,
            max_size_mb: 0,
            capture: CaptureConfig::default(),
        }
    }
}

impl StoreConfig {
    /// The PostgreSQL URL from `url` or `url_file`; `None` means SQLite at `path`.
    ///
    /// # Errors
    /// `url_file` cannot be read or is empty.
    pub fn database_url(&self) -> Result<Option<Secret>, SecretError> {
        match (&self.url, &self.url_file) {
            (Some(url), _) => Ok(Some(url.clone())),
            (None, Some(file)) => SecretSource::File(file.clone()).read().map(Some),
            (None, None) => Ok(None),
        }
    }
}

/// What text the store keeps. The proxy fills `Exchange.capture` only when asked to; the store
/// keeps what it is given, capped and (by default) redacted once more.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Keep prompt text. Default false.
    pub prompts: bool,
    /// Keep response text. Default false.
    pub responses: bool,
    /// Bytes kept per text at most (cut at a char boundary). Default 4096.
    pub max_bytes: usize,
    /// Mask secrets and e-mail addresses before storing (`store::redact`). Default true.
    pub redact: bool,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            prompts: false,
            responses: false,
            max_bytes: 4096,
            redact: true,
        }
    }
}
