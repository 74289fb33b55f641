//! `riptide serve`: storage, replication and the HTTP service, wired from a [`ServeConfig`].
//!
//! [`start`] runs the steps in order (rules, storage, source check, the replication lease —
//! whose holder runs the deployments and the background compactor, `crate::roles` — HTTP,
//! the node's row in storage) and returns once the port is bound; the service then runs in a
//! task until its token is cancelled. A process of role `api` (or a standby) serves the stored
//! active deployment and never writes deployments or ops.

use std::sync::Arc;

use riptide_pg::{PgConnection, PgError};
use riptide_replication::{ReplicationError, ReplicationSource, Replicator};
use riptide_rules::SyncRules;
use riptide_service::auth::KeyStoreError;
use riptide_service::{ActiveRules, AppState, KeyStore, ServiceOptions};
use riptide_storage::{
    BucketStorage, CheckpointEvent, CheckpointListener, PgStorage, StorageError,
};
use tokio::sync::{Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::config::ServeConfig;
use crate::deployments::{Admin, DeploymentError, DeploymentOptions};
use crate::instance_admin::Instance;
use crate::roles::{self, LeaseKeeper, Node, NodeRegistration, node_id};

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
    let (pg, storage_connection) = connect_pg_storage(&config).await?;
    // Other processes' commits on this storage; this process's own are skipped.
    let listener = CheckpointListener::new(&storage_connection, &pg);
    let storage: Arc<dyn BucketStorage> = Arc::new(pg.clone());
    let (events, _) = broadcast::channel::<CheckpointEvent>(1024);
    let replicator_options = ReplicationSource {
        connection: source.clone(),
        publication: PUBLICATION.into(),
        slot_prefix: config.slot_name_prefix.clone(),
    };
    if config.role.replicates()
        && let Some(rules) = &rules
    {
        check_source(&replicator_options, &storage, &events, rules).await?;
    }
    let cancel = CancellationToken::new();
    let (rules_tx, rules_rx) = watch::channel::<Option<ActiveRules>>(None);
    let node = Arc::new(Node::new(node_id(), config.role));
    let admin = Arc::new(Admin {
        node: node.clone(),
        storage: storage.clone(),
        options: DeploymentOptions {
            replicator: replicator_options,
            config_rules: config.sync_rules.clone(),
            lease_lost: None,
        },
    });
    let state = AppState::new(
        service_options(&config)?,
        storage.clone(),
        rules_rx,
        events.clone(),
        Arc::new(riptide_service::PgSourceDatabase::new(source_pool(
            &source,
        )?)),
    )
    .with_rules_admin(admin.clone())
    .with_cluster_view(Arc::new(roles::StorageNodes {
        storage: pg.clone(),
        node: node.id.clone(),
        expiry: config.lease.duration,
    }))
    .with_instance_admin(Arc::new(Instance::new(
        admin.clone(),
        source.clone(),
        PUBLICATION,
        config.execute_sql,
    )));
    attach_metrics(&state, &node);
    // Another process's deployment switch wakes the follower (`roles/follow.rs`).
    let switched = Arc::new(Notify::new());
    listener.spawn(
        state.notification_sink(Some(roles::follow_hook(switched.clone()))),
        cancel.clone(),
    );
    let lease = start_lease(
        &config,
        &state,
        &admin,
        pg.clone(),
        &events,
        &rules_tx,
        &cancel,
    )
    .await?;
    tokio::spawn(roles::follow_active(
        node.clone(),
        storage,
        events,
        rules_tx,
        switched,
        cancel.clone(),
    ));
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
    let registration = tokio::spawn(
        NodeRegistration {
            node,
            storage: pg,
            address: std::net::SocketAddr::new(config.host, port).to_string(),
            interval: config.lease.renew,
        }
        .run(cancel.clone()),
    );
    let task = tokio::spawn(serve_until_cancelled(
        listener,
        state,
        [lease, Some(registration)],
        cancel.clone(),
    ));
    Ok(Running { port, cancel, task })
}

