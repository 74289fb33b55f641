//! `riptide serve`: storage, replication and the HTTP service, wired from a [`ServeConfig`].
//!
//! [`start`] runs the steps in order (rules, storage, source check, deployments, the background
//! compactor, HTTP) and returns once the port is bound; the service then runs in a task until its token is
//! cancelled.

use std::sync::Arc;

use riptide_pg::{PgConnection, PgError};
use riptide_replication::{ReplicationError, ReplicationSource, Replicator};
use riptide_rules::SyncRules;
use riptide_service::auth::KeyStoreError;
use riptide_service::{AppState, KeyStore, ServiceOptions};
use riptide_storage::{
    BucketStorage, CheckpointEvent, CheckpointListener, PgStorage, StorageError,
};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::config::ServeConfig;
use crate::deployments::{Admin, DeploymentError, DeploymentOptions, Deployments};
use crate::instance_admin::Instance;

/// Name of the storage database created on the source server when `storage` is not configured.
pub const DEFAULT_STORAGE_DATABASE: &str = "riptide_storage";
/// The publication replication reads.
const PUBLICATION: &str = "powersync";

/// A running service: its port, and the token that stops it.
pub struct Running {
    pub port: u16,
    pub cancel: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

/// Why the service could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid sync rules in {origin}:\n{problems}")]
    InvalidRules { origin: String, problems: String },
    #[error("cannot connect to the source database")]
    SourceConnect(#[source] PgError),
    #[error("cannot read the source server's databases")]
    SourceQuery(#[source] tokio_postgres::Error),
    #[error(
        "cannot create the storage database {DEFAULT_STORAGE_DATABASE} on the source server; \
         create it, or configure `storage.uri`"
    )]
    CreateStorageDatabase(#[source] tokio_postgres::Error),
    #[error("cannot connect to the storage database")]
    StorageConnect(#[source] StorageError),
    #[error("cannot migrate the storage schema")]
    StorageMigrate(#[source] StorageError),
    #[error("the source database is not ready for replication")]
    SourceNotReady(#[source] ReplicationError),
    #[error(transparent)]
    Deployments(#[from] DeploymentError),
    #[error("invalid client_auth keys")]
    Keys(#[source] KeyStoreError),
    #[error("cannot create the source connection pool")]
    SourcePool(#[source] PgError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server failed")]
    Http(#[source] std::io::Error),
}

/// Starts everything and returns once the HTTP port is bound.
pub async fn start(config: ServeConfig) -> Result<Running, ServeError> {
    for key in &config.ignored {
        tracing::info!(key = %key, "config key accepted for compatibility and ignored");
    }
    let rules = match &config.sync_rules {
        Some(text) => Some(parse_config_rules(text, &config)?),
        None => None,
    };
    let source = config.source.clone();
    let (pg_storage, storage_connection) = connect_pg_storage(&config).await?;
    // Other processes' commits on this storage; this process's own are skipped.
    let listener = CheckpointListener::new(&storage_connection, &pg_storage);
    let storage: Arc<dyn BucketStorage> = Arc::new(pg_storage);
    let (events, _) = broadcast::channel::<CheckpointEvent>(1024);
    let replicator_options = ReplicationSource {
        connection: source.clone(),
        publication: PUBLICATION.into(),
        slot_prefix: config.slot_name_prefix.clone(),
    };
    if let Some(rules) = &rules {
        let checked = Replicator::new(replicator_options.clone(), storage.clone(), events.clone())
            .check_source(rules)
            .await;
        match checked {
            Ok(()) => {}
            // Serve what storage holds; the replicators retry the source (and say so).
            Err(e) if crate::deployments::unreachable(&e) => {
                tracing::warn!(error = %e, "the source database cannot be reached; serving what storage holds and retrying");
            }
            Err(e) => return Err(ServeError::SourceNotReady(e)),
        }
    }
    let cancel = CancellationToken::new();
    let (deployments, rules_rx) = Deployments::start(
        storage.clone(),
        DeploymentOptions {
            replicator: replicator_options,
            config_rules: config.sync_rules.clone(),
        },
        events.clone(),
        cancel.clone(),
    )
    .await?;
    let state = AppState::new(
        service_options(&config)?,
        storage,
        rules_rx,
        events,
        Arc::new(riptide_service::PgSourceDatabase::new(source_pool(
            &source,
        )?)),
    )
    .with_rules_admin(Arc::new(Admin(deployments.clone())))
    .with_instance_admin(Arc::new(Instance::new(
        deployments.clone(),
        source.clone(),
        PUBLICATION,
        config.execute_sql,
    )));
    attach_metrics(&state, &deployments);
    listener.spawn(
        state.notification_sink(Some(deployments.follow_hook())),
        cancel.clone(),
    );
    // Compacts churning buckets until shutdown (riptide_service::compactor).
    riptide_service::compactor::spawn(&state, config.compaction, cancel.clone());
    let listen = std::net::SocketAddr::new(config.host, config.port);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: listen,
            source,
        })?;
    let port = listener
        .local_addr()
        .map_err(|source| ServeError::Listen {
            addr: listen,
            source,
        })?
        .port();
    let task = tokio::spawn(serve_until_cancelled(
        listener,
        state,
        deployments,
        cancel.clone(),
    ));
    Ok(Running { port, cancel, task })
}

/// Serves HTTP until `cancel` fires (or the server fails), then stops the replicators.
async fn serve_until_cancelled(
    listener: tokio::net::TcpListener,
    state: AppState,
    deployments: Arc<Deployments>,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    tracing::info!(port, "sync service listening");
    let served = riptide_service::serve(listener, state, cancel.clone()).await;
    cancel.cancel();
    deployments.shutdown().await;
    served.map_err(ServeError::Http)
}

/// Parses the config's rules, naming errors at their place in the config (or rules) file.
fn parse_config_rules(text: &str, config: &ServeConfig) -> Result<SyncRules, ServeError> {
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
        ServeError::InvalidRules {
            origin: config.sync_rules_origin.clone(),
            problems: list.join("\n"),
        }
    })
}

/// The configured storage database (or the default one on the source server), connected and
/// migrated; TLS as configured (the default database: the source's settings).
pub(crate) async fn connect_storage(
    config: &ServeConfig,
) -> Result<Arc<dyn BucketStorage>, ServeError> {
    Ok(Arc::new(connect_pg_storage(config).await?.0))
}

/// [`connect_storage`] as the Postgres storage, and the connection it was made from (for the
/// process's `CheckpointListener`).
async fn connect_pg_storage(config: &ServeConfig) -> Result<(PgStorage, PgConnection), ServeError> {
    let storage_connection = match &config.storage {
        Some(storage) => storage.clone(),
        None => ensure_default_storage_database(&config.source).await?,
    };
    let storage = PgStorage::connect_with(&storage_connection)
        .await
        .map_err(ServeError::StorageConnect)?;
    storage
        .migrate()
        .await
        .map_err(ServeError::StorageMigrate)?;
    Ok((storage, storage_connection))
}

/// Keys, admin tokens and limits of the config, as the service takes them.
fn service_options(config: &ServeConfig) -> Result<ServiceOptions, ServeError> {
    let keystore = KeyStore::new(config.auth.clone()).map_err(ServeError::Keys)?;
    let mut options = ServiceOptions::new(keystore);
    options.api_tokens = riptide_service::ApiTokens::new(config.api_tokens.iter().cloned());
    options.dashboard_tokens =
        riptide_service::ApiTokens::new(config.dashboard_tokens.iter().cloned());
    options.limits = config.limits;
    Ok(options)
}

/// `/metrics` and the dashboard: this process's recorder, and the replicator's counters.
fn attach_metrics(state: &AppState, deployments: &Arc<Deployments>) {
    if !state.metrics().install_global() {
        tracing::debug!("a metrics recorder was already installed; /metrics shows riptide's own");
    }
    state
        .metrics()
        .set_replication(Arc::new(StatusProgress(deployments.clone())));
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
            error: s.problem.as_ref().map(|p| p.error.clone()),
            failing_since: s.problem.map(|p| p.since),
            failures: s.failures,
            slot_invalidations: s.slot_invalidations,
        }
    }
}

/// Creates the `riptide_storage` database on the source server if it does not exist, and
/// returns how to connect to it: the source's server and credentials, that database.
async fn ensure_default_storage_database(
    source: &PgConnection,
) -> Result<PgConnection, ServeError> {
    let client = source.connect().await.map_err(ServeError::SourceConnect)?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&DEFAULT_STORAGE_DATABASE],
        )
        .await
        .map_err(ServeError::SourceQuery)?
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
            .await
            .map_err(ServeError::SourceQuery)?;
        if now.is_none() {
            return Err(ServeError::CreateStorageDatabase(e));
        }
    }
    Ok(source.with_dbname(DEFAULT_STORAGE_DATABASE))
}

/// The service's pool on the source (the admin API's schema and validation reads).
fn source_pool(source: &PgConnection) -> Result<deadpool_postgres::Pool, ServeError> {
    source.pool(4).map_err(ServeError::SourcePool)
}
