//! `run_migrations`: applies an app's `migrations/NNNN_name.sql` the way the template's process
//! does at start-up (same `schema_migrations` table, SHA-256 checksums and advisory lock), so
//! either may run first and neither applies a migration twice.

use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::database::LOCK_WAIT;
use crate::state::Store;
use crate::{Platform, PlatformError, app, pg};

/// The advisory lock key the template's runner holds too.
const LOCK_KEY: i64 = 0x7269_7074_6964_6501;

/// What `run_migrations` returns.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationsInfo {
    pub app_id: String,
    pub database_id: String,
    /// Files applied by this call, in order.
    pub applied: Vec<String>,
    /// Files that had been applied before.
    pub already_applied: Vec<String>,
}

struct Migration {
    version: i64,
    name: String,
    file: String,
    sql: String,
    checksum: String,
}

/// Applies the app's pending migrations to its connected database.
pub async fn run_migrations(
    platform: &Platform,
    app_key: &str,
) -> Result<MigrationsInfo, PlatformError> {
    let store = Store::open(platform.home(), LOCK_WAIT).await?;
    let app = app::find(&store, app_key)?;
    let db_id = app.database_id.clone().ok_or_else(|| {
        PlatformError::Conflict(format!(
            "app {:?} is not connected to a database; run `riptide connect {} DATABASE` first",
            app.name, app.name
        ))
    })?;
    let db = store.state.database(&db_id)?.clone();
    drop(store);
    let migrations = read_dir(&app.path.join("migrations"))?;
    let mut client = pg::connect(&db.direct_uri).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(PlatformError::pg("cannot take the migrations lock"))?;
    let result = apply(&mut client, &migrations).await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    let (applied, already_applied) = result?;
    Ok(MigrationsInfo {
        app_id: app.id,
        database_id: db.id,
        applied,
        already_applied,
    })
}

async fn apply(
    client: &mut tokio_postgres::Client,
    migrations: &[Migration],
) -> Result<(Vec<String>, Vec<String>), PlatformError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version bigint PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(PlatformError::pg("cannot create schema_migrations"))?;
    let rows = client
        .query("SELECT version, checksum FROM schema_migrations", &[])
        .await
        .map_err(PlatformError::pg("cannot read schema_migrations"))?;
    let done: std::collections::HashMap<i64, String> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for m in migrations {
        if let Some(sum) = done.get(&m.version)
            && *sum != m.checksum
        {
            return Err(PlatformError::Migration(format!(
                "migration {} was changed after it was applied (checksum {sum} in the database, {} on disk): \
                 restore the file and put the change in a new migration",
                m.file, m.checksum
            )));
        }
    }
    let mut applied = Vec::new();
    let mut already = Vec::new();
    for m in migrations {
        if done.contains_key(&m.version) {
            already.push(m.file.clone());
            continue;
        }
        let tx = client
            .transaction()
            .await
            .map_err(PlatformError::pg("cannot begin a transaction"))?;
        tx.batch_execute(&m.sql)
            .await
            .map_err(PlatformError::pg(format!("migration {} failed", m.file)))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &m.checksum],
        )
        .await
        .map_err(PlatformError::pg("cannot record a migration"))?;
        tx.commit()
            .await
            .map_err(PlatformError::pg(format!("migration {} failed", m.file)))?;
        applied.push(m.file.clone());
    }
    Ok((applied, already))
}

fn read_dir(dir: &Path) -> Result<Vec<Migration>, PlatformError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PlatformError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(PlatformError::io(dir))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !path.is_file() || !file.ends_with(".sql") {
            continue;
        }
        let (version, name) = parse_name(&file).ok_or_else(|| {
            PlatformError::Migration(format!(
                "migration file {file:?} is not named NNNN_name.sql (four or more digits, '_', then letters, digits, '_' or '-')"
            ))
        })?;
        let sql = std::fs::read_to_string(&path).map_err(PlatformError::io(&path))?;
        let checksum = hex::encode(Sha256::digest(sql.as_bytes()));
        out.push(Migration {
            version,
            name,
            file,
            sql,
            checksum,
        });
    }
    out.sort_by_key(|m| m.version);
    for pair in out.windows(2) {
        if let [a, b] = pair
            && a.version == b.version
        {
            return Err(PlatformError::Migration(format!(
                "migrations {} and {} have the same number {}",
                a.file, b.file, a.version
            )));
        }
    }
    Ok(out)
}

fn parse_name(file: &str) -> Option<(i64, String)> {
    let stem = file.strip_suffix(".sql")?;
    let (digits, name) = stem.split_once('_')?;
    if digits.len() < 4 || !digits.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
        return None;
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return None;
    }
    Some((digits.parse().ok()?, name.to_owned()))
}
