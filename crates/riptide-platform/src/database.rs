//! `create_database`: a database on the local cluster or on an existing server.

use std::time::Duration;

use serde::Serialize;

use crate::state::{DatabaseRecord, Provider, Store, new_id};
use crate::{Platform, PlatformError, Progress, local, pg};

/// How long a command waits for another one holding the state lock.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(120);

/// What `create_database` returns.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseInfo {
    pub id: String,
    pub name: String,
    pub provider: Provider,
    pub pooled_uri: String,
    pub direct_uri: String,
    /// Something the caller should know (e.g. pooled = direct locally).
    pub note: String,
    /// The database existed already (nothing was changed).
    pub already: bool,
}

impl DatabaseInfo {
    /// The same with the passwords of its URIs replaced by `***`: what the CLI and MCP show.
    /// The URIs with passwords are written to an app's `.env` (0600) by `connect`, and kept in
    /// `state.json` (0600); they are never printed.
    pub fn redacted(&self) -> DatabaseInfo {
        DatabaseInfo {
            pooled_uri: crate::pg::redact(&self.pooled_uri),
            direct_uri: crate::pg::redact(&self.direct_uri),
            ..self.clone()
        }
    }

    pub(crate) fn of(record: &DatabaseRecord, already: bool) -> DatabaseInfo {
        let note = match record.provider {
            Provider::Local => {
                "local provider: there is no connection pooler, so the pooled and direct URIs are the same"
            }
            Provider::Server => {
                "existing server: Riptide knows no pooler for it, so the pooled URI is the direct one; put your provider's pooled URL in VITE_DATABASE_URL if it has one"
            }
        };
        DatabaseInfo {
            id: record.id.clone(),
            name: record.name.clone(),
            provider: record.provider,
            pooled_uri: record.pooled_uri.clone(),
            direct_uri: record.direct_uri.clone(),
            note: note.into(),
            already,
        }
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn redacted_info_has_no_password() {
        let info = DatabaseInfo {
            id: "db_1".into(),
            name: "shop".into(),
            provider: Provider::Server,
            pooled_uri: "postgres://app:s3cret@pool.example:6543/shop?sslmode=require".into(),
            direct_uri: "postgres://app:s3cret@db.example:5432/shop".into(),
            note: String::new(),
            already: false,
        };
        let shown = info.redacted();
        let json = serde_json::to_string(&shown).unwrap_or_default();
        assert!(!json.contains("s3cret"), "{json}");
        assert_eq!(shown.direct_uri, "postgres://app:***@db.example:5432/shop");
        assert_eq!(
            shown.pooled_uri,
            "postgres://app:***@pool.example:6543/shop?sslmode=require"
        );
    }
}

/// Checks a database or app name: a lowercase slug of 1–40 characters (`a-z`, `0-9`, `-`,
/// `_`), starting with a letter.
pub fn validate_name(name: &str) -> Result<(), PlatformError> {
    let invalid = |why| PlatformError::InvalidName {
        name: name.to_owned(),
        why,
    };
    if name.is_empty() || name.len() > 40 {
        return Err(invalid("use 1 to 40 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(invalid("start with a lowercase letter"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            "use only lowercase letters, digits, '-' and '_' (a lowercase slug)",
        ));
    }
    if name.ends_with(['-', '_']) {
        return Err(invalid("do not end with '-' or '_'"));
    }
    if ["postgres", "template0", "template1"].contains(&name) {
        return Err(invalid("this name is reserved by PostgreSQL"));
    }
    Ok(())
}

/// Creates database `name`: on the local cluster (created and started as needed), or with
/// `server_url` on that server (`CREATE DATABASE` through the URL's credentials). Running it
/// again returns the recorded database with `already: true`.
pub async fn create_database(
    platform: &Platform,
    name: &str,
    server_url: Option<&str>,
    progress: &dyn Progress,
) -> Result<DatabaseInfo, PlatformError> {
    validate_name(name)?;
    let mut store = Store::open(platform.home(), LOCK_WAIT).await?;
    if let Some(existing) = store.state.databases.iter().find(|d| d.name == name) {
        let same = match (existing.provider, server_url) {
            (Provider::Local, None) => true,
            (Provider::Server, Some(url)) => existing.server_url.as_deref() == Some(url),
            _ => false,
        };
        if !same {
            return Err(PlatformError::Conflict(format!(
                "a database named {name:?} already exists ({}, {}); choose another name",
                existing.id,
                match existing.provider {
                    Provider::Local => "on the local cluster".to_owned(),
                    Provider::Server => format!(
                        "on {}",
                        pg::redact(existing.server_url.as_deref().unwrap_or(""))
                    ),
                }
            )));
        }
        let record = existing.clone();
        if record.provider == Provider::Local {
            let before = store.state.cluster.clone();
            local::ensure_cluster(&mut store, progress).await?;
            if store.state.cluster != before {
                store.save()?;
            }
        }
        return Ok(DatabaseInfo::of(&record, true));
    }

    let (admin_url, db_url, provider) = match server_url {
        None => {
            let cluster_before = store.state.cluster.clone();
            let running = local::ensure_cluster(&mut store, progress).await?;
            if store.state.cluster != cluster_before {
                // The cluster exists now, database or not: record it.
                store.save()?;
            }
            (running.url("postgres"), running.url(name), Provider::Local)
        }
        Some(url) => (
            url.to_owned(),
            pg::with_dbname(url, name)?,
            Provider::Server,
        ),
    };
    let admin = pg::connect(&admin_url).await?;
    if pg::database_exists(&admin, name).await? {
        return Err(PlatformError::Conflict(format!(
            "a database named {name:?} already exists on {} and Riptide did not create it; \
             choose another name (or drop it)",
            pg::redact(&admin_url)
        )));
    }
    progress.start(&format!("creating database {name}"));
    let created = admin
        .batch_execute(&format!("CREATE DATABASE {}", pg::quote_ident(name)))
        .await
        .map_err(PlatformError::pg(format!(
            "cannot create database {name:?}"
        )));
    progress.finish();
    created?;
    let record = DatabaseRecord {
        id: new_id("db"),
        name: name.to_owned(),
        provider,
        dbname: name.to_owned(),
        server_url: server_url.map(str::to_owned),
        direct_uri: db_url.clone(),
        pooled_uri: db_url,
        created_at: crate::now(),
    };
    store.state.databases.push(record.clone());
    if let Err(e) = store.save() {
        pg::drop_database(&admin, name).await;
        return Err(e);
    }
    Ok(DatabaseInfo::of(&record, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["demo", "my-app", "a1", "todo_list"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Demo",
            "1abc",
            "my app",
            "a/b",
            "ab-",
            "postgres",
            &"a".repeat(41),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
