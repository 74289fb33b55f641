//! `status` (what is recorded and what runs) and `stop` (managed processes, cleanly).

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::database::LOCK_WAIT;
use crate::state::{Provider, Store};
use crate::{Platform, PlatformError, local, process};

/// How long a service gets between SIGTERM and SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusInfo {
    pub home: PathBuf,
    pub cluster: Option<ClusterStatus>,
    pub databases: Vec<DatabaseStatus>,
    pub sync: Vec<SyncStatus>,
    pub apps: Vec<AppStatus>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub data_dir: PathBuf,
    pub port: u16,
    pub running: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    pub id: String,
    pub name: String,
    pub provider: Provider,
    /// The direct URI with any password masked.
    pub uri: String,
    pub sync_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    pub id: String,
    pub database_id: String,
    pub url: String,
    pub running: bool,
    pub pid: Option<u32>,
    pub log_path: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    pub id: String,
    pub name: String,
    pub path: PathBuf,
    pub database_id: Option<String>,
    pub exists: bool,
}

/// What is recorded under the home, and whether its processes run (no secrets).
pub async fn status(platform: &Platform) -> Result<StatusInfo, PlatformError> {
    let state = crate::state::read(platform.home())?;
    let cluster = match &state.cluster {
        Some(c) => {
            let lc = riptide_localpg::LocalCluster::new(&c.data_dir);
            let running = tokio::task::spawn_blocking(move || lc.running_port().is_some())
                .await
                .unwrap_or(false);
            Some(ClusterStatus {
                data_dir: c.data_dir.clone(),
                port: c.port,
                running,
            })
        }
        None => None,
    };
    Ok(StatusInfo {
        home: platform.home().to_owned(),
        cluster,
        databases: state
            .databases
            .iter()
            .map(|d| DatabaseStatus {
                id: d.id.clone(),
                name: d.name.clone(),
                provider: d.provider,
                uri: crate::pg::redact(&d.direct_uri),
                sync_id: state.sync_of(&d.id).map(|s| s.id.clone()),
            })
            .collect(),
        sync: state
            .sync
            .iter()
            .map(|s| {
                let pid = process::running_pid(&s.pid_path());
                SyncStatus {
                    id: s.id.clone(),
                    database_id: s.database_id.clone(),
                    url: s.url(),
                    running: pid.is_some(),
                    pid,
                    log_path: s.log_path(),
                }
            })
            .collect(),
        apps: state
            .apps
            .iter()
            .map(|a| AppStatus {
                id: a.id.clone(),
                name: a.name.clone(),
                path: a.path.clone(),
                database_id: a.database_id.clone(),
                exists: a.path.is_dir(),
            })
            .collect(),
    })
}

/// What `stop` did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StopInfo {
    /// What was running and has been stopped (`sync_…`, `cluster`).
    pub stopped: Vec<String>,
    /// What was asked for but not running.
    pub not_running: Vec<String>,
}

/// Stops the sync service of `target` (a sync id, or a database id or name), or with `all`
/// every sync service and the local cluster.
pub async fn stop(
    platform: &Platform,
    target: Option<&str>,
    all: bool,
) -> Result<StopInfo, PlatformError> {
    let store = Store::open(platform.home(), LOCK_WAIT).await?;
    let mut info = StopInfo {
        stopped: Vec::new(),
        not_running: Vec::new(),
    };
    let services: Vec<_> = match (target, all) {
        (_, true) => store.state.sync.clone(),
        (Some(t), false) => {
            if let Some(s) = store.state.sync.iter().find(|s| s.id == t) {
                vec![s.clone()]
            } else {
                let db = store
                    .state
                    .database(t)
                    .map_err(|_| PlatformError::NotFound {
                        kind: "sync instance or database",
                        id: t.to_owned(),
                    })?;
                match store.state.sync_of(&db.id) {
                    Some(s) => vec![s.clone()],
                    None => {
                        return Err(PlatformError::Conflict(format!(
                            "database {:?} has no sync service to stop",
                            db.name
                        )));
                    }
                }
            }
        }
        (None, false) => {
            return Err(PlatformError::Conflict(
                "say what to stop: an id (sync_…, or a database id or name), or --all".into(),
            ));
        }
    };
    for s in services {
        if process::stop(&s.pid_path(), STOP_TIMEOUT).await? {
            info.stopped.push(s.id);
        } else {
            info.not_running.push(s.id);
        }
    }
    if all && let Some(c) = &store.state.cluster {
        if local::stop(c).await? {
            info.stopped.push("cluster".into());
        } else {
            info.not_running.push("cluster".into());
        }
    }
    Ok(info)
}
