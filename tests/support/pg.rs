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
            eprintln!("TEST_POSTGRES_URL not set: PostgreSQL half skipped");
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
