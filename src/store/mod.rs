//! The embedded event store: one SQLite file (WAL, `synchronous=NORMAL`) holding one row per
//! request, one row per detector match, per-minute and per-hour rollups, user feedback, and the
//! alerts with their delivery attempts.
//!
//! Owns: the schema (embedded migrations), the single writer task (`run_writer`), retention and
//! the read API that `analytics` and `admin` use. Does not own: aggregation maths (`analytics`),
//! HTTP (`admin`).
//!
//! Trade-offs:
//! - sqlx (sqlite, runtime-tokio, no macros): async without `spawn_blocking`, and the SQL is plain
//!   strings with `?` placeholders and `ON CONFLICT` upserts that PostgreSQL also accepts, so the
//!   fleet backend (a later issue) can reuse most queries behind this same `Store` type. The cost
//!   is a per-statement hop to sqlx's SQLite worker thread, amortised by multi-row inserts.
//! - Two pools on one file: a single-connection write pool (SQLite has one writer anyway) and a
//!   small read pool, so analytics never waits behind a write transaction (WAL readers don't).
//! - Rollups are maintained by the writer in the same transaction as the rows, so they can never
//!   disagree with the rows after a crash; analytics over weeks reads rollups, never raw rows.
//! - `synchronous=NORMAL` in WAL mode: a committed batch survives a process crash; a power loss
//!   may lose the last batches, never corrupt the file.

mod alerts;
mod feedback;
pub mod hist;
mod migrate;
mod read;
mod reports;
mod retention;
mod rollup_read;
mod row;
mod security;
mod write;
mod writer;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::SqliteSynchronous;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

pub use crate::redact::{cap, redact};
pub use alerts::{AlertFilter, AlertRow, DeliveryRow};
pub use feedback::{Feedback, FeedbackSummary};
pub use read::{rfc3339, Cursor, ExportKind, Page, RequestFilter, RequestRow};
pub use reports::{DailyThreats, Scored, StoredReport, ThresholdChange, UpstreamCount, MAX_SCORED};
pub use retention::{run_retention, Purged};
pub use rollup_read::{GroupBy, Resolution, RollupRow, UserRollupRow};
pub use row::{is_blocked, model_key, threat_level};
pub use security::{MatchRow, Offender, SecurityFilter};
pub use writer::{run_writer, FlushObserver, FlushStats, WriterConfig, WriterSummary};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("open store {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrate store schema")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("write batch of {records} records")]
    Write {
        records: usize,
        #[source]
        source: sqlx::Error,
    },
    #[error("query {what}")]
    Query {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("invalid feedback: {0}")]
    InvalidFeedback(&'static str),
}

/// Handle to the event store. Cheap to clone (two connection pools).
#[derive(Clone, Debug)]
pub struct Store {
    write: SqlitePool,
    read: SqlitePool,
}

/// Read connections: analytics and admin requests run concurrently with the writer.
const READ_CONNECTIONS: u32 = 4;
/// How long a statement waits for a lock before failing (the retention task and the writer
/// share the one write connection, so this only matters for external tools holding the file).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// Opens (creating if missing) the SQLite file at `path` and applies pending migrations.
    ///
    /// # Errors
    /// The file cannot be opened or created, or the schema migration fails.
    pub async fn open(path: &Path) -> Result<Store, Error> {
        let open_err = |source| Error::Open {
            path: path.to_owned(),
            source,
        };
        let base = SqliteConnectOptions::from_str("sqlite:")
            .map_err(open_err)?
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(base.clone().create_if_missing(true))
            .await
            .map_err(open_err)?;
        migrate::run(&write).await.map_err(Error::Migrate)?;
        let read = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(base.read_only(true))
            .await
            .map_err(open_err)?;
        Ok(Store { write, read })
    }

    /// Closes both pools, waiting for checked-out connections (and checkpointing the WAL).
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

fn query_err(what: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |source| Error::Query { what, source }
}
