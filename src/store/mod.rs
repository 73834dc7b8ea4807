//! The event store: one SQLite file (WAL, `synchronous=NORMAL`) or, in fleet mode, one
//! PostgreSQL database shared by every replica, holding one row per request, one row per
//! detector match, per-minute and per-hour rollups, user feedback, and the alerts with their
//! delivery attempts.
//!
//! Owns: the schema (embedded migrations), the single writer task (`run_writer`), retention and
//! the read API that `analytics` and `admin` use. Does not own: aggregation maths (`analytics`),
//! HTTP (`admin`).
//!
//! Trade-offs:
//! - sqlx's `Any` driver (sqlite + postgres, runtime-tokio, no macros): async without
//!   `spawn_blocking`, and one set of queries for both backends (`sql.rs` holds the rules of
//!   the shared SQL subset; only the schema files differ). The costs are a per-statement hop to
//!   sqlx's SQLite worker thread, amortised by multi-row inserts, and a conversion of each value
//!   into and out of `Any`'s enum, which `benches/store_ingest` measures.
//! - Two pools on one file: a single-connection write pool (SQLite has one writer anyway) and a
//!   small read pool, so analytics never waits behind a write transaction (WAL readers don't).
//! - Rollups are maintained by the writer in the same transaction as the rows, so they can never
//!   disagree with the rows after a crash; analytics over weeks reads rollups, never raw rows.
//! - `synchronous=NORMAL` in WAL mode: a committed batch survives a process crash; a power loss
//!   may lose the last batches, never corrupt the file.

mod alerts;
mod feedback;
mod health;
pub mod hist;
mod keys;
mod migrate;
mod quota_counts;
mod read;
mod reports;
mod retention;
mod rollup_read;
mod row;
mod security;
mod spend;
mod sql;
mod ttft;
mod write;
mod writer;

use std::path::Path;
use std::sync::{Arc, Once};
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Connection, Executor};

