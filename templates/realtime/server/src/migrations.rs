//! The migration runner: `migrations/NNNN_name.sql`, applied in order at start-up.
//!
//! - Files are named `NNNN_name.sql` (four or more digits, an underscore, letters, digits, `_`
//!   or `-`); other `.sql` names and duplicate numbers are errors, other files are ignored.
//! - The whole run holds a Postgres advisory lock, so two processes starting at once apply
//!   each migration once.
//! - Each migration runs in its own transaction, together with its record in
//!   `schema_migrations` (version, name, SHA-256 of the file).
//! - An already-applied migration whose file changed stops start-up: write a new migration
//!   instead of editing an applied one.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::database_url::DatabaseUrl;

/// The advisory lock key of the migration runner.
const LOCK_KEY: i64 = 0x7269_7074_6964_6501; // "riptide" + 1

/// A migration file.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i64,
    pub name: String,
    pub file_name: String,
    pub sql: String,
    pub checksum: String,
}

/// Why the migrations could not run.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("cannot read the migrations folder {path}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read migration {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "migration file {file:?} is not named NNNN_name.sql (digits, an underscore, then letters, digits, _ or -)"
    )]
    BadName { file: String },
    #[error("migrations {first:?} and {second:?} have the same number {version}")]
    DuplicateVersion {
        version: i64,
        first: String,
        second: String,
    },
    #[error(
        "migration {file} was changed after it was applied (checksum {applied} in the database, {current} on disk): \
         do not edit applied migrations; restore the file and put the change in a new migration"
    )]
    Edited {
        file: String,
        applied: String,
        current: String,
    },
    #[error("cannot connect to the database (DIRECT_DATABASE_URL)")]
    Connect(#[source] tokio_postgres::Error),
    #[error("DIRECT_DATABASE_URL cannot be used")]
    DatabaseUrl(#[from] crate::database_url::DatabaseUrlError),
    #[error("migration {file} failed")]
    Apply {
        file: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("cannot read or write the migrations table")]
    Bookkeeping(#[source] tokio_postgres::Error),
}

/// Reads `dir`'s migrations in version order. A missing folder has no migrations.
pub fn read_dir(dir: &Path) -> Result<Vec<Migration>, MigrationError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(MigrationError::ReadDir {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut migrations: Vec<Migration> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| MigrationError::ReadDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if !path.is_file() || !file_name.ends_with(".sql") {
            continue;
        }
        let (version, name) = parse_name(&file_name).ok_or_else(|| MigrationError::BadName {
            file: file_name.clone(),
        })?;
        let sql = std::fs::read_to_string(&path)
            .map_err(|source| MigrationError::ReadFile { path, source })?;
        let checksum = hex(&Sha256::digest(sql.as_bytes()));
        migrations.push(Migration {
            version,
            name,
            file_name,
            sql,
            checksum,
        });
    }
    migrations.sort_by_key(|m| m.version);
    for pair in migrations.windows(2) {
        if let [a, b] = pair
            && a.version == b.version
        {
            return Err(MigrationError::DuplicateVersion {
                version: a.version,
                first: a.file_name.clone(),
                second: b.file_name.clone(),
            });
        }
    }
    Ok(migrations)
}

/// `0001_init.sql` → (1, "init").
fn parse_name(file: &str) -> Option<(i64, String)> {
    let stem = file.strip_suffix(".sql")?;
    let (digits, name) = stem.split_once('_')?;
    if digits.len() < 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return None;
    }
    Some((digits.parse().ok()?, name.to_owned()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Connects to `url` and applies `dir`'s migrations.
pub async fn run_from_url(url: &str, dir: &Path) -> Result<Vec<String>, MigrationError> {
    let migrations = read_dir(dir)?;
    let url = DatabaseUrl::parse(url)?;
    let (mut client, connection) = url
        .config()
        .connect(url.tls()?)
        .await
        .map_err(MigrationError::Connect)?;
    let task = tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(error = %err, "migration connection ended");
        }
    });
    let result = run(&mut client, &migrations).await;
    drop(client);
    let _ = task.await;
    result
}

/// Applies the migrations not yet applied, under the advisory lock; returns the files applied.
pub async fn run(
    client: &mut Client,
    migrations: &[Migration],
) -> Result<Vec<String>, MigrationError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(MigrationError::Bookkeeping)?;
    let result = run_locked(client, migrations).await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    let applied = result?;
    unlock.map_err(MigrationError::Bookkeeping)?;
    Ok(applied)
}

async fn run_locked(
    client: &mut Client,
    migrations: &[Migration],
) -> Result<Vec<String>, MigrationError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(MigrationError::Bookkeeping)?
        .get(0);
    if !exists {
        client
            .batch_execute(
                "CREATE TABLE schema_migrations (
                    version bigint PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )",
            )
            .await
            .map_err(MigrationError::Bookkeeping)?;
    }
    let rows = client
        .query("SELECT version, checksum FROM schema_migrations", &[])
        .await
        .map_err(MigrationError::Bookkeeping)?;
    let applied: std::collections::HashMap<i64, String> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    // Check every applied file before applying anything new.
    for m in migrations {
        if let Some(checksum) = applied.get(&m.version)
            && *checksum != m.checksum
        {
            return Err(MigrationError::Edited {
                file: m.file_name.clone(),
                applied: checksum.clone(),
                current: m.checksum.clone(),
            });
        }
    }
    for version in applied.keys() {
        if !migrations.iter().any(|m| m.version == *version) {
            tracing::warn!(version, "an applied migration has no file in migrations/");
        }
    }
    let mut done = Vec::new();
    for m in migrations {
        if applied.contains_key(&m.version) {
            continue;
        }
        let apply_err = |source| MigrationError::Apply {
            file: m.file_name.clone(),
            source,
        };
        let tx = client.transaction().await.map_err(apply_err)?;
        tx.batch_execute(&m.sql)
            .await
            .map_err(|source| MigrationError::Apply {
                file: m.file_name.clone(),
                source,
            })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &m.checksum],
        )
        .await
        .map_err(MigrationError::Bookkeeping)?;
        tx.commit().await.map_err(|source| MigrationError::Apply {
            file: m.file_name.clone(),
            source,
        })?;
        tracing::info!(file = %m.file_name, "migration applied");
        done.push(m.file_name.clone());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::parse_name;

    #[test]
    fn file_names() {
        assert_eq!(parse_name("0001_init.sql"), Some((1, "init".into())));
        assert_eq!(
            parse_name("0042_add-tags_v2.sql"),
            Some((42, "add-tags_v2".into()))
        );
        assert_eq!(
            parse_name("20261125_big.sql"),
            Some((20_261_125, "big".into()))
        );
        for bad in [
            "001_x.sql",
            "0001.sql",
            "0001_.sql",
            "x001_a.sql",
            "0001_a b.sql",
            "0001_a.SQL",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
