//! What `riptide status --config FILE` shows: the nodes registered in the config's storage
//! (gone when their heartbeat is older than the lease duration) and the replication lease; the
//! same list for the dashboard ([`StorageNodes`]).

use std::time::Duration;

use async_trait::async_trait;
use riptide_service::{ClusterNode, ClusterView};
use riptide_storage::{LeaseRecord, NodeRecord, PgStorage, StorageError};

use super::REPLICATION_LEASE;
use crate::config::ServeConfig;
use crate::serve::{ServeError, connect_pg_storage};

/// The nodes and the lease of a storage.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    pub nodes: Vec<NodeState>,
    pub lease: Option<LeaseRecord>,
    /// The lease duration of the config: a heartbeat older than this is stale.
    pub expiry: Duration,
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
    read(&storage, config.lease.duration)
        .await
        .map_err(ServeError::StorageConnect)
}

async fn read(storage: &PgStorage, expiry: Duration) -> Result<ClusterStatus, StorageError> {
    let lease = storage.lease(REPLICATION_LEASE).await?;
    let live_lease = lease
        .as_ref()
        .filter(|l| l.heartbeat_age <= expiry.as_secs_f64());
    let nodes = storage
        .nodes()
        .await?
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

impl NodeState {
    /// `leader`, `standby`, `api` or `gone`.
    pub fn state(&self) -> &'static str {
        if self.gone {
            "gone"
        } else if self.holder {
            "leader"
        } else if self.record.role == "api" {
            "api"
        } else {
            "standby"
        }
    }
}

/// The dashboard's list of the nodes (`riptide_service::ClusterView`) from this storage.
pub struct StorageNodes {
    pub storage: PgStorage,
    /// This process's node id.
    pub node: String,
    /// The lease duration: a heartbeat older than this is a gone node.
    pub expiry: Duration,
}

#[async_trait]
impl ClusterView for StorageNodes {
    async fn nodes(&self) -> Result<Vec<ClusterNode>, StorageError> {
        let status = read(&self.storage, self.expiry).await?;
        Ok(status
            .nodes
            .iter()
            .map(|n| ClusterNode {
                id: n.record.id.clone(),
                role: n.record.role.clone(),
                address: n.record.address.clone(),
                state: n.state(),
                heartbeat_age_seconds: n.record.heartbeat_age,
                this_process: n.record.id == self.node,
            })
            .collect())
    }
}
