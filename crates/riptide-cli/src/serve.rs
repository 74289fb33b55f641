//! `riptide serve`: storage, replication and the HTTP service, wired from a [`ServeConfig`].

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use riptide_replication::{Replicator, ReplicatorOptions};
use riptide_rules::SyncRules;
use riptide_service::{AppState, AuthConfig, KeyStore, Limits, ServiceOptions};
use riptide_storage::{BucketStorage, CheckpointEvent, PgStorage};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::config::ServeConfig;
use crate::deployments::{Admin, DeploymentOptions, Deployments};

/// Name of the storage database created on the source server when `storage` is not configured.
pub const DEFAULT_STORAGE_DATABASE: &str = "riptide_storage";

/// A running service: its port, and the token that stops it.
pub struct Running {
    pub port: u16,
    pub cancel: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<()>>,
}

/// Starts everything and returns once the HTTP port is bound.
pub async fn start(config: ServeConfig) -> Result<Running> {
    for key in &config.ignored {
        tracing::info!(key = %key, "config key accepted for compatibility and ignored");
    }
    let rules = match &config.sync_rules {
        Some(text) => Some(parse_config_rules(text, &config)?),
        None => None,
    };

    let source: tokio_postgres::Config = config
        .source_uri
        .parse()
        .context("invalid source connection string")?;
    let storage_uri = match &config.storage_uri {
        Some(uri) => uri.clone(),
        None => ensure_default_storage_database(&source).await?,
    };
    let storage = Arc::new(
        PgStorage::connect(&storage_uri)
            .await
            .context("cannot connect to the storage database")?,
    );
    storage
        .migrate()
        .await
        .context("cannot migrate the storage schema")?;
    let storage: Arc<dyn BucketStorage> = storage;

    let (events, _) = broadcast::channel::<CheckpointEvent>(1024);
    let replicator_options = ReplicatorOptions {
        source: source.clone(),
        publication: "powersync".into(),
        slot_prefix: config.slot_name_prefix.clone(),
    };
    if let Some(rules) = &rules {
        Replicator::new(replicator_options.clone(), storage.clone(), events.clone())
            .check_source(rules)
            .await
            .context("the source database is not ready for replication")?;
    }
    let cancel = CancellationToken::new();
    let (deployments, rules_rx) = Deployments::start(
        storage.clone(),
        DeploymentOptions {
            replicator: replicator_options,
            source_uri: config.source_uri.clone(),
            config_rules: config.sync_rules.clone(),
        },
        events.clone(),
        cancel.clone(),
    )
    .await?;

    let keystore = KeyStore::new(AuthConfig {
        jwks: Some(serde_json::json!({ "keys": config.auth.jwks })),
        jwks_uri: config.auth.jwks_uris.clone(),
        audience: config.auth.audiences.clone(),
        ..AuthConfig::default()
    })
    .context("invalid client_auth keys")?;
    let mut options = ServiceOptions::new(keystore);
    options.api_tokens = riptide_service::ApiTokens::new(config.api_tokens.iter().cloned());
    options.limits = Limits {
        max_buckets_per_connection: config.limits.max_buckets_per_connection,
        max_parameter_query_results: config.limits.max_parameter_query_results,
        max_concurrent_connections: config.limits.max_concurrent_connections,
    };
    let source_pool = source_pool(&source)?;
    let state = AppState::new(
        options,
        storage.clone(),
        rules_rx,
        events.clone(),
        Arc::new(riptide_service::PgSourceDatabase::new(source_pool)),
    )
    .with_rules_admin(Arc::new(Admin(deployments.clone())));
    // `/metrics` and the dashboard: this process's recorder, and the replicator's counters.
    if !state.metrics().install_global() {
        tracing::debug!("a metrics recorder was already installed; /metrics shows riptide's own");
    }
    state
        .metrics()
        .set_replication(Arc::new(StatusProgress(deployments.clone())));
    // Compacts churning buckets until shutdown (riptide_service::compactor).
    riptide_service::compactor::spawn(&state, config.compaction, cancel.clone());

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.port))
        .await
        .with_context(|| format!("cannot listen on port {}", config.port))?;
    let port = listener.local_addr()?.port();

    let task = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            tracing::info!(port, "sync service listening");
            let served = riptide_service::serve(listener, state, cancel.clone()).await;
            cancel.cancel();
            deployments.shutdown().await;
            served.context("HTTP server failed")
        }
    });
    Ok(Running { port, cancel, task })
}

/// Parses the config's rules, naming errors at their place in the config (or rules) file.
fn parse_config_rules(text: &str, config: &ServeConfig) -> Result<SyncRules> {
    SyncRules::parse(text).map_err(|errors| {
        let (lines, columns) = config.sync_rules_offset;
        let list: Vec<String> = errors
            .0
            .iter()
            .map(|e| {
                format!(
                    "  line {}, column {}: {}",
                    e.line + lines,
                    e.column + columns,
                    e.message
                )
            })
            .collect();
        anyhow::anyhow!(
            "invalid sync rules in {}:\n{}",
            config.sync_rules_origin,
            list.join("\n")
        )
    })
}

/// The replicator's counters as the service's metrics read them.
struct StatusProgress(Arc<Deployments>);

impl riptide_service::ReplicationProgress for StatusProgress {
    fn progress(&self) -> riptide_service::ReplicationSnapshot {
        let s = self.0.status().snapshot();
        riptide_service::ReplicationSnapshot {
            last_received_lsn: s.last_received_lsn,
            last_committed_lsn: s.last_committed_lsn,
            transactions: s.transactions,
            rows: s.rows,
            snapshot_table: s.snapshot_table,
            snapshot_rows: s.snapshot_rows,
            last_commit: s.last_commit,
        }
    }
}

/// Creates the `riptide_storage` database on the source server if it does not exist, and
/// returns its URI.
pub(crate) async fn ensure_default_storage_database(
    source: &tokio_postgres::Config,
) -> Result<String> {
    let (client, conn) = source
        .connect(tokio_postgres::NoTls)
        .await
        .context("cannot connect to the source database")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&DEFAULT_STORAGE_DATABASE],
        )
        .await?
        .is_some();
    if !exists
        && let Err(e) = client
            .batch_execute(&format!("CREATE DATABASE {DEFAULT_STORAGE_DATABASE}"))
            .await
    {
        // Another process may have created it meanwhile.
        let now = client
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &[&DEFAULT_STORAGE_DATABASE],
            )
            .await?;
        if now.is_none() {
            bail!(
                "cannot create the storage database {DEFAULT_STORAGE_DATABASE} on the source \
                 server ({e}); create it, or configure `storage.uri`"
            );
        }
    }
    Ok(config_to_uri(source, DEFAULT_STORAGE_DATABASE))
}

/// The URI of another database on the same server, with the same credentials.
fn config_to_uri(config: &tokio_postgres::Config, dbname: &str) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let password = config
        .get_password()
        .map(|p| format!(":{}", percent(&String::from_utf8_lossy(p))))
        .unwrap_or_default();
    format!(
        "postgres://{}{password}@{host}:{port}/{dbname}",
        percent(user)
    )
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn source_pool(source: &tokio_postgres::Config) -> Result<deadpool_postgres::Pool> {
    let manager = deadpool_postgres::Manager::new(source.clone(), tokio_postgres::NoTls);
    deadpool_postgres::Pool::builder(manager)
        .max_size(4)
        .build()
        .context("cannot create the source connection pool")
}
