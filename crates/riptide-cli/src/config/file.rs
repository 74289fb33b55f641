//! The config file's shape (serde) and its resolution into a [`ServeConfig`].

use std::path::Path;

use serde::Deserialize;

use super::{AuthConfig, ConfigError, Env, Limits, Logging, ServeConfig};

type Str = Env<String>;

/// Any value: accepted and ignored.
type Ignored = yaml_serde::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    replication: Option<Replication>,
    storage: Option<Storage>,
    port: Option<Env<u16>>,
    sync_config: Option<SyncConfig>,
    /// The old name of `sync_config`.
    sync_rules: Option<SyncConfig>,
    client_auth: Option<ClientAuth>,
    api: Option<Api>,
    system: Option<System>,
    compaction: Option<Compaction>,
    telemetry: Option<Ignored>,
    healthcheck: Option<Ignored>,
    migrations: Option<Ignored>,
    metadata: Option<Ignored>,
    parameters: Option<Ignored>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Replication {
    connections: Vec<Connection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Connection {
    #[serde(rename = "type")]
    kind: Str,
    uri: Option<Str>,
    hostname: Option<Str>,
    port: Option<Env<u16>>,
    database: Option<Str>,
    username: Option<Str>,
    password: Option<Str>,
    sslmode: Option<Str>,
    slot_name_prefix: Option<Str>,
    id: Option<Ignored>,
    tag: Option<Ignored>,
    cacert: Option<Ignored>,
    client_certificate: Option<Ignored>,
    client_private_key: Option<Ignored>,
    tls_servername: Option<Ignored>,
    reject_ip_ranges: Option<Ignored>,
    max_pool_size: Option<Ignored>,
    connect_timeout: Option<Ignored>,
    debug_api: Option<Ignored>,
    snapshot_socket_timeout: Option<Ignored>,
    heartbeat_interval_seconds: Option<Ignored>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Storage {
    #[serde(rename = "type")]
    kind: Str,
    uri: Option<Str>,
    hostname: Option<Str>,
    port: Option<Env<u16>>,
    database: Option<Str>,
    username: Option<Str>,
    password: Option<Str>,
    sslmode: Option<Str>,
    max_pool_size: Option<Ignored>,
    default_storage_version: Option<Ignored>,
    cacert: Option<Ignored>,
    tls_servername: Option<Ignored>,
    connect_timeout: Option<Ignored>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncConfig {
    path: Option<Str>,
    content: Option<Str>,
    exit_on_error: Option<Ignored>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientAuth {
    jwks: Option<Jwks>,
    jwks_uri: Option<OneOrMany>,
    audience: Option<Vec<Str>>,
    supabase: Option<Ignored>,
    supabase_jwt_secret: Option<Ignored>,
    block_local_jwks: Option<Ignored>,
    jwks_reject_ip_ranges: Option<Ignored>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Jwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(Str),
    Many(Vec<Str>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Api {
    tokens: Option<Vec<Str>>,
    parameters: Option<ApiParameters>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiParameters {
    max_concurrent_connections: Option<Env<usize>>,
    max_buckets_per_connection: Option<Env<usize>>,
    max_parameter_query_results: Option<Env<usize>>,
    max_data_fetch_concurrency: Option<Ignored>,
    checkpoint_request_retention_minutes: Option<Ignored>,
    bucket_count_cache_ttl_minutes: Option<Ignored>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct System {
    logging: Option<LoggingFile>,
}

/// Riptide's own section (PowerSync compacts with a separate command).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Compaction {
    enabled: Option<Env<bool>>,
    /// Superseded ops at which a bucket is compacted.
    threshold: Option<Env<i64>>,
    interval_seconds: Option<Env<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoggingFile {
    level: Option<Str>,
    format: Option<Str>,
}

struct Resolver<'a> {
    origin: &'a str,
    ignored: Vec<String>,
}

impl Resolver<'_> {
    fn invalid(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.origin.to_owned(),
            message: message.into(),
        }
    }

    fn ignore<T>(&mut self, key: &str, value: &Option<T>) {
        if value.is_some() {
            self.ignored.push(key.to_owned());
        }
    }
}

pub(super) fn resolve(text: &str, origin: &str, base: &Path) -> Result<ServeConfig, ConfigError> {
    let file: File = yaml_serde::from_str(text).map_err(|e| ConfigError::Invalid {
        path: origin.to_owned(),
        message: e.to_string(),
    })?;
    let mut r = Resolver {
        origin,
        ignored: Vec::new(),
    };
    for (key, present) in [
        ("telemetry", file.telemetry.is_some()),
        ("healthcheck", file.healthcheck.is_some()),
        ("migrations", file.migrations.is_some()),
        ("metadata", file.metadata.is_some()),
        ("parameters", file.parameters.is_some()),
    ] {
        if present {
            r.ignored.push(key.to_owned());
        }
    }

    let replication = file
        .replication
        .ok_or_else(|| r.invalid("missing `replication.connections`: the source Postgres"))?;
    let [conn] = <[Connection; 1]>::try_from(replication.connections).map_err(|v| {
        r.invalid(format!(
            "replication.connections must list exactly one connection, found {}",
            v.len()
        ))
    })?;
    if conn.kind.0 != "postgresql" {
        return Err(r.invalid(format!(
            "replication.connections[0].type: {:?} is not supported; use `postgresql`",
            conn.kind.0
        )));
    }
    for (key, v) in [
        ("id", &conn.id),
        ("tag", &conn.tag),
        ("cacert", &conn.cacert),
        ("client_certificate", &conn.client_certificate),
        ("client_private_key", &conn.client_private_key),
        ("tls_servername", &conn.tls_servername),
        ("reject_ip_ranges", &conn.reject_ip_ranges),
        ("max_pool_size", &conn.max_pool_size),
        ("connect_timeout", &conn.connect_timeout),
        ("debug_api", &conn.debug_api),
        ("snapshot_socket_timeout", &conn.snapshot_socket_timeout),
        (
            "heartbeat_interval_seconds",
            &conn.heartbeat_interval_seconds,
        ),
    ] {
        r.ignore(&format!("replication.connections[0].{key}"), v);
    }
    let slot_name_prefix = conn
        .slot_name_prefix
        .map(Env::into_inner)
        .unwrap_or_else(|| "riptide_".into());
    if !slot_name_prefix
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        || slot_name_prefix.len() > 40
    {
        return Err(r.invalid(
            "replication.connections[0].slot_name_prefix may hold only a-z, 0-9 and _ (at most 40)",
        ));
    }
    let source_uri = connection_uri(
        &r,
        "replication.connections[0]",
        ConnParts {
            uri: conn.uri,
            hostname: conn.hostname,
            port: conn.port,
            database: conn.database,
            username: conn.username,
            password: conn.password,
            sslmode: conn.sslmode,
        },
    )?;

    let storage_uri = match file.storage {
        None => None,
        Some(s) => {
            if s.kind.0 != "postgresql" {
                return Err(r.invalid(format!(
                    "storage.type: {:?} is not supported; Riptide stores buckets in Postgres \
                     (`type: postgresql`)",
                    s.kind.0
                )));
            }
            for (key, v) in [
                ("max_pool_size", &s.max_pool_size),
                ("default_storage_version", &s.default_storage_version),
                ("cacert", &s.cacert),
                ("tls_servername", &s.tls_servername),
                ("connect_timeout", &s.connect_timeout),
            ] {
                r.ignore(&format!("storage.{key}"), v);
            }
            if s.uri.is_none() && s.hostname.is_none() {
                None
            } else {
                Some(connection_uri(
                    &r,
                    "storage",
                    ConnParts {
                        uri: s.uri,
                        hostname: s.hostname,
                        port: s.port,
                        database: s.database,
                        username: s.username,
                        password: s.password,
                        sslmode: s.sslmode,
                    },
                )?)
            }
        }
    };

    let sync = match (file.sync_config, file.sync_rules) {
        (Some(_), Some(_)) => {
            return Err(
                r.invalid("give either `sync_config` or its old name `sync_rules`, not both")
            );
        }
        (Some(s), None) | (None, Some(s)) => Some(s),
        // No rules in the config: they are deployed through the admin API.
        (None, None) => None,
    };
    let (sync_rules, sync_rules_origin, sync_rules_offset) = match sync {
        None => (None, "the admin API".to_owned(), (0, 0)),
        Some(sync) => {
            r.ignore("sync_config.exit_on_error", &sync.exit_on_error);
            match (sync.path, sync.content) {
                (Some(_), Some(_)) => {
                    return Err(r.invalid("sync_config: give either `path` or `content`, not both"));
                }
                (None, Some(content)) => {
                    let offset = inline_offset(text, &content.0);
                    (Some(content.0), origin.to_owned(), offset)
                }
                (Some(path), None) => {
                    let full = base.join(&path.0);
                    let text =
                        std::fs::read_to_string(&full).map_err(|source| ConfigError::Read {
                            path: full.clone(),
                            source,
                        })?;
                    (Some(text), full.display().to_string(), (0, 0))
                }
                (None, None) => return Err(r.invalid("sync_config needs `path` or `content`")),
            }
        }
    };

    let mut auth = AuthConfig::default();
    if let Some(ca) = file.client_auth {
        r.ignore("client_auth.supabase", &ca.supabase);
        r.ignore("client_auth.supabase_jwt_secret", &ca.supabase_jwt_secret);
        r.ignore("client_auth.block_local_jwks", &ca.block_local_jwks);
        r.ignore(
            "client_auth.jwks_reject_ip_ranges",
            &ca.jwks_reject_ip_ranges,
        );
        auth.jwks = ca.jwks.map(|j| j.keys).unwrap_or_default();
        auth.jwks_uris = match ca.jwks_uri {
            None => Vec::new(),
            Some(OneOrMany::One(u)) => vec![u.0],
            Some(OneOrMany::Many(us)) => us.into_iter().map(Env::into_inner).collect(),
        };
        auth.audiences = ca
            .audience
            .unwrap_or_default()
            .into_iter()
            .map(Env::into_inner)
            .collect();
    }
    if auth.jwks.is_empty() && auth.jwks_uris.is_empty() {
        return Err(r.invalid(
            "client_auth: no keys configured (give `jwks: {keys: [...]}` or `jwks_uri`); \
             no client could authenticate",
        ));
    }

    let mut limits = Limits::default();
    let mut api_tokens = Vec::new();
    if let Some(api) = file.api {
        api_tokens = api
            .tokens
            .unwrap_or_default()
            .into_iter()
            .map(Env::into_inner)
            .collect();
        if let Some(p) = api.parameters {
            r.ignore(
                "api.parameters.max_data_fetch_concurrency",
                &p.max_data_fetch_concurrency,
            );
            r.ignore(
                "api.parameters.checkpoint_request_retention_minutes",
                &p.checkpoint_request_retention_minutes,
            );
            r.ignore(
                "api.parameters.bucket_count_cache_ttl_minutes",
                &p.bucket_count_cache_ttl_minutes,
            );
            if let Some(v) = p.max_concurrent_connections {
                limits.max_concurrent_connections = v.0;
            }
            if let Some(v) = p.max_buckets_per_connection {
                limits.max_buckets_per_connection = v.0;
            }
            if let Some(v) = p.max_parameter_query_results {
                limits.max_parameter_query_results = v.0;
            }
        }
    }
    for (name, v) in [
        (
            "max_concurrent_connections",
            limits.max_concurrent_connections,
        ),
        (
            "max_buckets_per_connection",
            limits.max_buckets_per_connection,
        ),
        (
            "max_parameter_query_results",
            limits.max_parameter_query_results,
        ),
    ] {
        if v == 0 {
            return Err(r.invalid(format!("api.parameters.{name} must be at least 1")));
        }
    }

    let mut logging = Logging {
        level: "info".into(),
        json: false,
    };
    if let Some(l) = file.system.and_then(|s| s.logging) {
        if let Some(level) = l.level {
            let level = level.0.to_ascii_lowercase();
            if !["trace", "debug", "info", "warn", "error"].contains(&level.as_str()) {
                return Err(r.invalid(format!(
                    "system.logging.level: {level:?} is not one of trace, debug, info, warn, error"
                )));
            }
            logging.level = level;
        }
        if let Some(format) = l.format {
            logging.json = match format.0.as_str() {
                "json" => true,
                "text" => false,
                other => {
                    return Err(r.invalid(format!(
                        "system.logging.format: {other:?} is not `json` or `text`"
                    )));
                }
            };
        }
    }

    let mut compaction = riptide_service::CompactorConfig::default();
    if let Some(c) = file.compaction {
        if let Some(v) = c.enabled {
            compaction.enabled = v.0;
        }
        if let Some(v) = c.threshold {
            if v.0 < 1 {
                return Err(r.invalid("compaction.threshold must be at least 1"));
            }
            compaction.threshold = v.0;
        }
        if let Some(v) = c.interval_seconds {
            if v.0 < 1 {
                return Err(r.invalid("compaction.interval_seconds must be at least 1"));
            }
            compaction.interval = std::time::Duration::from_secs(v.0);
        }
    }

    Ok(ServeConfig {
        source_uri,
        storage_uri,
        port: file.port.map(Env::into_inner).unwrap_or(8080),
        sync_rules,
        sync_rules_offset,
        sync_rules_origin,
        auth,
        api_tokens,
        limits,
        logging,
        slot_name_prefix,
        compaction,
        ignored: r.ignored,
    })
}

/// Where inline rules text starts in the config file: (line offset, column offset). Found by
/// locating the rules' first non-empty line after a `content:` key; (0, 0) if not found.
fn inline_offset(config: &str, rules: &str) -> (usize, usize) {
    let Some((rules_idx, first)) = rules
        .lines()
        .enumerate()
        .find(|(_, l)| !l.trim().is_empty())
    else {
        return (0, 0);
    };
    let mut after_content = false;
    for (idx, line) in config.lines().enumerate() {
        if line.trim_start().starts_with("content:") {
            after_content = true;
            continue;
        }
        if after_content && line.trim() == first.trim() && line.ends_with(first.trim_end()) {
            let indent = line.len() - line.trim_start().len();
            let content_indent = first.len() - first.trim_start().len();
            return (idx - rules_idx, indent - content_indent.min(indent));
        }
    }
    (0, 0)
}

struct ConnParts {
    uri: Option<Str>,
    hostname: Option<Str>,
    port: Option<Env<u16>>,
    database: Option<Str>,
    username: Option<Str>,
    password: Option<Str>,
    sslmode: Option<Str>,
}

/// Builds a `postgres://` URI from either `uri` or the separate fields, and checks `sslmode`.
fn connection_uri(r: &Resolver<'_>, at: &str, c: ConnParts) -> Result<String, ConfigError> {
    let sslmode = c.sslmode.map(Env::into_inner);
    match sslmode.as_deref() {
        None | Some("disable") => {}
        Some(mode @ ("verify-full" | "verify-ca")) => {
            return Err(r.invalid(format!(
                "{at}.sslmode: {mode} needs TLS to Postgres, which this build does not support \
                 yet; use `sslmode: disable` on a trusted network"
            )));
        }
        Some(other) => {
            return Err(r.invalid(format!(
                "{at}.sslmode: {other:?} is not one of verify-full, verify-ca, disable"
            )));
        }
    }
    let uri = match (c.uri, c.hostname) {
        (Some(uri), None) => uri.0,
        (None, Some(host)) => {
            let user = c
                .username
                .map(Env::into_inner)
                .unwrap_or_else(|| "postgres".into());
            let password = c
                .password
                .map(|p| format!(":{}", encode(&p.0)))
                .unwrap_or_default();
            let port = c.port.map(Env::into_inner).unwrap_or(5432);
            let db = c
                .database
                .map(Env::into_inner)
                .unwrap_or_else(|| "postgres".into());
            format!(
                "postgres://{}{password}@{}:{port}/{}",
                encode(&user),
                host.0,
                encode(&db)
            )
        }
        (Some(_), Some(_)) => {
            return Err(r.invalid(format!("{at}: give either `uri` or `hostname`, not both")));
        }
        (None, None) => return Err(r.invalid(format!("{at}: missing `uri`"))),
    };
    uri.parse::<tokio_postgres::Config>().map_err(|e| {
        r.invalid(format!(
            "{at}.uri is not a valid Postgres connection string: {e}"
        ))
    })?;
    Ok(uri)
}

/// Percent-encodes a URI component.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
replication:
  connections:
    - type: postgresql
      uri: postgres://postgres@127.0.0.1:5432/app
      sslmode: disable
sync_config:
  content: |
    bucket_definitions:
      global:
        data:
          - SELECT * FROM lists
client_auth:
  jwks:
    keys:
      - { kty: OKP, crv: Ed25519, alg: EdDSA, kid: k1, x: abc }
  audience: [app]
"#;

    fn parse(text: &str) -> Result<ServeConfig, ConfigError> {
        ServeConfig::parse(text, "powersync.yaml", Path::new("."))
    }

    #[test]
    fn minimal_config_resolves_with_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.source_uri, "postgres://postgres@127.0.0.1:5432/app");
        assert!(c.storage_uri.is_none());
        assert!(
            c.sync_rules
                .as_deref()
                .unwrap()
                .contains("bucket_definitions")
        );
        // The inline rules start on line 9 of the file, indented by 4.
        assert_eq!(c.sync_rules_offset, (8, 4));
        assert_eq!(c.auth.audiences, vec!["app"]);
        assert_eq!(c.auth.jwks[0]["kid"], "k1");
        assert_eq!(c.limits, Limits::default());
        assert!(c.ignored.is_empty());
    }

    #[test]
    fn new_has_the_defaults_of_a_file_that_sets_only_source_rules_and_auth() {
        let file = parse(MINIMAL).unwrap();
        let new = ServeConfig::new(file.source_uri.clone(), file.auth.clone());
        assert_eq!(new.port, file.port);
        assert_eq!(new.storage_uri, file.storage_uri);
        assert_eq!(new.api_tokens, file.api_tokens);
        assert_eq!(new.limits, file.limits);
        assert_eq!(new.logging, file.logging);
        assert_eq!(new.slot_name_prefix, file.slot_name_prefix);
        assert_eq!(new.compaction, file.compaction);
        assert_eq!(new.ignored, file.ignored);
        assert!(new.sync_rules.is_none());
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = MINIMAL.replace("sync_config:", "colour: blue\nsync_config:");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("unknown field `colour`"), "{err}");
        assert!(err.contains("line 7"), "{err}");
    }

    #[test]
    fn env_tags_resolve_and_missing_ones_are_located() {
        let home = std::env::var("HOME").unwrap();
        let c = parse(&MINIMAL.replace("audience: [app]", "audience: [!env HOME]")).unwrap();
        assert_eq!(c.auth.audiences, vec![home]);
        let err = parse(&format!("{MINIMAL}port: !env RIPTIDE_TEST_CFG_MISSING\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("RIPTIDE_TEST_CFG_MISSING"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn powersync_only_keys_are_accepted_and_reported() {
        let text = format!(
            "{MINIMAL}telemetry:\n  disable_telemetry_sharing: true\napi:\n  tokens: [secret]\n  parameters:\n    max_data_fetch_concurrency: 4\n    max_buckets_per_connection: 50\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(
            c.ignored,
            vec!["telemetry", "api.parameters.max_data_fetch_concurrency"]
        );
        assert_eq!(c.limits.max_buckets_per_connection, 50);
        assert_eq!(c.api_tokens, vec!["secret"]);
    }

    #[test]
    fn invalid_values_are_precise() {
        for (from, to, expect) in [
            ("type: postgresql", "type: mysql", "not supported"),
            ("sslmode: disable", "sslmode: sometimes", "sslmode"),
            ("sslmode: disable", "sslmode: verify-full", "TLS"),
            (
                "uri: postgres://postgres@127.0.0.1:5432/app",
                "uri: 'postgres://host:notaport/db'",
                "valid Postgres",
            ),
        ] {
            let err = parse(&MINIMAL.replace(from, to)).unwrap_err().to_string();
            assert!(err.contains(expect), "{to}: {err}");
        }
        let err = parse(&format!("{MINIMAL}port: eighty\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("port") && err.contains("line"), "{err}");
        let err = parse(&format!("{MINIMAL}system:\n  logging:\n    level: loud\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("loud"), "{err}");
    }

    #[test]
    fn compaction_is_on_by_default_and_configurable() {
        let c = parse(MINIMAL).unwrap();
        assert!(c.compaction.enabled);
        assert_eq!(c.compaction.threshold, 1_000);
        assert_eq!(c.compaction.interval, std::time::Duration::from_secs(30));
        let c = parse(&format!(
            "{MINIMAL}compaction:\n  enabled: false\n  threshold: 50\n  interval_seconds: 5\n"
        ))
        .unwrap();
        assert!(!c.compaction.enabled);
        assert_eq!(c.compaction.threshold, 50);
        assert_eq!(c.compaction.interval, std::time::Duration::from_secs(5));
        let err = parse(&format!("{MINIMAL}compaction:\n  threshold: 0\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("compaction.threshold"), "{err}");
    }

    #[test]
    fn separate_connection_fields_build_a_uri() {
        let text = MINIMAL.replace(
            "uri: postgres://postgres@127.0.0.1:5432/app",
            "hostname: db.example\n      port: 6543\n      database: app\n      username: me\n      password: 'p@ss word'",
        );
        let c = parse(&text).unwrap();
        assert_eq!(
            c.source_uri,
            "postgres://me:p%40ss%20word@db.example:6543/app"
        );
    }

    #[test]
    fn sync_rules_from_a_file_next_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yaml"), "bucket_definitions: {}\n").unwrap();
        let text = MINIMAL.replace(
            "sync_config:\n  content: |",
            "sync_config:\n  path: rules.yaml\nunused_block: |",
        );
        // `unused_block` is unknown: first check it is rejected, then use a clean variant.
        assert!(ServeConfig::parse(&text, "c.yaml", dir.path()).is_err());
        let start = MINIMAL.find("sync_config:").unwrap();
        let end = MINIMAL.find("client_auth:").unwrap();
        let text = format!(
            "{}sync_config:\n  path: rules.yaml\n{}",
            &MINIMAL[..start],
            &MINIMAL[end..]
        );
        let c = ServeConfig::parse(&text, "c.yaml", dir.path()).unwrap();
        assert_eq!(c.sync_rules.as_deref(), Some("bucket_definitions: {}\n"));
    }

    #[test]
    fn sync_config_is_optional_rules_then_come_from_the_admin_api() {
        let start = MINIMAL.find("sync_config:").unwrap();
        let end = MINIMAL.find("client_auth:").unwrap();
        let text = format!(
            "{}{}api:\n  tokens: [t1]\n",
            &MINIMAL[..start],
            &MINIMAL[end..]
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.sync_rules, None);
        assert_eq!(c.api_tokens, vec!["t1"]);
        // An empty sync_config is still an error.
        let text = format!(
            "{}sync_config: {{}}\n{}",
            &MINIMAL[..start],
            &MINIMAL[end..]
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("needs `path` or `content`"), "{err}");
    }
}
