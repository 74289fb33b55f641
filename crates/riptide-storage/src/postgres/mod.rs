//! Postgres [`BucketStorage`]: schema `riptide` (see `docs/storage.md`), a deadpool connection
//! pool, prepared statements cached per connection, binary `COPY` for bulk writes.
//!
//! Modules follow the tables: [`deployments`], [`batch`] (the replicator's write path),
//! [`reads`] (what sync streams read), [`compact`] (MOVE/CLEAR compaction),
//! [`write_checkpoints`], [`listener`] (other processes' commits, `LISTEN`), plus
//! [`migrations`] and [`schema`].

mod batch;
mod compact;
mod deployments;
mod lease;
mod listener;
mod migrations;
mod reads;
mod schema;
mod write_checkpoints;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use postgres_types::PgLsn;
use riptide_pg::PgConnection;
use riptide_protocol::{Checksum, Lsn, OpId};

use crate::{
    BucketChunk, BucketState, BucketStorage, CompactLimits, CompactStats, CompactionCandidate,
    Deployment, DeploymentId, Result, StorageBatch, StorageCheckpoint, StorageError,
};

pub use lease::{Fence, LeaseRecord, NodeRecord};
pub use listener::{CheckpointListener, LISTENER_APPLICATION_NAME};
pub use migrations::SUPPORTED_VERSION as SCHEMA_VERSION;

/// Default maximum number of pooled connections.
const DEFAULT_POOL_SIZE: usize = 16;

/// Postgres [`crate::BucketStorage`].
#[derive(Clone)]
pub struct PgStorage {
    pool: Pool,
    chunk_rows: usize,
    /// The lease every write transaction checks before it commits (`lease.rs`).
    fence: Option<Fence>,
    /// This process's name in the notifications it sends (see [`PgStorage::node_id`]).
    node: Arc<str>,
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PgStorage")
            .field("pool_size", &status.size)
            .field("pool_max_size", &status.max_size)
            .field("fence", &self.fence)
            .finish()
    }
}

impl PgStorage {
    /// Connects to the storage database at `uri` (`postgres://…`, TLS parameters included, or
    /// key=value form): checks that one connection opens, then keeps a pool of up to 16.
    /// Does not migrate: call [`BucketStorage::migrate`].
    pub async fn connect(uri: &str) -> Result<PgStorage> {
        let connection = PgConnection::from_uri(uri).map_err(StorageError::InvalidUri)?;
        Self::connect_with(&connection).await
    }

    /// Like [`PgStorage::connect`], for a connection already built (from config keys). A
    /// failure to connect names its cause (TLS, pg_hba.conf, password).
    pub async fn connect_with(connection: &PgConnection) -> Result<PgStorage> {
        let connection = connection
            .clone()
            .with_default_application_name("riptide-storage");
        drop(connection.connect().await.map_err(StorageError::Connect)?);
        Self::from_connection(&connection, DEFAULT_POOL_SIZE)
    }

    /// A storage on a pool of up to `max_size` connections to `connection`. Opens no
    /// connection yet.
    pub fn from_connection(connection: &PgConnection, max_size: usize) -> Result<PgStorage> {
        let connection = connection
            .clone()
            .with_default_application_name("riptide-storage");
        let pool = connection.pool(max_size).map_err(StorageError::Connect)?;
        Ok(PgStorage::from_pool(pool))
    }

    /// A storage on an existing pool.
    pub fn from_pool(pool: Pool) -> PgStorage {
        PgStorage {
            pool,
            chunk_rows: batch::CHUNK_ROWS,
            fence: None,
            node: Arc::from(uuid::Uuid::new_v4().to_string()),
        }
    }

    /// The node id this storage writes into its notifications (`notifications.rs`): a new
    /// UUID per storage made (clones share it), so a [`crate::CheckpointListener`] of the
    /// same process skips what the process already announced in process.
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Names the node explicitly (tests; a stable name in logs).
    pub fn with_node_id(mut self, node: &str) -> PgStorage {
        self.node = Arc::from(node);
        self
    }

    /// Buckets of deployment `id` whose last op is newer than `after`: a superset of the
    /// buckets changed by the commits after that op id (later commits' buckets included).
    /// Scans the deployment's `bucket_state` rows (one per bucket), so it serves the rare
    /// notification whose bucket list did not fit, and a listener's catch-up.
    pub async fn changed_buckets_since(
        &self,
        id: DeploymentId,
        after: OpId,
    ) -> Result<Vec<String>> {
        reads::changed_buckets_since(&self.pool, id, after).await
    }

