//! The `riptide serve` processes sharing this process's storage, as the dashboard lists them.
//! `riptide serve` attaches a [`ClusterView`] reading its storage's node rows; without one the
//! dashboard shows no nodes.

use async_trait::async_trait;
use riptide_storage::StorageError;
use serde::Serialize;

/// One process of the storage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterNode {
    pub id: String,
    /// `all`, `replicator` or `api`.
    pub role: String,
    /// `host:port` of its HTTP service.
    pub address: String,
    /// `leader` (holds the replication lease), `standby`, `api`, or `gone` (its heartbeat is
    /// older than the lease duration).
    pub state: &'static str,
    /// Seconds since its last heartbeat (database clock).
    pub heartbeat_age_seconds: f64,
    /// It is the process answering.
    pub this_process: bool,
}

/// Lists the processes of the storage.
#[async_trait]
pub trait ClusterView: Send + Sync + 'static {
    async fn nodes(&self) -> Result<Vec<ClusterNode>, StorageError>;
}
