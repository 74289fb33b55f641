//! The config file's shape (serde) and its resolution into a [`ServeConfig`], one module per
//! section. Sections resolve in the file's documented order (replication, storage, sync rules,
//! client auth, api, system, compaction, cluster), so the first problem reported is the same whatever else is wrong.

mod api;
mod client_auth;
mod cluster;
mod compaction;
mod replication;
mod storage;
mod sync_config;
mod system;

use std::path::Path;

use serde::Deserialize;

use super::{ConfigError, Env, ServeConfig};

pub(super) type Str = Env<String>;

/// Any value: accepted and ignored.
type Ignored = yaml_serde::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    replication: Option<replication::Replication>,
    storage: Option<storage::Storage>,
    /// The listen address (a Riptide key).
    host: Option<Str>,
    port: Option<Env<u16>>,
    sync_config: Option<sync_config::SyncConfig>,
    /// The old name of `sync_config`.
    sync_rules: Option<sync_config::SyncConfig>,
    client_auth: Option<client_auth::ClientAuth>,
    api: Option<api::Api>,
    system: Option<system::System>,
    /// The background compactor (a Riptide section).
    compaction: Option<compaction::Compaction>,
    /// The replication lease of several processes (a Riptide section).
    cluster: Option<cluster::Cluster>,
    telemetry: Option<Ignored>,
    healthcheck: Option<Ignored>,
    migrations: Option<Ignored>,
    metadata: Option<Ignored>,
    parameters: Option<Ignored>,
}

/// Names the file in messages and collects the keys accepted without effect.
pub(super) struct Resolver<'a> {
    origin: &'a str,
    ignored: Vec<String>,
}