use crate::config::StoreConfig;
pub use crate::redact::{cap, redact};
pub use alerts::{AlertFilter, AlertRow, DeliveryRow};
pub use feedback::{Feedback, FeedbackSummary, FeedbackTarget};
pub use health::{Failing, WriterHealth};
pub use quota_counts::QuotaCount;
pub use read::{rfc3339, Cursor, ExportKind, Page, RequestFilter, RequestRow};
pub use reports::{DailyThreats, Scored, StoredReport, ThresholdChange, UpstreamCount, MAX_SCORED};
pub use retention::{run_retention, Purged};
pub use rollup_read::{GroupBy, Resolution, RollupRow, UserRollupRow};
pub use row::{is_blocked, model_key, threat_level};
pub use security::{MatchRow, Offender, SecurityFilter};
pub use spend::Spent;
pub use sql::Dialect;
pub use ttft::ModelTtft;
pub use writer::{run_writer, FlushObserver, FlushStats, WriterConfig, WriterSummary};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `target` is the file path or the URL without its password.
    #[error("open store {target}")]
    Open {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("read store.url_file")]
    Url(#[source] crate::config::SecretError),
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

/// Handle to the event store. Cheap to clone (connection pools).
///
/// Both backends sit behind sqlx's `Any` driver, so every query is written once (`sql.rs` says
/// in which SQL subset). SQLite: two pools on one file, a single-connection write pool (SQLite
/// has one writer anyway) and a small read pool, so analytics never waits behind a write
/// transaction (WAL readers don't). PostgreSQL: one pool serves both.
#[derive(Clone, Debug)]
pub struct Store {
    write: AnyPool,
    read: AnyPool,
    dialect: Dialect,
    /// Set by the writer task, read by the alert engine.
    health: Arc<health::Health>,
}

/// Read connections: analytics and admin requests run concurrently with the writer.
const READ_CONNECTIONS: u32 = 4;
/// PostgreSQL connections per replica (writer, retention, alerts, analytics, admin).
const PG_CONNECTIONS: u32 = 8;
/// How long a PostgreSQL replica waits for a pooled connection before a query fails.
const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Per-connection SQLite settings (the `Any` driver connects by URL, so they are set here).
/// `busy_timeout`: how long a statement waits for a lock before failing (the retention task
/// and the writer share the one write connection, so this only matters for external tools
/// holding the file). `cache_size` bounds each connection's page cache, which is most of what
/// the store adds to the process's memory: 16 MiB for the one write connection (the indexes
/// inserts touch), 8 MiB for each read connection, 48 MiB at most in all.
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL; \
    PRAGMA cache_size = -16384; PRAGMA temp_store = memory;";
const SQLITE_READ_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; PRAGMA cache_size = -8192; \
    PRAGMA temp_store = memory;";

fn install_drivers() {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(sqlx::any::install_default_drivers);
}

impl Store {
    /// Opens the store a config section names: PostgreSQL when `url` is set, else the SQLite
    /// file at `path`.
    ///
    /// # Errors
    /// As [`Store::open`] and [`Store::connect`].
    pub async fn from_config(cfg: &StoreConfig) -> Result<Store, Error> {
        match cfg.database_url().map_err(Error::Url)? {
            Some(url) => Store::connect(url.expose()).await,
            None => Store::open_sqlite(&cfg.path, cap_bytes(cfg.max_size_mb)).await,
        }
    }

    /// Opens (creating if missing) the SQLite file at `path` and applies pending migrations.
    ///
    /// # Errors
    /// The file cannot be opened or created, or the schema migration fails.
    pub async fn open(path: &Path) -> Result<Store, Error> {
        Store::open_sqlite(path, None).await
    }

    /// [`Store::open`], with the database file capped at `max_bytes` (`PRAGMA
    /// max_page_count`, set on every write connection): past it writes fail with SQLite's
    /// "database or disk is full", as on a full disk.
    async fn open_sqlite(path: &Path, max_bytes: Option<u64>) -> Result<Store, Error> {
        install_drivers();
        let open_err = |source| Error::Open {
            target: path.display().to_string(),
            source,
        };
        let url = sqlite_url(path);
        let write = AnyPoolOptions::new()
            .max_connections(1)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute(SQLITE_PRAGMAS).await?;
                    if let Some(bytes) = max_bytes {
                        let page: i64 = sqlx::query_scalar("PRAGMA page_size")
                            .fetch_one(&mut *conn)
                            .await?;
                        let pages = bytes / u64::try_from(page.max(512)).unwrap_or(4096);
                        conn.execute(format!("PRAGMA max_page_count = {}", pages.max(1)).as_str())
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&format!("{url}?mode=rwc"))
            .await
            .map_err(open_err)?;
        migrate::run(&write, Dialect::Sqlite)
            .await
            .map_err(Error::Migrate)?;
        let read = AnyPoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .after_connect(|conn, _| {
                Box::pin(async move { conn.execute(SQLITE_READ_PRAGMAS).await.map(drop) })
            })
            .connect(&format!("{url}?mode=ro"))
            .await
            .map_err(open_err)?;
        Ok(Store {
            write,
            read,
            dialect: Dialect::Sqlite,
            health: Arc::default(),
        })
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user:pass@host/db`, with
    /// `?sslmode=require` and friends as libpq spells them) and applies pending migrations.
    /// Replicas sharing one database migrate safely: sqlx's migrator holds an advisory lock.
    ///
    /// # Errors
    /// The server cannot be reached or refuses the login, or the migration fails.
    pub async fn connect(url: &str) -> Result<Store, Error> {
        install_drivers();
        let open_err = |source| Error::Open {
            target: without_password(url),
            source,
        };
        // One direct connection first: a refused connection or a bad password is reported as
        // such, not as the pool's "timed out waiting for a connection".
        sqlx::AnyConnection::connect(url)
            .await
            .map_err(open_err)?
            .close()
            .await
            .map_err(open_err)?;
        let pool = AnyPoolOptions::new()
            .max_connections(PG_CONNECTIONS)
            .acquire_timeout(PG_ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(open_err)?;
        migrate::run(&pool, Dialect::Postgres)
            .await
            .map_err(Error::Migrate)?;
        Ok(Store {
            write: pool.clone(),
            read: pool,
            dialect: Dialect::Postgres,
            health: Arc::default(),
        })
    }

    /// The writer's health: failing or not, records buffered, failed and dropped.
    pub fn health(&self) -> WriterHealth {
        self.health.get()
    }

    /// The backend this store talks to.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes the pools, waiting for checked-out connections (and checkpointing the WAL).
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// `store.max_size_mb` in bytes; 0 is no cap.
fn cap_bytes(max_size_mb: u64) -> Option<u64> {
    (max_size_mb > 0).then(|| max_size_mb.saturating_mul(1024 * 1024))
}

/// `sqlite:` URL of a file path (percent-encoding what a URL would misread).
fn sqlite_url(path: &Path) -> String {
    let mut url = String::from("sqlite:");
    for b in path.to_string_lossy().bytes() {
        match b {
            b'%' | b'?' | b'#' | b' ' | 0..=0x1f | 0x7f.. => url.push_str(&format!("%{b:02X}")),
            _ => url.push(char::from(b)),
        }
    }
    url
}

/// `url` with any password replaced, for messages and logs.
pub fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparsable database URL)".to_owned(),
    }
}

fn query_err(what: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |source| Error::Query { what, source }
}
