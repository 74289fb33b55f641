//! `connect`: wires an app to a database and its sync service by writing the app's `.env`
//! (the variables of the template's contract) with mode 0600, keeping lines the user added. The
//! template's Vite config reads the same file (`envDir` is the app root).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::database::LOCK_WAIT;
use crate::state::{Store, write_atomic};
use crate::{Platform, PlatformError, app};

/// The token endpoint the UI calls (same origin as the app's process).
pub const TOKEN_ENDPOINT: &str = "/api/powersync/token";

/// What `connect` returns (no secrets).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectInfo {
    pub app_id: String,
    pub database_id: String,
    pub sync_id: String,
    pub env_files: Vec<PathBuf>,
    /// The names of the variables written.
    pub variables: Vec<String>,
    pub powersync_url: String,
    /// The files had these values already.
    pub already: bool,
}

/// Connects app `app_key` to database `db_key` (ids or names). Sync must be enabled on the
/// database (it provides the URL, the signing key and the admin token).
pub async fn connect(
    platform: &Platform,
    app_key: &str,
    db_key: &str,
) -> Result<ConnectInfo, PlatformError> {
    let mut store = Store::open(platform.home(), LOCK_WAIT).await?;
    let app = app::find(&store, app_key)?;
    let db = store.state.database(db_key)?.clone();
    let sync = store.state.sync_of(&db.id).cloned().ok_or_else(|| {
        PlatformError::Conflict(format!(
            "sync is not enabled on database {:?}; run `riptide sync enable {}` first",
            db.name, db.name
        ))
    })?;
    if let Some(other) = &app.database_id
        && other != &db.id
    {
        tracing::info!(app = %app.id, from = %other, to = %db.id, "re-connecting an app to another database");
    }
    let vars: Vec<(&str, String)> = vec![
        ("VITE_POWERSYNC_URL", sync.url()),
        ("VITE_POWERSYNC_TOKEN_ENDPOINT", TOKEN_ENDPOINT.to_owned()),
        ("VITE_DATABASE_URL", db.pooled_uri.clone()),
        ("DIRECT_DATABASE_URL", db.direct_uri.clone()),
        ("POWERSYNC_SIGNING_KEY", sync.signing_key.clone()),
        ("POWERSYNC_API_TOKEN", sync.api_token.clone()),
        ("POWERSYNC_URL", sync.url()),
    ];
    let root_env = app.path.join(".env");
    let changed = update_env_file(&root_env, &vars)?;
    let files = vec![root_env];
    let record_changed = app.database_id.as_deref() != Some(db.id.as_str());
    if record_changed {
        if let Some(a) = store.state.apps.iter_mut().find(|a| a.id == app.id) {
            a.database_id = Some(db.id.clone());
        }
        store.save()?;
    }
    Ok(ConnectInfo {
        app_id: app.id,
        database_id: db.id,
        sync_id: sync.id.clone(),
        env_files: files,
        variables: vars.iter().map(|(k, _)| (*k).to_owned()).collect(),
        powersync_url: sync.url(),
        already: !changed && !record_changed,
    })
}

/// Sets `vars` in the env file at `path` (created if missing), keeping every other line;
/// writes atomically with mode 0600. Whether the content changed.
pub fn update_env_file(path: &Path, vars: &[(&str, String)]) -> Result<bool, PlatformError> {
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(PlatformError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let text = merge_env(&old, vars);
    let mode_ok = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777 == 0o600)
            .unwrap_or(false)
    };
    if text == old && mode_ok {
        return Ok(false);
    }
    write_atomic(path, text.as_bytes(), 0o600)?;
    Ok(text != old)
}

/// `old` with each of `vars` set: an existing `KEY=` line (also `export KEY=`) is replaced in
/// place, a missing one appended.
pub fn merge_env(old: &str, vars: &[(&str, String)]) -> String {
    let key_of = |line: &str| -> Option<String> {
        let l = line.trim_start();
        let l = l.strip_prefix("export ").unwrap_or(l);
        if l.starts_with('#') {
            return None;
        }
        l.split_once('=').map(|(k, _)| k.trim().to_owned())
    };
    let mut done = vec![false; vars.len()];
    let mut out = String::new();
    for line in old.lines() {
        let replaced = key_of(line).and_then(|k| vars.iter().position(|(name, _)| *name == k));
        match replaced {
            Some(i) if !done[i] => {
                done[i] = true;
                out.push_str(&format!("{}={}\n", vars[i].0, quote(&vars[i].1)));
            }
            Some(_) => {} // a duplicate of a key we set: dropped
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    let missing: Vec<usize> = (0..vars.len()).filter(|i| !done[*i]).collect();
    if !missing.is_empty() {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        if !out.contains("# Written by `riptide connect`") {
            out.push_str(
                "# Written by `riptide connect` (holds secrets: keep out of version control)\n",
            );
        }
        for i in missing {
            out.push_str(&format!("{}={}\n", vars[i].0, quote(&vars[i].1)));
        }
    }
    out
}

/// Values are plain (URLs, base64, hex); anything else is double-quoted.
fn quote(value: &str) -> String {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:@?&=%+~,".contains(c))
    {
        value.to_owned()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_user_lines_and_replaces_ours() {
        let old = "# mine\nPORT=4000\nPOWERSYNC_URL=http://old\nexport VITE_DATABASE_URL=x\n";
        let vars = vec![
            ("POWERSYNC_URL", "http://127.0.0.1:9000".to_owned()),
            ("VITE_DATABASE_URL", "postgres://a@b/c".to_owned()),
            ("POWERSYNC_API_TOKEN", "abc".to_owned()),
        ];
        let new = merge_env(old, &vars);
        assert_eq!(
            new,
            "# mine\nPORT=4000\nPOWERSYNC_URL=http://127.0.0.1:9000\nVITE_DATABASE_URL=postgres://a@b/c\n\n\
             # Written by `riptide connect` (holds secrets: keep out of version control)\nPOWERSYNC_API_TOKEN=abc\n"
        );
        assert_eq!(merge_env(&new, &vars), new, "idempotent");
    }
}
