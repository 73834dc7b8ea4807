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

/// A fresh, empty database on the test server; returns its URL.
pub async fn fresh_postgres_db(server: &str) -> String {
    use sqlx::Connection;
    let name = format!("gh_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::postgres::PgConnection::connect(server)
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create a test database");
    let mut url = url::Url::parse(server).expect("PostgreSQL URL");
    url.set_path(&name);
    url.to_string()
}