    /// The same storage (same pool) whose every write transaction checks, before it commits,
    /// that `fence.lease` still has epoch `fence.epoch`, and fails with
    /// [`StorageError::LeaseLost`] otherwise (`lease.rs`). Reads are not fenced, nor are write
    /// checkpoints (API nodes write those).
    pub fn fenced(&self, fence: Fence) -> PgStorage {
        PgStorage {
            fence: Some(fence),
            ..self.clone()
        }
    }

    /// The fence of this storage, if any.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    /// Takes lease `name` for `holder` when it is free or its heartbeat is older than
    /// `duration` (database clock); returns the new epoch, `None` when another holds it.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        duration: std::time::Duration,
    ) -> Result<Option<i64>> {
        lease::acquire(&self.pool, name, holder, duration).await
    }

    /// Takes lease `name` for `holder` without waiting for it to expire, if it still has
    /// `epoch`: for a holder known to be gone (a process of this machine that no longer
    /// exists). Returns the new epoch.
    pub async fn take_lease_from(
        &self,
        name: &str,
        holder: &str,
        epoch: i64,
    ) -> Result<Option<i64>> {
        lease::take_from(&self.pool, name, holder, epoch).await
    }

    /// Renews the heartbeat of the lease `holder` holds at `fence`; false: it was taken over.
    pub async fn renew_lease(&self, fence: &Fence, holder: &str) -> Result<bool> {
        lease::renew(&self.pool, fence, holder).await
    }

    /// Gives a held lease up so that a standby takes it at once; false: not held any more.
    pub async fn release_lease(&self, fence: &Fence, holder: &str) -> Result<bool> {
        lease::release(&self.pool, fence, holder).await
    }

    /// Lease `name` as stored (holder, epoch, heartbeat age), if ever taken.
    pub async fn lease(&self, name: &str) -> Result<Option<LeaseRecord>> {
        lease::get(&self.pool, name).await
    }

    /// Registers (or re-registers) a node of this storage.
    pub async fn register_node(&self, id: &str, role: &str, address: &str) -> Result<()> {
        lease::register_node(&self.pool, id, role, address).await
    }

    /// Refreshes a node's heartbeat and the lease epoch it holds; false: its row is gone.
    pub async fn node_heartbeat(&self, id: &str, lease_epoch: Option<i64>) -> Result<bool> {
        lease::node_heartbeat(&self.pool, id, lease_epoch).await
    }

    /// Removes a node's row (clean shutdown).
    pub async fn deregister_node(&self, id: &str) -> Result<()> {
        lease::deregister_node(&self.pool, id).await
    }

    /// Every registered node with its heartbeat age (see [`NodeRecord::is_gone`]).
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        lease::nodes(&self.pool).await
    }

    /// Sets how many queued rows a [`StorageBatch`] processes and flushes at a time (default
    /// 5,000; also flushed every ~8 MB). Smaller bounds memory tighter; tests use tiny values
    /// to exercise chunk boundaries.
    pub fn with_batch_chunk_rows(mut self, rows: usize) -> PgStorage {
        self.chunk_rows = rows.max(1);
        self
    }

    /// The connection pool (e.g. for health checks).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// Channel on which every replication commit, write checkpoint and deployment change sends a
/// notification (`pg_notify`, payloads in `notifications.rs`), so API nodes learn of them with
/// `LISTEN riptide_checkpoint` ([`crate::CheckpointListener`]).
pub const CHECKPOINT_CHANNEL: &str = "riptide_checkpoint";

pub(crate) fn to_pg_lsn(lsn: Lsn) -> PgLsn {
    PgLsn::from(lsn.0)
}

pub(crate) fn from_pg_lsn(lsn: PgLsn) -> Lsn {
    Lsn(u64::from(lsn))
}

pub(crate) fn checksum_from_db(v: i64) -> Result<Checksum> {
    u32::try_from(v)
        .map(Checksum::from_u32)
        .map_err(|_| StorageError::Corrupt(format!("checksum {v} out of u32 range")))
}

#[async_trait]
impl BucketStorage for PgStorage {
    async fn migrate(&self) -> Result<()> {
        let mut client = self.pool.get().await?;
        migrations::migrate(&mut client).await
    }

    async fn active_deployment(&self) -> Result<Option<Deployment>> {
        deployments::active(&self.pool).await
    }

    async fn processing_deployment(&self) -> Result<Option<Deployment>> {
        deployments::processing(&self.pool).await
    }

    async fn deployment(&self, id: DeploymentId) -> Result<Deployment> {
        deployments::get(&self.pool, id).await
    }

