//! Sync-rules deployments of `riptide serve`, without downtime.
//!
//! At most two deployments run: the *serving* one (its rules are the service's
//! [`ActiveRules`]) and the *next* one, replicating its snapshot on its own slot in the
//! background. When the next one's replicator activates it (`storage.activate`, which marks the
//! serving one `Stop` atomically), the service's rules switch to it (open streams move at their
//! next checkpoint, dropping the old buckets and downloading the new), and the old deployment's
//! replicator is stopped, its slot dropped and its storage terminated. A deploy while another is
//! still processing replaces that one.
//!
//! Every deployment's bucket names carry its id (`<id>#definition[…]`), so the buckets of two
//! deployments are never confused: op ids of deployments replicating side by side interleave.
//!
//! - `startup`: what runs when the process starts (stored deployments against the config's rules);
//! - `lifecycle`: one deployment's replicator (restarts, health, a lost slot replaced by a new
//!   snapshot of the same rules), its activation, the switch and retirement;
//! - `orphans`: slots replaced deployments left behind, dropped at start and after switches;
//! - `admin`: deploys, validation and the current state for the admin API ([`Admin`]);
//! - `reprocess`: the serving rules again on a new slot (admin API v1).
//!
//! Only the process holding the replication lease runs these (`crate::roles`); the others
//! follow the active deployment it activates (`roles/follow.rs`).

mod admin;
mod lifecycle;
mod orphans;
mod reprocess;
mod startup;

use std::sync::{Arc, Mutex as StdMutex};

use riptide_replication::{ReplicationError, ReplicationSource, ReplicationStatus, Replicator};
use riptide_rules::{RulesErrors, SyncRules};
use riptide_service::ActiveRules;
use riptide_storage::{BucketStorage, CheckpointEvent, Deployment, StorageError};
use tokio::sync::{Mutex, broadcast, watch};
use tokio_util::sync::CancellationToken;

pub(crate) use admin::NOT_THE_HOLDER;
pub use admin::{Admin, validate};
pub use startup::unreachable;

/// One deployment being replicated.
struct Running {
    deployment: Deployment,
    rules: Arc<SyncRules>,
    replicator: Arc<Replicator>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Slots {
    serving: Option<Running>,
    next: Option<Running>,
}

/// What the deployments need from `riptide serve`.
#[derive(Clone)]
pub struct DeploymentOptions {
    /// The source database (also where rules are validated against its schema), the
    /// publication and the slot prefix.
    pub replicator: ReplicationSource,
    /// `sync_config` of the config file; `None`: rules come from the admin API.
    pub config_rules: Option<String>,
    /// For a lease holder (`crate::roles`): fired when storage refused a write because another
    /// process took the lease over (the replicator then stops, never retrying the write). Its
    /// replicators also end a previous holder's session on their slots before streaming.
    pub lease_lost: Option<CancellationToken>,
}

/// Why the deployments could not start.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    InvalidRules(#[from] RulesErrors),
    #[error("the source database is not ready for replication")]
    SourceNotReady(#[source] ReplicationError),
}

/// The deployments of this process. Cheap to share (`Arc`).
pub struct Deployments {
    storage: Arc<dyn BucketStorage>,
    options: DeploymentOptions,
    events: broadcast::Sender<CheckpointEvent>,
    /// Feeds the service; kept alive as long as this (a closed channel ends every stream).
    rules_tx: watch::Sender<Option<ActiveRules>>,
    cancel: CancellationToken,
    /// Held across a whole deploy or switch, so they never interleave.
    slots: Mutex<Slots>,
    /// Counters of the serving deployment's replicator (or the next one's before any serves).
    status: StdMutex<Arc<ReplicationStatus>>,
}

/// The bucket-prefixed rules of a stored deployment.
pub fn deployment_rules(d: &Deployment) -> Result<Arc<SyncRules>, RulesErrors> {
    Ok(Arc::new(
        SyncRules::parse(&d.content)?.with_bucket_prefix(format!("{}#", d.id)),
    ))
}

impl Deployments {
    /// The storage this writes through (fenced at the lease epoch it was started under).
    pub fn storage(&self) -> Arc<dyn BucketStorage> {
        self.storage.clone()
    }

    /// A replicator with this process's options (one per deployment: its own counters).
    fn replicator(&self) -> Replicator {
        let replicator = Replicator::new(
            self.options.replicator.clone(),
            self.storage.clone(),
            self.events.clone(),
        );
        if self.options.lease_lost.is_some() {
            replicator.taking_over_slots()
        } else {
            replicator
        }
    }

    /// The counters `/metrics` and the dashboard show.
    pub fn status(&self) -> Arc<ReplicationStatus> {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_status(&self, running: &Running) {
        let status = running.replicator.status();
        match self.status.lock() {
            Ok(mut s) => *s = status,
            Err(poisoned) => *poisoned.into_inner() = status,
        }
    }
}