/// Checks the source for the config's rules; an unreachable source is not an error (storage
/// serves, the replicators retry it and say so).
async fn check_source(
    options: &ReplicationSource,
    storage: &Arc<dyn BucketStorage>,
    events: &broadcast::Sender<CheckpointEvent>,
    rules: &SyncRules,
) -> Result<(), ServeError> {
    let checked = Replicator::new(options.clone(), storage.clone(), events.clone())
        .check_source(rules)
        .await;
    match checked {
        Ok(()) => Ok(()),
        Err(e) if crate::deployments::unreachable(&e) => {
            tracing::warn!(error = %e, "the source database cannot be reached; serving what storage holds and retrying");
            Ok(())
        }
        Err(e) => Err(ServeError::SourceNotReady(e)),
    }
}

/// For a role that replicates: tries to take the lease now (so that start-up errors of the
/// deployments stop `serve`, as with one process), then keeps competing for it in a task
/// (`roles/lease.rs`). Not holding it, the service serves the stored active deployment.
async fn start_lease(
    config: &ServeConfig,
    state: &AppState,
    admin: &Arc<Admin>,
    pg: PgStorage,
    events: &broadcast::Sender<CheckpointEvent>,
    rules_tx: &watch::Sender<Option<ActiveRules>>,
    cancel: &CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, ServeError> {
    if !config.role.replicates() {
        tracing::info!(node = %admin.node.id, "role api: serving from storage, not replicating");
        roles::follow::refresh(&pg, rules_tx).await;
        return Ok(None);
    }
    let keeper = LeaseKeeper {
        node: admin.node.clone(),
        storage: pg.clone(),
        lease: config.lease,
        deployments: admin.options.clone(),
        events: events.clone(),
        rules_tx: rules_tx.clone(),
        compaction: config.compaction,
        metrics: state.metrics().clone(),
    };
    let first = keeper.try_lead(cancel).await?;
    if first.is_none() {
        tracing::info!(node = %admin.node.id, "another process holds the replication lease; standing by");
        roles::follow::refresh(&pg, rules_tx).await;
    }
    Ok(Some(tokio::spawn(keeper.run(first, cancel.clone()))))
}

/// Serves HTTP until `cancel` fires (or the server fails), then stops the replicators (the
/// lease keeper releases the lease) and removes this node's row.
async fn serve_until_cancelled(
    listener: tokio::net::TcpListener,
    state: AppState,
    tasks: [Option<tokio::task::JoinHandle<()>>; 2],
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    tracing::info!(port, "sync service listening");
    let served = riptide_service::serve(listener, state, cancel.clone()).await;
    cancel.cancel();
    for task in tasks.into_iter().flatten() {
        let _ = task.await;
    }
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

/// [`connect_storage`] as the Postgres storage (the lease and the nodes live there too), and
/// the connection it was made from (for the process's `CheckpointListener`).
pub async fn connect_pg_storage(
    config: &ServeConfig,
) -> Result<(PgStorage, PgConnection), ServeError> {
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

/// `/metrics` and the dashboard: this process's recorder, the replicator's counters (idle
/// ones while another process holds the lease) and the node's role and lease.
fn attach_metrics(state: &AppState, node: &Arc<Node>) {
    if !state.metrics().install_global() {
        tracing::debug!("a metrics recorder was already installed; /metrics shows riptide's own");
    }
    state
        .metrics()
        .set_replication(Arc::new(StatusProgress(node.clone())));
    state
        .metrics()
        .set_node(Arc::new(NodeProgress(node.clone())));
}

/// The replicator's counters as the service's metrics read them.
struct StatusProgress(Arc<Node>);

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

/// The node's role and lease as the service's metrics read them.
struct NodeProgress(Arc<Node>);

impl riptide_service::NodeStatus for NodeProgress {
    fn node(&self) -> riptide_service::NodeSnapshot {
        let lease = self.0.lease();
        riptide_service::NodeSnapshot {
            role: self.0.role.as_str(),
            competes: self.0.role.replicates(),
            lease_epoch: lease.epoch,
            takeovers: lease.takeovers,
            losses: lease.losses,
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
