//! `RIPTIDE_HOME/state.json`: the databases, sync instances and apps Riptide manages.
//!
//! Writes are atomic (a temporary file beside it, fsync, rename, fsync of the directory), the
//! file has mode 0600 (it holds connection strings and keys), and a lock file
//! (`RIPTIDE_HOME/state.lock`, an exclusive `flock`) keeps two riptide commands from
//! interleaving their read-modify-write cycles.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::PlatformError;

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "state.lock";
const VERSION: u32 = 1;

/// Everything Riptide manages under one home.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub version: u32,
    /// The local provider's cluster, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterRecord>,
    #[serde(default)]
    pub databases: Vec<DatabaseRecord>,
    #[serde(default)]
    pub sync: Vec<SyncRecord>,
    #[serde(default)]
    pub apps: Vec<AppRecord>,
}

/// The Riptide-managed local Postgres cluster.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterRecord {
    pub data_dir: PathBuf,
    /// The port it always starts on (URLs handed out name it).
    pub port: u16,
    /// The `postgres` superuser's SCRAM password, generated when the cluster was created (this
    /// file is 0600). `None`: a cluster created before Riptide set one, which trusts every
    /// local connection; it keeps working as it was (`local::ensure_cluster` warns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl std::fmt::Debug for ClusterRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRecord")
            .field("data_dir", &self.data_dir)
            .field("port", &self.port)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Where a database lives.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// The Riptide-managed cluster.
    Local,
    /// An existing server given by URL.
    Server,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseRecord {
    pub id: String,
    pub name: String,
    pub provider: Provider,
    /// The database's name on the server.
    pub dbname: String,
    /// The server URL the database was created through (its `postgres` database), for
    /// `Provider::Server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_url: Option<String>,
    /// Direct connection URL (migrations, replication).
    pub direct_uri: String,
    /// Pooled connection URL (the same as direct where there is no pooler).
    pub pooled_uri: String,
    pub created_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncRecord {
    pub id: String,
    pub database_id: String,
    pub port: u16,
    /// `RIPTIDE_HOME/sync/<id>`: config, pid file, log.
    pub dir: PathBuf,
    pub storage_dbname: String,
    pub storage_uri: String,
    /// The signing key's `kid`.
    pub kid: String,
    /// base64 of the private JWK (what `POWERSYNC_SIGNING_KEY` holds).
    pub signing_key: String,
    /// The admin API token (`api.tokens`).
    pub api_token: String,
    pub created_at: u64,
}

impl SyncRecord {
    /// The service's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("powersync.yaml")
    }

    pub fn pid_path(&self) -> PathBuf {
        self.dir.join("riptide.pid")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("riptide.log")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppRecord {
    pub id: String,
    pub name: String,
    pub template: String,
    /// Absolute path of the app folder.
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_id: Option<String>,
    pub created_at: u64,
}

impl State {
    /// Finds a database by id or name.
    pub fn database(&self, key: &str) -> Result<&DatabaseRecord, PlatformError> {
        self.databases
            .iter()
            .find(|d| d.id == key)
            .or_else(|| self.databases.iter().find(|d| d.name == key))
            .ok_or_else(|| PlatformError::NotFound {
                kind: "database",
                id: key.to_owned(),
            })
    }

    /// Finds an app by id, name or path.
    pub fn app(&self, key: &str) -> Result<&AppRecord, PlatformError> {
        let as_path = std::fs::canonicalize(key).ok();
        self.apps
            .iter()
            .find(|a| a.id == key)
            .or_else(|| self.apps.iter().find(|a| a.name == key))
            .or_else(|| {
                as_path
                    .as_ref()
                    .and_then(|p| self.apps.iter().find(|a| &a.path == p))
            })
            .ok_or_else(|| PlatformError::NotFound {
                kind: "app",
                id: key.to_owned(),
            })
    }

    /// The sync instance of a database, if enabled.
    pub fn sync_of(&self, database_id: &str) -> Option<&SyncRecord> {
        self.sync.iter().find(|s| s.database_id == database_id)
    }
}

/// A fresh id: `prefix_` and 12 hex digits.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// The state of one home, locked for the lifetime of this value.
#[derive(Debug)]
pub struct Store {
    home: PathBuf,
    _lock: File,
    pub state: State,
}

impl Store {
    /// Locks the home (waiting up to `wait` for another riptide command) and reads its state.
    pub async fn open(home: &Path, wait: Duration) -> Result<Store, PlatformError> {
        std::fs::create_dir_all(home).map_err(PlatformError::io(home))?;
        let lock_path = home.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(PlatformError::io(&lock_path))?;
        let deadline = Instant::now() + wait;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(PlatformError::Locked { path: lock_path });
                }
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(PlatformError::Io {
                        path: lock_path,
                        source,
                    });
                }
            }
        }
        let state = read(home)?;
        Ok(Store {
            home: home.to_owned(),
            _lock: lock,
            state,
        })
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Writes the state atomically.
    pub fn save(&mut self) -> Result<(), PlatformError> {
        self.state.version = VERSION;
        let text =
            serde_json::to_vec_pretty(&self.state).map_err(|e| PlatformError::CorruptState {
                path: self.home.join(STATE_FILE),
                message: e.to_string(),
            })?;
        write_atomic(&self.home.join(STATE_FILE), &text, 0o600)
    }
}

/// Reads the state without locking (for `status`); a missing file is empty state.
pub fn read(home: &Path) -> Result<State, PlatformError> {
    let path = home.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| PlatformError::CorruptState {
            path,
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(source) => Err(PlatformError::Io { path, source }),
    }
}

/// Writes `bytes` to `path` atomically with `mode`: a temporary file in the same directory,
/// fsync, rename over `path`, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PlatformError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // `mode` applies only to new files; a leftover temporary file gets it too.
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(PlatformError::io(path))
}
