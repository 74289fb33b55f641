//! The platform's one error type: each variant is a message a user can act on.

use std::path::PathBuf;

/// Why a platform operation failed. Nothing it started is left half-made.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid Riptide state: {message}")]
    CorruptState { path: PathBuf, message: String },
    #[error(
        "another riptide command holds {path}; wait for it to finish (or remove the file if no riptide command is running)"
    )]
    Locked { path: PathBuf },
    #[error("invalid name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("no {kind} {id:?}; `riptide status` lists what exists")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("invalid server URL: {0}")]
    InvalidUrl(String),
    #[error(transparent)]
    LocalPg(#[from] riptide_localpg::LocalPgError),
    #[error("cannot connect to Postgres at {target}")]
    Connect {
        target: String,
        #[source]
        source: riptide_pg::PgError,
    },
    #[error("{what}: {source}")]
    Postgres {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{0}")]
    WalLevel(String),
    #[error("port {port} is already in use on 127.0.0.1; choose another port or stop what uses it")]
    PortInUse { port: u16 },
    #[error(
        "the sync service did not become healthy: {message}\n--- last lines of {log} ---\n{tail}"
    )]
    ServiceStart {
        message: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{0}")]
    Template(String),
    #[error("{0}")]
    Rules(String),
    #[error("{what}: {source}")]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{0}")]
    Migration(String),
    #[error("{0}")]
    Process(String),
}

impl PlatformError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> PlatformError {
        let path = path.into();
        move |source| PlatformError::Io { path, source }
    }

    pub(crate) fn pg(
        what: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> PlatformError {
        let what = what.into();
        move |source| PlatformError::Postgres { what, source }
    }
}
