//! `create_app`: a new app folder from a template embedded in the binary.
//!
//! The template's placeholder `realtime-app` becomes the app name everywhere; `server/Cargo.toml`
//! gets an empty `[workspace]` table (the app is its own workspace) and the app gets a
//! `Cargo.lock` copied from Riptide's, so it resolves the versions Riptide was tested with, offline
//! when they are cached. The app is written to a temporary folder beside the target and renamed
//! into place, so a failure leaves nothing behind.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::database::{LOCK_WAIT, validate_name};
use crate::state::{AppRecord, Store, new_id};
use crate::{Platform, PlatformError};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/templates.rs"));
}

/// The placeholder replaced by the app name.
pub const PLACEHOLDER: &str = "realtime-app";

/// The templates built into this binary.
pub fn templates() -> Vec<&'static str> {
    let mut names: Vec<&str> = embedded::TEMPLATE_FILES
        .iter()
        .map(|(t, _, _)| *t)
        .collect();
    names.dedup();
    names
}

/// What `create_app` returns.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    pub id: String,
    pub name: String,
    pub template: String,
    pub path: PathBuf,
    pub database_id: Option<String>,
    pub already: bool,
}

impl AppInfo {
    pub(crate) fn of(r: &AppRecord, already: bool) -> AppInfo {
        AppInfo {
            id: r.id.clone(),
            name: r.name.clone(),
            template: r.template.clone(),
            path: r.path.clone(),
            database_id: r.database_id.clone(),
            already,
        }
    }
}

/// Scaffolds app `name` from `template` into `parent/name` (`parent` defaults to the current
/// directory). Running it again for the same app and folder returns it with `already: true`.
pub async fn create_app(
    platform: &Platform,
    name: &str,
    template: &str,
    parent: Option<&Path>,
) -> Result<AppInfo, PlatformError> {
    validate_name(name)?;
    let files: Vec<(&str, &[u8])> = embedded::TEMPLATE_FILES
        .iter()
        .filter(|(t, _, _)| *t == template)
        .map(|(_, path, bytes)| (*path, *bytes))
        .collect();
    if files.is_empty() {
        return Err(PlatformError::Template(format!(
            "unknown template {template:?}; this binary has: {}",
            templates().join(", ")
        )));
    }
    let parent = match parent {
        Some(p) => p.to_path_buf(),
        None => std::env::current_dir().map_err(PlatformError::io("."))?,
    };
    std::fs::create_dir_all(&parent).map_err(PlatformError::io(&parent))?;
    let parent = std::fs::canonicalize(&parent).map_err(PlatformError::io(&parent))?;
    let target = parent.join(name);

    let mut store = Store::open(platform.home(), LOCK_WAIT).await?;
    let mut reuse_id = None;
    if let Some(existing) = store.state.apps.iter().find(|a| a.name == name) {
        if existing.path == target && target.is_dir() {
            return Ok(AppInfo::of(existing, true));
        }
        if !existing.path.exists() {
            // Its folder was deleted: make it again under the same id.
            reuse_id = Some(existing.id.clone());
        }
    }
    if let Some(existing) = store.state.apps.iter().find(|a| a.name == name)
        && reuse_id.is_none()
    {
        return Err(PlatformError::Conflict(format!(
            "an app named {name:?} already exists ({}, in {}); choose another name",
            existing.id,
            existing.path.display()
        )));
    }
    if target.exists() {
        return Err(PlatformError::Conflict(format!(
            "{} already exists; choose another name or parent folder",
            target.display()
        )));
    }

    let tmp = parent.join(format!(".{name}.riptide-tmp-{}", std::process::id()));
    let result = scaffold(&tmp, name, &files)
        .and_then(|()| std::fs::rename(&tmp, &target).map_err(PlatformError::io(&target)));
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let previous = reuse_id.as_ref().and_then(|id| {
        let i = store.state.apps.iter().position(|a| &a.id == id)?;
        Some(store.state.apps.remove(i))
    });
    let record = AppRecord {
        id: reuse_id.unwrap_or_else(|| new_id("app")),
        name: name.to_owned(),
        template: template.to_owned(),
        path: target.clone(),
        database_id: previous.and_then(|p| p.database_id),
        created_at: crate::now(),
    };
    store.state.apps.push(record.clone());
    if let Err(e) = store.save() {
        let _ = std::fs::remove_dir_all(&target);
        return Err(e);
    }
    Ok(AppInfo::of(&record, false))
}

fn scaffold(dir: &Path, name: &str, files: &[(&str, &[u8])]) -> Result<(), PlatformError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(PlatformError::io(dir))?;
    }
    std::fs::create_dir_all(dir).map_err(PlatformError::io(dir))?;
    for (rel, bytes) in files {
        let path = dir.join(rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(PlatformError::io(p))?;
        }
        let content: Vec<u8> = match std::str::from_utf8(bytes) {
            Ok(text) => {
                let mut text = text.replace(PLACEHOLDER, name);
                if *rel == "server/Cargo.toml" && !has_workspace_table(&text) {
                    text.push_str(
                        "\n# The app is its own Cargo workspace (added by `riptide create-app`).\n[workspace]\n",
                    );
                }
                text.into_bytes()
            }
            Err(_) => bytes.to_vec(),
        };
        std::fs::write(&path, content).map_err(PlatformError::io(&path))?;
    }
    if let Some(lock) = embedded::WORKSPACE_CARGO_LOCK
        && files.iter().any(|(rel, _)| *rel == "server/Cargo.toml")
    {
        let path = dir.join("server/Cargo.lock");
        std::fs::write(&path, lock).map_err(PlatformError::io(&path))?;
    }
    Ok(())
}

fn has_workspace_table(cargo_toml: &str) -> bool {
    cargo_toml.lines().any(|l| l.trim() == "[workspace]")
}

/// The app folder of `key` (id, name or path).
pub(crate) fn find(store: &Store, key: &str) -> Result<AppRecord, PlatformError> {
    let app = store.state.app(key)?.clone();
    if !app.path.is_dir() {
        return Err(PlatformError::Conflict(format!(
            "the folder of app {:?} ({}) is gone; remove it from {} or create it again",
            app.name,
            app.path.display(),
            store.home().join("state.json").display()
        )));
    }
    Ok(app)
}