impl Resolver<'_> {
    pub(super) fn invalid(&self, message: impl Into<String>) -> ConfigError {
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
    r.ignore("telemetry", &file.telemetry);
    r.ignore("healthcheck", &file.healthcheck);
    r.ignore("migrations", &file.migrations);
    r.ignore("metadata", &file.metadata);
    r.ignore("parameters", &file.parameters);

    let source = replication::resolve(&mut r, file.replication)?;
    let storage = storage::resolve(&mut r, file.storage)?;
    let rules = sync_config::resolve(&mut r, file.sync_config, file.sync_rules, text, base)?;
    let auth = client_auth::resolve(&mut r, file.client_auth)?;
    let api = api::resolve(&mut r, file.api)?;
    let logging = system::resolve(&r, file.system)?;
    let compaction = compaction::resolve(&r, file.compaction)?;

    // Everything the file does not set keeps the one default, from `ServeConfig::new`.
    let mut config = ServeConfig::new(source.connection, auth);
    config.storage = storage;
    if let Some(host) = file.host {
        let host = host.into_inner();
        config.host = host.trim().parse().map_err(|_| {
            r.invalid(format!(
                "host: {host:?} is not an IP address (0.0.0.0 for every interface, 127.0.0.1 \
                 for this machine only, :: for every IPv6 interface)"
            ))
        })?;
    }
    if let Some(port) = file.port {
        config.port = port.into_inner();
    }
    if let Some(prefix) = source.slot_name_prefix {
        config.slot_name_prefix = prefix;
    }
    config.execute_sql.enabled = source.debug_api;
    if let Some(rules) = rules {
        config.sync_rules = Some(rules.text);
        config.sync_rules_origin = rules.origin;
        config.sync_rules_offset = rules.offset;
    }
    api.apply(&mut config);
    logging.apply(&mut config.logging);
    compaction.apply(&mut config.compaction);
    cluster::resolve(&r, file.cluster, &mut config.lease)?;
    config.ignored = r.ignored;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use tokio_postgres::config::Host;

    use super::*;
    use crate::config::Limits;

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
        let source = c.source.config();
        assert_eq!(source.get_user(), Some("postgres"));
        assert_eq!(source.get_hosts(), [Host::Tcp("127.0.0.1".into())]);
        assert_eq!(source.get_ports(), [5432]);
        assert_eq!(source.get_dbname(), Some("app"));
        assert_eq!(source.get_password(), None);
        assert!(c.storage.is_none());
        assert!(
            c.sync_rules
                .as_deref()
                .unwrap()
                .contains("bucket_definitions")
        );
        // The inline rules start on line 9 of the file, indented by 4.
        assert_eq!(c.sync_rules_offset, (8, 4));
        assert_eq!(c.auth.audience, vec!["app"]);
        assert_eq!(c.auth.jwks.as_ref().unwrap()["keys"][0]["kid"], "k1");
        assert_eq!(c.limits, Limits::default());
        assert!(c.ignored.is_empty());
    }

    #[test]
    fn new_has_the_defaults_of_a_file_that_sets_only_source_rules_and_auth() {
        let file = parse(MINIMAL).unwrap();
        let new = ServeConfig::new(file.source.clone(), file.auth.clone());
        assert_eq!(new.port, file.port);
        assert_eq!(new.storage, file.storage);
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
        assert_eq!(c.auth.audience, vec![home]);
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
            (
                "sslmode: disable",
                "sslmode: disable\n      client_private_key: /k.pem",
                "client_certificate",
            ),
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
    fn separate_connection_fields_build_a_connection() {
        let text = MINIMAL.replace(
            "uri: postgres://postgres@127.0.0.1:5432/app",
            "hostname: db.example\n      port: 6543\n      database: app\n      username: me\n      password: 'p@ss word'",
        );
        let c = parse(&text).unwrap();
        let source = c.source.config();
        assert_eq!(source.get_user(), Some("me"));
        assert_eq!(source.get_password(), Some(&b"p@ss word"[..]));
        assert_eq!(source.get_hosts(), [Host::Tcp("db.example".into())]);
        assert_eq!(source.get_ports(), [6543]);
        assert_eq!(source.get_dbname(), Some("app"));
    }

    #[test]
    fn tls_keys_take_effect_and_are_not_reported_as_ignored() {
        let text = MINIMAL.replace(
            "sslmode: disable",
            "sslmode: verify-full\n      cacert: /etc/ca.pem\n      client_certificate: /etc/client.crt\n      client_private_key: /etc/client.key",
        );
        let c = parse(&text).unwrap();
        let tls = c.source.tls();
        assert_eq!(tls.mode, crate::config::SslMode::VerifyFull);
        assert_eq!(
            tls.root_certs,
            Some(crate::config::RootCerts::Pem(
                crate::config::PemSource::Path("/etc/ca.pem".into())
            ))
        );
        assert_eq!(
            tls.client_cert,
            Some(crate::config::PemSource::Path("/etc/client.crt".into()))
        );
        assert!(c.ignored.is_empty(), "{:?}", c.ignored);
        let text = format!(
            "{MINIMAL}storage:\n  type: postgresql\n  uri: postgres://s@db.example/storage\n  cacert: /etc/storage-ca.pem\n"
        );
        let storage = parse(&text).unwrap().storage.unwrap();
        assert_eq!(storage.tls().mode, crate::config::SslMode::VerifyFull);
        assert!(storage.tls().root_certs.is_some());
    }

    #[test]
    fn sections_are_checked_in_file_order() {
        // A bad storage type is reported before the missing client_auth after it.
        let end = MINIMAL.find("client_auth:").unwrap();
        let text = format!("{}storage:\n  type: mongodb\n", &MINIMAL[..end]);
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("storage.type"), "{err}");
        let err = parse(&MINIMAL[..end]).unwrap_err().to_string();
        assert!(err.contains("client_auth: no keys configured"), "{err}");
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

    #[test]
    fn host_is_the_listen_address_every_interface_by_default() {
        assert_eq!(parse(MINIMAL).unwrap().host.to_string(), "0.0.0.0");
        let c = parse(&format!("{MINIMAL}host: 127.0.0.1\n")).unwrap();
        assert_eq!(c.host.to_string(), "127.0.0.1");
        let c = parse(&format!("{MINIMAL}host: '::1'\n")).unwrap();
        assert_eq!(c.host.to_string(), "::1");
        let err = parse(&format!("{MINIMAL}host: example.com\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("host") && err.contains("not an IP address"),
            "{err}"
        );
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
        for (key, value) in [("threshold", 0), ("interval_seconds", 0)] {
            let err = parse(&format!("{MINIMAL}compaction:\n  {key}: {value}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("compaction.{key}")), "{err}");
        }
    }

    #[test]
    fn dashboard_tokens_are_apart_from_admin_tokens() {
        let c = parse(&format!(
            "{MINIMAL}api:\n  tokens: [admin]\n  dashboard_tokens: [view]\n"
        ))
        .unwrap();
        assert_eq!(c.api_tokens, vec!["admin"]);
        assert_eq!(c.dashboard_tokens, vec!["view"]);
        assert!(!format!("{c:?}").contains("view"));
        let err = parse(&format!(
            "{MINIMAL}api:\n  tokens: [same]\n  dashboard_tokens: [same]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("dashboard_tokens must differ"), "{err}");
    }
}
