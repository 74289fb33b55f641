//! Shared state of the service: storage, the active sync rules, the checkpoint bus, the source
//! database, auth, limits.

use std::sync::Arc;
use std::time::Duration;

use riptide_storage::{BucketStorage, CheckpointEvent, DeploymentId};
use tokio::sync::{Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::auth::KeyStore;
use crate::bucket_rules::BucketRules;
use crate::dashboard::ApiTokens;
use crate::error::ApiError;
use crate::instance_admin::InstanceAdmin;
use crate::limits::Limits;
use crate::metrics::ServiceMetrics;
use crate::rules_admin::RulesAdmin;
use crate::session::wake::WakeIndex;
use crate::slots::{StreamSlot, UserSlots, take_stream_slot};
use crate::source::SourceDatabase;
use crate::write_checkpoints::WriteCheckpointNotifier;

/// The sync rules serving clients.
#[derive(Clone)]
pub struct ActiveRules {
    pub deployment: DeploymentId,
    /// Usually an `Arc<riptide_rules::SyncRules>` (coerces).
    pub rules: Arc<dyn BucketRules>,
}

impl std::fmt::Debug for ActiveRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveRules")
            .field("deployment", &self.deployment)
            .finish_non_exhaustive()
    }
}

/// Configuration of the service.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    pub limits: Limits,
    pub keystore: KeyStore,
    /// Mean interval of `token_expires_in` keepalive lines (jitter ±10 %). Default 20 s.
    pub keepalive_interval: Duration,
    /// How long `/sync/stream` waits for an active deployment before answering 500
    /// `PSYNC_S2302`. Default 5 s.
    pub no_rules_wait: Duration,
    /// Checkpoints on one stream are paced to one per interval on average, with up to
    /// three back to back after a pause (`session::pace`). Default 10 ms.
    pub checkpoint_interval: Duration,
    /// `api.tokens`: the admin API's tokens. The dashboard never accepts them.
    pub api_tokens: ApiTokens,
    /// `api.dashboard_tokens`: read-only tokens for the dashboard's data. When none are set,
    /// the dashboard answers loopback clients only — unless `api.tokens` are set, then nobody
    /// (a service with credentials is not opened by a default).
    pub dashboard_tokens: ApiTokens,
}

impl ServiceOptions {
    pub fn new(keystore: KeyStore) -> Self {
        ServiceOptions {
            limits: Limits::default(),
            keystore,
            keepalive_interval: Duration::from_secs(20),
            no_rules_wait: Duration::from_secs(5),
            checkpoint_interval: Duration::from_millis(10),
            api_tokens: ApiTokens::default(),
            dashboard_tokens: ApiTokens::default(),
        }
    }
}

/// Everything the routes share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
    pub(crate) shutdown: CancellationToken,
    /// Behind the admin API (none: it answers 404).
    pub(crate) rules_admin: Option<Arc<dyn RulesAdmin>>,
    /// Behind the admin API v1 (none: it answers 404).
    pub(crate) instance_admin: Option<Arc<dyn InstanceAdmin>>,
    /// The processes of the storage, for the dashboard (none: not shown).
    pub(crate) cluster: Option<Arc<dyn crate::ClusterView>>,
}

pub(crate) struct Inner {
    pub storage: Arc<dyn BucketStorage>,
    pub rules: watch::Receiver<Option<ActiveRules>>,
    pub events: broadcast::Sender<CheckpointEvent>,
    pub source: Arc<dyn SourceDatabase>,
    pub options: ServiceOptions,
    pub connections: Arc<Semaphore>,
    pub(crate) user_slots: Arc<UserSlots>,
    pub write_checkpoints: WriteCheckpointNotifier,
    pub metrics: Arc<ServiceMetrics>,
    /// Which sessions a checkpoint event wakes.
    pub wake: Arc<WakeIndex>,
}

impl AppState {
    pub fn new(
        options: ServiceOptions,
        storage: Arc<dyn BucketStorage>,
        rules: watch::Receiver<Option<ActiveRules>>,
        events: broadcast::Sender<CheckpointEvent>,
        source: Arc<dyn SourceDatabase>,
    ) -> AppState {
        let metrics = Arc::new(ServiceMetrics::new());
        options.keystore.attach_metrics(metrics.clone());
        let permits = options
            .limits
            .max_concurrent_connections
            .min(Semaphore::MAX_PERMITS);
        AppState {
            inner: Arc::new(Inner {
                storage,
                rules,
                events,
                source,
                connections: Arc::new(Semaphore::new(permits)),
                user_slots: Arc::new(UserSlots::new(options.limits.max_connections_per_user)),
                options,
                write_checkpoints: WriteCheckpointNotifier::default(),
                metrics,
                wake: Arc::new(WakeIndex::default()),
            }),
            shutdown: CancellationToken::new(),
            rules_admin: None,
            instance_admin: None,
            cluster: None,
        }
    }

    pub fn keystore(&self) -> &KeyStore {
        &self.inner.options.keystore
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.options.limits
    }

    /// A sync stream's slots for `user` (`PSYNC_S2304` when the process or the user is at
    /// its cap).
    pub(crate) fn take_stream_slot(&self, user: &str) -> Result<StreamSlot, ApiError> {
        take_stream_slot(
            &self.inner.connections,
            &self.inner.user_slots,
            &self.inner.metrics,
            user,
        )
    }

    /// The active rules now, if any.
    pub fn active_rules(&self) -> Option<ActiveRules> {
        self.inner.rules.borrow().clone()
    }

    /// The service's metrics (also where `riptide serve` attaches replication progress).
    pub fn metrics(&self) -> &Arc<ServiceMetrics> {
        &self.inner.metrics
    }

    /// Sync streams open now.
    pub fn open_streams(&self) -> usize {
        self.inner
            .options
            .limits
            .max_concurrent_connections
            .min(Semaphore::MAX_PERMITS)
            .saturating_sub(self.inner.connections.available_permits())
    }

    /// Serves the sync-rules admin API with `admin` (see [`crate::rules_admin`]).
    pub fn with_rules_admin(mut self, admin: Arc<dyn RulesAdmin>) -> AppState {
        self.rules_admin = Some(admin);
        self
    }

    /// Serves the admin API v1 with `admin` (see [`crate::instance_admin`]).
    pub fn with_instance_admin(mut self, admin: Arc<dyn InstanceAdmin>) -> AppState {
        self.instance_admin = Some(admin);
        self
    }

    /// Lists the processes of the storage on the dashboard (see [`crate::cluster_view`]).
    pub fn with_cluster_view(mut self, view: Arc<dyn crate::ClusterView>) -> AppState {
        self.cluster = Some(view);
        self
    }

    /// Ends running sync streams when `token` is cancelled (also done by [`crate::serve`]).
    pub fn with_shutdown(mut self, token: CancellationToken) -> AppState {
        self.shutdown = token;
        self
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}
