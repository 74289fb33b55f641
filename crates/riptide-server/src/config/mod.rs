//! `riptide serve --config FILE`: YAML whose keys follow PowerSync's `powersync.yaml` where they
//! overlap, so an existing PowerSync config works. Unknown keys and invalid values fail with the
//! file, line and column; keys PowerSync has that mean nothing here are accepted and listed in
//! [`ServeConfig::ignored`] so start-up can log them.
//!
//! The defaults are stated once, in [`ServeConfig::new`] (and the service's own
//! [`Limits::default`]); the file's sections only override them.

mod connection;
mod env_value;
mod file;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

pub use connection::PgConnection;
pub use env_value::Env;
pub use riptide_pg::{ChannelBinding, PemSource, RootCerts, SslMode, TlsOptions};
pub use riptide_service::{AuthConfig, CompactorConfig, Limits};

pub use crate::instance_admin::ExecuteSqlOptions;
pub use crate::roles::{LeaseConfig, Role};

/// The HTTP port when neither the config nor `--port` names one.
pub const DEFAULT_PORT: u16 = 8080;
/// The listen address when neither the config's `host` nor `--host` names one: every
/// interface, since a service on a config file is meant to be reached. The embedded default
/// and the platform's managed services listen on 127.0.0.1 instead.
pub const DEFAULT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// What replication slot names start with when `slot_name_prefix` is not set.
pub const DEFAULT_SLOT_NAME_PREFIX: &str = "riptide_";
/// [`ServeConfig::sync_rules_origin`] when the config has no rules.
pub const ADMIN_API_ORIGIN: &str = "the admin API";

/// A fully resolved service configuration. Its `Debug` output leaves secrets out (passwords,
/// API tokens, inline keys, TLS private keys).
#[derive(Clone)]
pub struct ServeConfig {
    /// The source database (`replication.connections[0]`).
    pub source: PgConnection,
    /// The storage database; `None`: a `riptide_storage` database on the source server.
    pub storage: Option<PgConnection>,
    /// The address to listen on (`host`, a Riptide key; default [`DEFAULT_HOST`]).
    pub host: IpAddr,
    pub port: u16,
    /// The sync rules YAML (`sync_config`). `None`: rules are deployed through the admin API
    /// (`POST /api/sync-rules/v1/deploy`) and the stored deployment is served meanwhile.
    pub sync_rules: Option<String>,
    /// Where the rules came from (for messages): the file, or the config itself.
    pub sync_rules_origin: String,
    /// Line and column offsets of the rules text inside `sync_rules_origin` (non-zero when the
    /// rules are inline in the config file), so rule errors can name file positions.
    pub sync_rules_offset: (usize, usize),
    /// `client_auth`, as the service reads it.
    pub auth: AuthConfig,
    /// `api.tokens`: the admin API's bearer tokens.
    pub api_tokens: Vec<String>,
    /// `api.dashboard_tokens` (a Riptide key): read-only tokens for the dashboard's data. The
    /// dashboard never accepts `api.tokens`.
    pub dashboard_tokens: Vec<String>,
    /// `api.parameters`, as the service reads them.
    pub limits: Limits,
    pub logging: Logging,
    pub slot_name_prefix: String,
    /// `compaction` (a Riptide section): the background compactor, on by default.
    pub compaction: CompactorConfig,
    /// How the admin API's `execute-sql` runs: enabled by the connection's `debug_api`, the
    /// rest from `api.execute_sql` (Riptide keys).
    pub execute_sql: ExecuteSqlOptions,
    /// `cluster` (a Riptide section): the replication lease's duration and renewal interval.
    pub lease: LeaseConfig,
    /// What this process does (`riptide serve --role`; not a file key): default
    /// [`Role::All`].
    pub role: Role,
    /// Keys that were accepted for compatibility but have no effect (dotted paths).
    pub ignored: Vec<String>,
}

/// `system.logging`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    pub level: String,
    pub json: bool,
}