    async fn create_deployment(&self, content: &str, slot_prefix: &str) -> Result<Deployment> {
        deployments::create(&self.pool, self.fence.as_ref(), content, slot_prefix).await
    }

    async fn activate(&self, id: DeploymentId) -> Result<()> {
        deployments::activate(&self.pool, self.fence.as_ref(), &self.node, id).await
    }

    async fn terminate(&self, id: DeploymentId) -> Result<()> {
        deployments::terminate(&self.pool, self.fence.as_ref(), &self.node, id).await
    }

    async fn reset_snapshot(&self, id: DeploymentId) -> Result<()> {
        deployments::reset_snapshot(&self.pool, self.fence.as_ref(), id).await
    }

    async fn mark_snapshot_done(&self, id: DeploymentId) -> Result<()> {
        deployments::mark_snapshot_done(&self.pool, self.fence.as_ref(), id).await
    }

    async fn complete_snapshot(&self, id: DeploymentId) -> Result<()> {
        deployments::complete_snapshot(&self.pool, self.fence.as_ref(), &self.node, id).await
    }

    async fn begin_batch(&self, id: DeploymentId) -> Result<Box<dyn StorageBatch>> {
        Ok(Box::new(
            batch::PgBatch::begin(
                &self.pool,
                id,
                self.chunk_rows,
                self.fence.clone(),
                self.node.clone(),
            )
            .await?,
        ))
    }

    async fn current_rows(
        &self,
        id: DeploymentId,
        source_table: &str,
        keys: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Vec<u8>>> {
        reads::current_rows(&self.pool, id, source_table, keys).await
    }

    async fn checkpoint(&self, id: DeploymentId) -> Result<Option<StorageCheckpoint>> {
        Ok(deployments::get(&self.pool, id).await?.checkpoint)
    }

    async fn parameter_results(
        &self,
        id: DeploymentId,
        lookups: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Vec<Vec<u8>>>> {
        reads::parameter_results(&self.pool, id, lookups).await
    }

    async fn bucket_states(
        &self,
        id: DeploymentId,
        checkpoint: OpId,
        buckets: &[String],
    ) -> Result<HashMap<String, BucketState>> {
        reads::bucket_states(&self.pool, id, checkpoint, buckets).await
    }

    async fn bucket_data(
        &self,
        id: DeploymentId,
        checkpoint: OpId,
        buckets: &[(String, OpId)],
        limit: usize,
    ) -> Result<Vec<BucketChunk>> {
        let limit = crate::PageLimit {
            ops: limit,
            bytes: usize::MAX,
        };
        reads::bucket_data(&self.pool, id, checkpoint, buckets, limit).await
    }

    async fn bucket_data_page(
        &self,
        id: DeploymentId,
        checkpoint: OpId,
        buckets: &[(String, OpId)],
        limit: crate::PageLimit,
    ) -> Result<Vec<BucketChunk>> {
        reads::bucket_data(&self.pool, id, checkpoint, buckets, limit).await
    }

    async fn compaction_candidates(
        &self,
        id: DeploymentId,
        min_superseded: i64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CompactionCandidate>> {
        compact::candidates(&self.pool, id, min_superseded, after, limit).await
    }

    async fn compact_bucket(
        &self,
        id: DeploymentId,
        bucket: &str,
        limits: &CompactLimits,
    ) -> Result<CompactStats> {
        compact::compact_bucket(&self.pool, self.fence.as_ref(), id, bucket, limits).await
    }

    async fn compaction_points(
        &self,
        id: DeploymentId,
        buckets: &[String],
    ) -> Result<HashMap<String, OpId>> {
        compact::points(&self.pool, id, buckets).await
    }

    async fn create_write_checkpoint(
        &self,
        user_id: &str,
        client_id: &str,
        lsn: Lsn,
    ) -> Result<OpId> {
        write_checkpoints::create(&self.pool, &self.node, user_id, client_id, lsn).await
    }

    async fn request_checkpoint(
        &self,
        user_id: &str,
        client_id: &str,
        requested: OpId,
        lsn: Lsn,
    ) -> Result<OpId> {
        write_checkpoints::request(&self.pool, &self.node, user_id, client_id, requested, lsn).await
    }

    async fn prune_write_checkpoints(
        &self,
        user_id: &str,
        keep: usize,
        max_age: std::time::Duration,
    ) -> Result<u64> {
        write_checkpoints::prune(&self.pool, user_id, keep, max_age).await
    }

    async fn write_checkpoint(
        &self,
        user_id: &str,
        client_id: &str,
        lsn: Lsn,
    ) -> Result<Option<OpId>> {
        write_checkpoints::select(&self.pool, user_id, client_id, lsn).await
    }
}
