//! `riptide serve --config FILE`: YAML whose keys follow PowerSync's `powersync.yaml` where they
//! overlap, so an existing PowerSync config works. Unknown keys and invalid values fail with the
//! file, line and column; keys PowerSync has that mean nothing here are accepted and listed in
//! [`ServeConfig::ignored`] so start-up can log them.

mod env_value;
mod file;

use std::path::{Path, PathBuf};

pub use env_value::Env;

/// A fully resolved service configuration.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The source database (`replication.connections[0]`).
    pub source_uri: String,
    /// The storage database; `None`: a `riptide_storage` database on the source server.
    pub storage_uri: Option<String>,
    pub port: u16,
    /// The sync rules YAML (`sync_config`). `None`: rules are deployed through the admin API
    /// (`POST /api/sync-rules/v1/deploy`) and the stored deployment is served meanwhile.
    pub sync_rules: Option<String>,
    /// Where the rules came from (for messages): the file, or the config itself.
    pub sync_rules_origin: String,
    /// Line and column offsets of the rules text inside `sync_rules_origin` (non-zero when the
    /// rules are inline in the config file), so rule errors can name file positions.
    pub sync_rules_offset: (usize, usize),
    pub auth: AuthConfig,
    pub api_tokens: Vec<String>,
    pub limits: Limits,
    pub logging: Logging,
    pub slot_name_prefix: String,
    /// `compaction`: the background compactor (on by default).
    pub compaction: riptide_service::CompactorConfig,
    /// Keys that were accepted for compatibility but have no effect (dotted paths).
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Inline JWKs (`client_auth.jwks.keys`).
    pub jwks: Vec<serde_json::Value>,
    pub jwks_uris: Vec<String>,
    pub audiences: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_concurrent_connections: usize,
    pub max_buckets_per_connection: usize,
    pub max_parameter_query_results: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_connections: 10_000,
            max_buckets_per_connection: 1000,
            max_parameter_query_results: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    pub level: String,
    pub json: bool,
}

/// A configuration problem, located where possible.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl ServeConfig {
    /// A config for `source_uri` with the defaults of a config file that sets nothing else:
    /// storage on the source server, port 8080, no rules (the admin API deploys them), no
    /// admin tokens, default limits, `info` text logs, slots named `riptide_…`, automatic
    /// compaction with its defaults. Change the
    /// fields you need with struct update syntax.
    pub fn new(source_uri: String, auth: AuthConfig) -> ServeConfig {
        ServeConfig {
            source_uri,
            storage_uri: None,
            port: 8080,
            sync_rules: None,
            sync_rules_origin: "the admin API".into(),
            sync_rules_offset: (0, 0),
            auth,
            api_tokens: Vec::new(),
            limits: Limits::default(),
            logging: Logging {
                level: "info".into(),
                json: false,
            },
            slot_name_prefix: "riptide_".into(),
            compaction: riptide_service::CompactorConfig::default(),
            ignored: Vec::new(),
        }
    }

    /// Loads and validates a config file. `sync_config.path` is resolved relative to it.
    pub fn load(path: &Path) -> Result<ServeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        ServeConfig::parse(&text, &path.display().to_string(), base)
    }

    /// Parses config text; `origin` names it in messages, `base` resolves relative paths.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<ServeConfig, ConfigError> {
        file::resolve(text, origin, base)
    }
}
