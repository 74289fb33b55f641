//! What `riptide status --config FILE` shows: the nodes registered in the config's storage
//! (gone when their heartbeat is older than the lease duration) and the replication lease.

use riptide_storage::{LeaseRecord, NodeRecord, StorageError};

use super::REPLICATION_LEASE;
use crate::config::ServeConfig;
use crate::serve::{ServeError, connect_pg_storage};

/// The nodes and the lease of a storage.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    pub nodes: Vec<NodeState>,
    pub lease: Option<LeaseRecord>,
    /// The lease duration of the config: a heartbeat older than this is stale.
    pub expiry: std::time::Duration,
}

/// One node and whether it is still there.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub record: NodeRecord,
    /// Its heartbeat is older than the lease duration: stopped without deregistering, or
    /// paused.
    pub gone: bool,
    /// It holds the replication lease now (its epoch is the lease's, the lease is live).
    pub holder: bool,
}

/// Reads the nodes and the lease of `config`'s storage.
pub async fn cluster_status(config: &ServeConfig) -> Result<ClusterStatus, ServeError> {
    let (storage, _) = connect_pg_storage(config).await?;
    let read = |e: StorageError| ServeError::StorageConnect(e);
    let lease = storage.lease(REPLICATION_LEASE).await.map_err(read)?;
    let expiry = config.lease.duration;
    let live_lease = lease
        .as_ref()
        .filter(|l| l.heartbeat_age <= expiry.as_secs_f64());
    let nodes = storage
        .nodes()
        .await
        .map_err(read)?
        .into_iter()
        .map(|record| NodeState {
            gone: record.is_gone(expiry),
            holder: live_lease.is_some_and(|l| l.holder == record.id),
            record,
        })
        .collect();
    Ok(ClusterStatus {
        nodes,
        lease,
        expiry,
    })
}
