//! Roles of a `riptide serve` process and the replication lease between them.
//!
//! A process is `all` (the default), `replicator` or `api` (`--role`). Every process serves
//! HTTP (streams, write checkpoints, admin reads) from the shared storage. Processes of role
//! `all` and `replicator` compete for **one lease per storage database**, named
//! [`REPLICATION_LEASE`] (a storage belongs to one source database, so this is one lease per
//! source): the holder runs everything that writes — every sync-rules deployment's
//! replication, their snapshots, activations and retirements, the orphan-slot clean-up and the
//! background compactor — through a storage *fenced* at its lease epoch
//! (`riptide_storage::PgStorage::fenced`); the others are standbys. An `api` process never
//! writes deployments or ops.
//!
//! - `lease.rs`: the keeper — standby polling, taking the lease, renewing it, stepping down
//!   (lease lost, storage unreachable for a lease duration, or a write refused by fencing);
//! - `follow.rs`: a process that does not hold the lease follows the active deployment in
//!   storage, so its streams get the rules the holder activates;
//! - `nodes.rs`: the process's row in `riptide.nodes` (role, address, lease held) and its
//!   heartbeat; `status.rs`: the nodes and the lease as `riptide status --config` shows them.

pub(crate) mod follow;
mod lease;
mod nodes;
mod status;

use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use riptide_replication::ReplicationStatus;

use crate::deployments::Deployments;

pub use follow::{follow_active, follow_hook};
pub use lease::{Leadership, LeaseKeeper};
pub use nodes::{NodeRegistration, node_id};
pub use status::{ClusterStatus, NodeState, StorageNodes, cluster_status};

/// The name of the one replication lease of a storage database (`riptide.leases`).
pub const REPLICATION_LEASE: &str = "replication";

/// What a `riptide serve` process does (`--role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Replicator (when it holds the lease) and API.
    #[default]
    All,
    /// Competes for the lease; serves HTTP too (probes, metrics, admin reads), but is meant to
    /// run beside API nodes.
    Replicator,
    /// Serves streams and write checkpoints from storage; never replicates.
    Api,
}

impl Role {
    /// Whether this role competes for the replication lease.
    pub fn replicates(self) -> bool {
        !matches!(self, Role::Api)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Replicator => "replicator",
            Role::Api => "api",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `--role` that is none of `all`, `replicator`, `api`.
#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?}: expected all, replicator or api")]
pub struct UnknownRole(String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        match s {
            "all" => Ok(Role::All),
            "replicator" => Ok(Role::Replicator),
            "api" => Ok(Role::Api),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// The replication lease's timing (config section `cluster`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long a lease lasts without a heartbeat (database clock): a standby takes it over
    /// this long after the holder's last renewal. Default 10 s. Also how long a holder that
    /// cannot reach storage keeps replicating before it steps down.
    pub duration: Duration,
    /// How often the holder renews and a standby tries to take the lease. Default 2 s; at most
    /// half the duration.
    pub renew: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            duration: Duration::from_secs(10),
            renew: Duration::from_secs(2),
        }
    }
}

/// What this process is doing now: shared by the lease keeper, the admin API hooks, the
/// metrics and the node heartbeat.
pub struct Node {
    pub id: String,
    pub role: Role,
    /// The deployments this process replicates, while it holds the lease.
    leading: StdMutex<Option<Arc<Deployments>>>,
    /// The lease epoch held (0: none).
    epoch: AtomicI64,
    /// Times this process took the lease.
    takeovers: AtomicU64,
    /// Times it lost the lease to another process while holding it.
    losses: AtomicU64,
    /// Shown while no deployment replicates here.
    idle_status: Arc<ReplicationStatus>,
}

/// A copy of [`Node`]'s lease counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseState {
    pub holder: bool,
    pub epoch: Option<i64>,
    pub takeovers: u64,
    pub losses: u64,
}

impl Node {
    pub fn new(id: String, role: Role) -> Node {
        Node {
            id,
            role,
            leading: StdMutex::new(None),
            epoch: AtomicI64::new(0),
            takeovers: AtomicU64::new(0),
            losses: AtomicU64::new(0),
            idle_status: Arc::new(ReplicationStatus::default()),
        }
    }

    /// The deployments replicating here, when this process holds the lease.
    pub fn deployments(&self) -> Option<Arc<Deployments>> {
        match self.leading.lock() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The replicator's counters (idle ones while this process does not hold the lease).
    pub fn status(&self) -> Arc<ReplicationStatus> {
        self.deployments()
            .map(|d| d.status())
            .unwrap_or_else(|| self.idle_status.clone())
    }

    /// The lease held, takeovers and losses.
    pub fn lease(&self) -> LeaseState {
        let epoch = self.epoch.load(Ordering::Acquire);
        LeaseState {
            holder: epoch > 0,
            epoch: (epoch > 0).then_some(epoch),
            takeovers: self.takeovers.load(Ordering::Relaxed),
            losses: self.losses.load(Ordering::Relaxed),
        }
    }

    fn set_leading(&self, leading: Option<(Arc<Deployments>, i64)>) {
        let epoch = leading.as_ref().map_or(0, |(_, e)| *e);
        let deployments = leading.map(|(d, _)| d);
        match self.leading.lock() {
            Ok(mut l) => *l = deployments,
            Err(poisoned) => *poisoned.into_inner() = deployments,
        }
        self.epoch.store(epoch, Ordering::Release);
    }
}
