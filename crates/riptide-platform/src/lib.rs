//! Riptide's platform tools: the functions under both the `riptide` CLI subcommands and the
//! `riptide mcp` server.
//!
//! Everything is recorded in [`state`] under `RIPTIDE_HOME` (default `~/.riptide`): databases
//! (`db_…`), sync instances (`sync_…`) and apps (`app_…`). Every operation takes the state lock,
//! is idempotent (a second run reports `already: true`) and atomic: on failure it undoes what it
//! did, so neither `state.json` nor the filesystem nor the database server keeps a half-made thing.
//!
//! - [`database`]: `create_database` on the local provider (a Riptide-managed cluster, see
//!   [`local`]) or on an existing server.
//! - [`sync`]: `sync_enable` (publication, storage database, keys, config, a managed
//!   `riptide serve`), `deploy_files`.
//! - [`app`]: `create_app` from the templates embedded in the binary.
//! - [`connect`]: `connect` writes an app's `.env`.
//! - [`schema`]: `web/src/lib/schema.ts` from the catalog and the app's sync rules.
//! - [`migrate`], [`rules`]: apply an app's migrations, deploy its sync rules.
//! - [`status`]: what is recorded and running; `stop`.

pub mod app;
pub mod connect;
pub mod database;
mod error;
pub mod home;
pub mod keys;
pub mod local;
pub mod migrate;
mod pg;
pub mod process;
pub mod rules;
pub mod schema;
pub mod state;
pub mod status;
pub mod sync;

pub use error::PlatformError;
pub use pg::redact;

use std::path::{Path, PathBuf};

/// The platform rooted at one `RIPTIDE_HOME`.
#[derive(Debug, Clone)]
pub struct Platform {
    home: PathBuf,
    riptide_bin: PathBuf,
}

impl Platform {
    /// The platform in `home`; managed sync services run `riptide_bin serve`.
    pub fn new(home: impl Into<PathBuf>, riptide_bin: impl Into<PathBuf>) -> Platform {
        Platform {
            home: home.into(),
            riptide_bin: riptide_bin.into(),
        }
    }

    /// The platform in [`home::riptide_home`], running this executable for `serve`.
    pub fn from_env() -> Result<Platform, PlatformError> {
        let bin = std::env::current_exe().map_err(|source| PlatformError::Io {
            path: PathBuf::from("/proc/self/exe"),
            source,
        })?;
        Ok(Platform::new(home::riptide_home(), bin))
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn riptide_bin(&self) -> &Path {
        &self.riptide_bin
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reports long steps (initdb, starting services) to the user; the CLI shows spinners.
pub trait Progress: Send + Sync {
    /// A long step begins.
    fn start(&self, message: &str);
    /// The step that began last has ended.
    fn finish(&self);
    /// Something the user should know and may act on (not an error). Ignored by default.
    fn warn(&self, message: &str) {
        let _ = message;
    }
}

/// No progress reports (MCP, tests, `--json`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _message: &str) {}
    fn finish(&self) {}
}
