//! The PostgreSQL server tests may use: `TEST_POSTGRES_URL` names a server and a role
//! allowed to create databases (`.ci/run` installs, starts and sets it); each caller gets a
//! fresh database. With `TEST_POSTGRES_REQUIRED=1` (CI) a missing URL fails instead of
//! skipping the PostgreSQL half.
#![allow(dead_code)]

/// The PostgreSQL server tests may use, if any.
pub fn postgres_url() -> Option<String> {
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u.trim().to_owned()),
        _ => {
            assert!(
                std::env::var("TEST_POSTGRES_REQUIRED").as_deref() != Ok("1"),
                "TEST_POSTGRES_REQUIRED=1 but TEST_POSTGRES_URL is not set"
            );
            // Straight to the process's stderr, once per test binary: the harness captures
            // `eprintln!`, so a person running `cargo test` would never see the skip.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "note: TEST_POSTGRES_URL is not set: the PostgreSQL half of these store tests is skipped"
                );
            });
            None
        }
    }
}

/// Test databases older than this are dropped by the next test process that makes one: tests
/// never drop their own (a failing test's database is worth a look), and on a developer's
/// machine thousands of runs would otherwise fill the disk.
const STALE_MS: u64 = 6 * 3600 * 1000;

/// Drops this server's `gh_test_*` databases made more than [`STALE_MS`] ago (their names carry
/// a UUIDv7, whose first 48 bits are the unix ms it was made), once per test process. Failures
/// (a database in use, a name not ours) are skipped: this is housekeeping.
async fn drop_stale(admin: &mut sqlx::postgres::PgConnection) {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'gh_test_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for name in names {
        let made = name
            .strip_prefix("gh_test_")
            .and_then(|hex| hex.get(..12))
            .and_then(|ms| u64::from_str_radix(ms, 16).ok());
        if made.is_some_and(|ms| ms + STALE_MS < now) {
            let drop = format!("DROP DATABASE IF EXISTS {name}");
            let _ = sqlx::Executor::execute(&mut *admin, drop.as_str()).await;
        }
    }
}

/// A fresh, empty database on the test server; returns its URL.
pub async fn fresh_postgres_db(server: &str) -> String {
    use sqlx::Connection;
    let name = format!("gh_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::postgres::PgConnection::connect(server)
        .await
        .expect("connect to the test PostgreSQL server");
    drop_stale(&mut admin).await;
    sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create a test database");
    let mut url = url::Url::parse(server).expect("PostgreSQL URL");
    url.set_path(&name);
    url.to_string()
}
