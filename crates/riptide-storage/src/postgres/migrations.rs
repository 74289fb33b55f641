//! Versioned schema migrations, recorded in `riptide.migrations` and applied in one transaction
//! under a transaction-level advisory lock, so concurrent `migrate` calls are safe and a second
//! call is a no-op.

use tokio_postgres::Client;

use super::schema;
use crate::{Result, StorageError};

/// Advisory lock key for migrations (`'riptide_m'` as bytes, arbitrary but fixed).
const MIGRATION_LOCK: i64 = 0x7269_7074_6964_656d;

/// `(version, name, sql)`, in order. Never edit a released migration; append a new one.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "initial schema", schema::V1),
    (2, "compaction", schema::V2),
    (3, "replication lease and nodes", schema::V3),
];

/// The newest storage schema version this binary knows (see `riptide.migrations`).
pub const SUPPORTED_VERSION: i32 = 3;

pub(super) async fn migrate(client: &mut Client) -> Result<()> {
    let tx = client.transaction().await?;
    // Taken before anything else: `CREATE SCHEMA IF NOT EXISTS` alone races with itself.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS riptide;
         CREATE TABLE IF NOT EXISTS riptide.migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM riptide.migrations",
            &[],
        )
        .await?;
    let current: i32 = row.try_get(0)?;
    if current > SUPPORTED_VERSION {
        return Err(StorageError::SchemaTooNew {
            found: current,
            supported: SUPPORTED_VERSION,
        });
    }
    for (version, name, sql) in MIGRATIONS {
        if *version <= current {
            continue;
        }
        tracing::info!(version, name, "applying storage migration");
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO riptide.migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
