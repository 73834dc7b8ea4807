//! Embedded schema migrations, run by `Store::open`/`Store::connect` through sqlx's migrator (a
//! `_sqlx_migrations` table records what was applied and its checksum). The two backends have
//! one file each per version (`migrations/sqlite`, `migrations/postgres`) holding the same
//! tables; only types differ (`INTEGER`/`REAL` vs `BIGINT`/`DOUBLE PRECISION`, `BIGSERIAL`
//! keys). On PostgreSQL the migrator holds an advisory lock, so replicas starting together
//! migrate once.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::AnyPool;

use super::Dialect;

/// Declares the migrations compiled into the binary, in order, for both backends.
macro_rules! migrations {
    ($(($v:literal, $name:literal, $file:literal)),* $(,)?) => {
        const SQLITE: &[(i64, &str, &str)] =
            &[$(($v, $name, include_str!(concat!("../../migrations/sqlite/", $file)))),*];
        const POSTGRES: &[(i64, &str, &str)] =
            &[$(($v, $name, include_str!(concat!("../../migrations/postgres/", $file)))),*];
    };
}

migrations![
    (1, "init", "0001_init.sql"),
    (2, "alerts", "0002_alerts.sql"),
    (3, "reports", "0003_reports.sql"),
    (4, "fleet", "0004_fleet.sql"),
    (5, "key_user", "0005_key_user.sql"),
    (6, "unpriced", "0006_unpriced.sql"),
    (7, "gateway_keys", "0007_gateway_keys.sql"),
    (8, "quota_counts", "0008_quota_counts.sql"),
    (9, "judge", "0009_judge.sql"),
    (10, "quota_counts_updated", "0010_quota_counts_updated.sql"),
];

#[derive(Debug)]
struct Embedded(Dialect);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        let set = match self.0 {
            Dialect::Sqlite => SQLITE,
            Dialect::Postgres => POSTGRES,
        };
        Box::pin(async move {
            Ok(set
                .iter()
                .map(|&(version, name, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(name),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Applies pending migrations.
pub(super) async fn run(
    pool: &AnyPool,
    dialect: Dialect,
) -> Result<(), sqlx::migrate::MigrateError> {
    Migrator::new(Embedded(dialect)).await?.run(pool).await
}