impl Default for Logging {
    /// `info`, as text.
    fn default() -> Self {
        Logging {
            level: "info".into(),
            json: false,
        }
    }
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
    /// A config for `source` with the defaults of a config file that sets nothing else:
    /// storage on the source server, every interface, port 8080, no rules (the admin API deploys them), no
    /// admin tokens, default limits, `info` text logs, slots named `riptide_…`, automatic
    /// compaction with its defaults ([`CompactorConfig::default`]). Change the fields you need
    /// with struct update syntax.
    pub fn new(source: impl Into<PgConnection>, auth: AuthConfig) -> ServeConfig {
        ServeConfig {
            source: source.into(),
            storage: None,
            host: DEFAULT_HOST,
            port: DEFAULT_PORT,
            sync_rules: None,
            sync_rules_origin: ADMIN_API_ORIGIN.into(),
            sync_rules_offset: (0, 0),
            auth,
            api_tokens: Vec::new(),
            dashboard_tokens: Vec::new(),
            limits: Limits::default(),
            logging: Logging::default(),
            slot_name_prefix: DEFAULT_SLOT_NAME_PREFIX.into(),
            compaction: CompactorConfig::default(),
            execute_sql: ExecuteSqlOptions::default(),
            lease: LeaseConfig::default(),
            role: Role::All,
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

impl fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeConfig")
            .field("source", &self.source)
            .field("storage", &self.storage)
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "sync_rules",
                &self.sync_rules.as_ref().map(|r| Bytes(r.len())),
            )
            .field("sync_rules_origin", &self.sync_rules_origin)
            .field("sync_rules_offset", &self.sync_rules_offset)
            .field("auth", &AuthSummary(&self.auth))
            .field("api_tokens", &Count(self.api_tokens.len()))
            .field("dashboard_tokens", &Count(self.dashboard_tokens.len()))
            .field("limits", &self.limits)
            .field("logging", &self.logging)
            .field("slot_name_prefix", &self.slot_name_prefix)
            .field("compaction", &self.compaction)
            .field("execute_sql", &self.execute_sql)
            .field("lease", &self.lease)
            .field("role", &self.role)
            .field("ignored", &self.ignored)
            .finish()
    }
}

/// `client_auth` without the inline keys (a JWKS may hold symmetric secrets).
struct AuthSummary<'a>(&'a AuthConfig);

impl fmt::Debug for AuthSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inline = self
            .0
            .jwks
            .as_ref()
            .and_then(|doc| doc.get("keys"))
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len);
        f.debug_struct("AuthConfig")
            .field("jwks", &Count(inline))
            .field("jwks_uri", &self.0.jwks_uri)
            .field("audience", &self.0.audience)
            .field("max_lifetime_secs", &self.0.max_lifetime_secs)
            .finish()
    }
}

/// A number of secrets, printed instead of them.
struct Count(usize);

impl fmt::Debug for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} configured>", self.0)
    }
}

/// A text's length, printed instead of it.
struct Bytes(usize);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every secret a config file can hold, each a distinct marker.
    const SECRETS: &str = r#"
replication:
  connections:
    - type: postgresql
      hostname: db.example
      username: me
      password: source-password-marker
      client_certificate: client-certificate-path
      client_private_key: private-key-marker
storage:
  type: postgresql
  uri: postgres://me:storage-password-marker@db.example/storage
client_auth:
  jwks:
    keys:
      - { kty: oct, alg: HS256, kid: k1, k: symmetric-key-marker }
  audience: [app]
api:
  tokens: [api-token-marker]
"#;

    #[test]
    fn debug_output_holds_no_secret() {
        let config = ServeConfig::parse(SECRETS, "powersync.yaml", Path::new(".")).unwrap();
        assert_eq!(config.api_tokens, vec!["api-token-marker"]);
        assert_eq!(
            config.source.tls().client_key,
            Some(riptide_pg::PemSource::Path("private-key-marker".into()))
        );
        for printed in [format!("{config:?}"), format!("{config:#?}")] {
            for marker in [
                "source-password-marker",
                "storage-password-marker",
                "private-key-marker",
                "symmetric-key-marker",
                "api-token-marker",
            ] {
                assert!(!printed.contains(marker), "{marker} printed: {printed}");
            }
            // What is not secret still prints.
            assert!(printed.contains("db.example"), "{printed}");
            assert!(printed.contains("<1 configured>"), "{printed}");
        }
    }
}
