use std::collections::HashMap;

use async_trait::async_trait;
use riptide_protocol::{Checksum, Lsn, OpId, OplogEntry};

use crate::compaction::{CompactLimits, CompactStats, CompactionCandidate};

/// Id of a sync-rules deployment. Each deployment has its own op-id sequence, replication slot
/// and bucket data ("group" in the official service's storage).
pub type DeploymentId = i64;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage database error")]
    Database(#[from] tokio_postgres::Error),
    #[error("storage connection pool error")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("could not create the storage connection pool")]
    CreatePool(#[from] deadpool_postgres::CreatePoolError),
    #[error("invalid storage connection string")]
    InvalidUri(#[source] riptide_pg::PgError),
    #[error("cannot connect to the storage database")]
    Connect(#[source] riptide_pg::PgError),
    #[error("sync rules deployment {0} does not exist")]
    UnknownDeployment(DeploymentId),
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    #[error("storage schema is version {found}, newer than this binary understands ({supported})")]
    SchemaTooNew { found: i32, supported: i32 },
    #[error("sync rules deployment {id} is {state:?}, which does not allow this")]
    InvalidState {
        id: DeploymentId,
        state: DeploymentState,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An earlier write of this batch failed; the batch can only be dropped.
    #[error("the storage batch failed earlier and was rolled back")]
    BatchFailed,
    /// A fenced write found that lease `lease` is no longer at `epoch`: another node took it
    /// over. The transaction was rolled back; the writer must stop, not retry.
    #[error(
        "the replication lease {lease} was taken over (this node held epoch {epoch}); nothing was written"
    )]
    LeaseLost { lease: String, epoch: i64 },
    /// A failpoint of the fault-injection tests fired (feature `failpoints` only).
    #[error("failpoint {0} fired")]
    Failpoint(&'static str),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Lifecycle of a sync-rules deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeploymentState {
    /// Replicating its initial snapshot; not serving yet.
    Processing,
    /// Serving clients (at most one at a time).
    Active,
    /// Replaced; its slot and data are being removed.
    Stop,
    /// Removed.
    Terminated,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Processing => "PROCESSING",
            DeploymentState::Active => "ACTIVE",
            DeploymentState::Stop => "STOP",
            DeploymentState::Terminated => "TERMINATED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PROCESSING" => DeploymentState::Processing,
            "ACTIVE" => DeploymentState::Active,
            "STOP" => DeploymentState::Stop,
            "TERMINATED" => DeploymentState::Terminated,
            _ => return None,
        })
    }
}

/// A sync-rules deployment as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub id: DeploymentId,
    /// The sync rules YAML exactly as deployed.
    pub content: String,
    pub state: DeploymentState,
    /// Name of this deployment's logical replication slot.
    pub slot_name: String,
    /// Set once the initial snapshot is complete and its checkpoint committed.
    pub snapshot_done: bool,
    /// The latest committed checkpoint (`None` until the snapshot completes).
    pub checkpoint: Option<StorageCheckpoint>,
    /// The LSN up to which replication has been durably applied; streaming resumes here.
    pub resume_lsn: Option<Lsn>,
}

/// A committed checkpoint: every op with `op_id <= op_id` is part of it, and it reflects the
/// source database up to `lsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorageCheckpoint {
    pub op_id: OpId,
    pub lsn: Lsn,
}

/// What one source row now produces in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketRow {
    /// Bucket name, e.g. `user_lists["u1"]`.
    pub bucket: String,
    /// Output table name (`object_type`).
    pub table: String,
    /// Output row id (`object_id`).
    pub id: String,
    /// Output row as a JSON object text (the op's `data`).
    pub data: String,
}

/// A parameter-lookup entry one source row now produces: under the lookup key `lookup`
/// (opaque bytes made by the rules crate), the result row `result` (opaque bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParameterRow {
    pub lookup: Vec<u8>,
    pub result: Vec<u8>,
}

/// The new state of one source row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowChange {
    /// The row exists with this full state (`row`: opaque encoded row, kept as current data so
    /// unchanged TOAST columns can be filled later), producing these bucket rows and lookups.
    Upsert {
        row: Vec<u8>,
        buckets: Vec<BucketRow>,
        parameters: Vec<ParameterRow>,
    },
    /// The row no longer exists.
    Delete,
}

/// One change to one source row, identified by its table and replica-identity key.
#[derive(Debug, Clone, PartialEq)]
pub struct RowOperation {
    /// Source table as `schema.name`.
    pub source_table: String,
    /// Replica-identity key of the row (opaque, stable bytes made by the replicator).
    pub key: Vec<u8>,
    pub change: RowChange,
}

/// Something written in one source transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchOperation {
    Row(RowOperation),
    /// Every row of this source table leaves its buckets and lookups.
    Truncate {
        source_table: String,
    },
}

/// Most ops a commit carries in [`CheckpointEvent::ops`]; a larger commit carries none and
/// stream sessions read its ops from storage.
pub const EVENT_OPS_MAX: usize = 256;

/// What a commit changed, announced on the checkpoint bus to wake stream sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointEvent {
    pub deployment: DeploymentId,
    pub checkpoint: StorageCheckpoint,
    /// The deployment's checkpoint op id before this commit: the commit wrote exactly the ops
    /// with `previous < op_id <= checkpoint.op_id`. A stream that has followed every event up
    /// to `previous` knows, with this one, every op up to `checkpoint`.
    pub previous: OpId,
    /// Buckets that received ops in this commit.
    pub changed_buckets: Vec<String>,
    /// Parameter-lookup keys whose results changed in this commit.
    pub changed_lookups: Vec<Vec<u8>>,
    /// The changed lookups are not known, any may have changed: an event from another node
    /// whose list did not fit its notification, or one covering the commits a listener
    /// missed while reconnecting (`notifications.rs`). Always `false` in process.
    pub all_lookups_changed: bool,
    /// Every op of the commit, when it wrote at most [`EVENT_OPS_MAX`] (`None`: more, or not
    /// known, e.g. an event from another node). Shared by every session of the process, which
    /// then serve the new ops and checksums from memory instead of reading storage.
    pub ops: Option<std::sync::Arc<CommitOps>>,
}

/// The ops of one small commit, per bucket.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommitOps {
    /// Bucket → its ops of the commit in op-id order. Every bucket of
    /// [`CheckpointEvent::changed_buckets`] is here.
    pub buckets: HashMap<String, Vec<OplogEntry>>,
}

impl CommitOps {
    /// Collects `(bucket, op)` pairs in op-id order; `None` when there are more than
    /// [`EVENT_OPS_MAX`].
    pub fn collect<I>(ops: I) -> Option<CommitOps>
    where
        I: IntoIterator<Item = (String, OplogEntry)>,
    {
        let mut out = CommitOps::default();
        for (n, (bucket, op)) in ops.into_iter().enumerate() {
            if n >= EVENT_OPS_MAX {
                return None;
            }
            out.buckets.entry(bucket).or_default().push(op);
        }
        Some(out)
    }

    /// Number of ops.
    pub fn len(&self) -> usize {
        self.buckets.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.values().all(Vec::is_empty)
    }
}

/// Checksum and op count of a bucket at a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketState {
    pub checksum: Checksum,
    pub count: i64,
}

/// Bounds of one page of [`BucketStorage::bucket_data_page`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit {
    /// Ops at most.
    pub ops: usize,
    /// The page ends after the op that brings its [`op_bytes`] total to this or more.
    pub bytes: usize,
}

/// The bytes an op counts for against a page's byte budget: its data and identifiers.
pub fn op_bytes(op: &OplogEntry) -> usize {
    [&op.data, &op.object_id, &op.object_type, &op.subkey]
        .iter()
        .map(|s| s.as_ref().map_or(0, String::len))
        .sum::<usize>()
        + 32
}

/// A page of one bucket's ops.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketChunk {
    pub bucket: String,
    pub ops: Vec<OplogEntry>,
    /// More ops up to the checkpoint remain after the last one in `ops`.
    pub has_more: bool,
}

/// One source transaction being written. Nothing is visible to readers until [`commit`]; a
/// batch that is dropped without committing leaves storage unchanged.
///
/// [`commit`]: StorageBatch::commit
#[async_trait]
pub trait StorageBatch: Send {
    /// Adds operations; may flush them to the open storage transaction to bound memory.
    async fn save(&mut self, ops: Vec<BatchOperation>) -> Result<()>;

    /// The current state (as given in [`RowChange::Upsert`]) of these keys of a table as this
    /// batch sees it: its own saves first, then what is committed. Lets the replicator find
    /// rows written earlier in a large transaction without holding them in memory. Missing
    /// keys (and deleted rows) are absent from the map.
    async fn current_rows(
        &mut self,
        source_table: &str,
        keys: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Vec<u8>>>;

    /// Commits everything saved as one atomic storage transaction, recording that the source
    /// is applied up to `lsn`. Creates a new checkpoint (op ids up to the last op written; the
    /// same op id with a newer LSN when nothing changed) and returns its event.
    async fn commit(self: Box<Self>, lsn: Lsn) -> Result<CheckpointEvent>;
}

/// Storage as the replicator and the service use it.
#[async_trait]
pub trait BucketStorage: Send + Sync + 'static {
    /// Creates or upgrades the storage schema. Idempotent; safe to run concurrently.
    async fn migrate(&self) -> Result<()>;

    // --- deployments ---

    /// The deployment serving clients, if any.
    async fn active_deployment(&self) -> Result<Option<Deployment>>;
    /// The newest deployment still replicating its snapshot, if any.
    async fn processing_deployment(&self) -> Result<Option<Deployment>>;
    async fn deployment(&self, id: DeploymentId) -> Result<Deployment>;
    /// Records a new deployment in state `Processing` with slot name `<slot_prefix><id>_<4 hex>`.
    async fn create_deployment(&self, content: &str, slot_prefix: &str) -> Result<Deployment>;
    /// Makes `id` the active deployment and marks the previously active one `Stop`, atomically.
    async fn activate(&self, id: DeploymentId) -> Result<()>;
    /// Removes a deployment's bucket data, current rows and lookups and marks it `Terminated`.
    async fn terminate(&self, id: DeploymentId) -> Result<()>;
    /// Deletes all data of a deployment whose snapshot did not complete, so it can start over.
    async fn reset_snapshot(&self, id: DeploymentId) -> Result<()>;
    /// Marks the snapshot complete. The batch committed just before provides the checkpoint.
    async fn mark_snapshot_done(&self, id: DeploymentId) -> Result<()>;
    /// Marks the snapshot complete *and* makes `id` the active deployment (the previously
    /// active one becomes `Stop`), atomically: a deployment whose snapshot is done is live, so
    /// no failure can leave one that never goes live.
    async fn complete_snapshot(&self, id: DeploymentId) -> Result<()>;

    // --- replication ---

    /// Starts a storage transaction for one source transaction. Only one batch per deployment
    /// may be open at a time (the replicator is the single writer).
    async fn begin_batch(&self, id: DeploymentId) -> Result<Box<dyn StorageBatch>>;

    /// Current stored row state (as given in [`RowChange::Upsert`]) for these keys of a table.
    /// Missing keys are absent from the map.
    async fn current_rows(
        &self,
        id: DeploymentId,
        source_table: &str,
        keys: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Vec<u8>>>;

    // --- reads for sync streams ---

    /// The latest committed checkpoint of a deployment.
    async fn checkpoint(&self, id: DeploymentId) -> Result<Option<StorageCheckpoint>>;

    /// Results stored under each lookup key (keys with no result map to an empty list).
    async fn parameter_results(
        &self,
        id: DeploymentId,
        lookups: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Vec<Vec<u8>>>>;

    /// Checksum and count of each bucket as of `checkpoint` (ops with `op_id <= checkpoint`),
    /// exact even if newer ops were committed since. Buckets with no ops are absent.
    async fn bucket_states(
        &self,
        id: DeploymentId,
        checkpoint: OpId,
        buckets: &[String],
    ) -> Result<HashMap<String, BucketState>>;

    /// Ops with `after < op_id <= checkpoint` of the given buckets, in (bucket, op_id) order,
    /// at most `limit` ops in total. Buckets with no such ops are omitted.
    ///
    /// Buckets come in name (byte) order; a bucket named twice uses its first `after`.
    /// [`BucketChunk::has_more`] says that bucket has more ops up to `checkpoint` after the
    /// last one returned. When `limit` ops were returned, later buckets may have been left
    /// out entirely: read again (with updated `after`s) until a page has fewer than `limit`
    /// ops. Reads of an unknown deployment return nothing.
    async fn bucket_data(
        &self,
        id: DeploymentId,
        checkpoint: OpId,
        buckets: &[(String, OpId)],
        limit: usize,
    ) -> Result<Vec<BucketChunk>>;

    /// [`Self::bucket_data`] bounded in bytes as well: the page also ends after the op that
    /// brings its [`op_bytes`] total to `limit.bytes` or more (at least one op per page). A
    /// page that reached either bound may have left later buckets out: read again. The
    /// default bounds ops only (wrappers in tests); both storages bound bytes.
    async fn bucket_data_page(
        &self,
        id: DeploymentId,
        checkpoint: OpId,
        buckets: &[(String, OpId)],
        limit: PageLimit,
    ) -> Result<Vec<BucketChunk>> {
        self.bucket_data(id, checkpoint, buckets, limit.ops).await
    }

    // --- compaction (see `crate::compaction`) ---

    /// Buckets of deployment `id` with at least `min_superseded` ops that superseded an earlier
    /// op since the bucket was last compacted, in name order after `after`, at most `limit`.
    async fn compaction_candidates(
        &self,
        id: DeploymentId,
        min_superseded: i64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CompactionCandidate>>;

    /// Compacts one bucket up to the deployment's checkpoint when it starts: superseded
    /// PUT/REMOVE ops become MOVE, the leading run of REMOVE/MOVE/CLEAR one CLEAR. Runs in
    /// transactions of at most `limits.ops_per_transaction` ops and never locks the deployment
    /// row, so replication and streams go on meanwhile. Checksums at the checkpoint it ran at
    /// and every later one stay the same. Resets the bucket's superseded counter. A deployment
    /// without a checkpoint yet, or an unknown bucket, is left alone.
    async fn compact_bucket(
        &self,
        id: DeploymentId,
        bucket: &str,
        limits: &CompactLimits,
    ) -> Result<CompactStats>;

    /// For each bucket, the checkpoint op id its last compaction that rewrote something ran at
    /// (buckets never compacted are absent). A stream that read a bucket's data for a checkpoint
    /// older than this may have read rewritten ops whose superseding op it will not get: it
    /// must not complete that checkpoint, but move on to a newer one (docs/protocol.md §3.6).
    async fn compaction_points(
        &self,
        id: DeploymentId,
        buckets: &[String],
    ) -> Result<HashMap<String, OpId>>;

    // --- write checkpoints ---

    /// Creates the next write checkpoint for `user_id`/`client_id`, covering the source up to
    /// `lsn`. Returns its id (monotonic per user/client).
    async fn create_write_checkpoint(
        &self,
        user_id: &str,
        client_id: &str,
        lsn: Lsn,
    ) -> Result<OpId>;

    /// Records a client-chosen checkpoint request id (checkpoint-requests flow). Returns the
    /// stored id: `max(stored, requested)`.
    async fn request_checkpoint(
        &self,
        user_id: &str,
        client_id: &str,
        requested: OpId,
        lsn: Lsn,
    ) -> Result<OpId>;

    /// Deletes `user_id`'s write-checkpoint counters (with their history) beyond the `keep`
    /// most recently used, and those unused for longer than `max_age`. Returns how many were
    /// deleted. The default deletes nothing (wrappers in tests).
    async fn prune_write_checkpoints(
        &self,
        user_id: &str,
        keep: usize,
        max_age: std::time::Duration,
    ) -> Result<u64> {
        let _ = (user_id, keep, max_age);
        Ok(0)
    }

    /// The newest write checkpoint of `user_id`/`client_id` whose LSN is `<= lsn`.
    async fn write_checkpoint(
        &self,
        user_id: &str,
        client_id: &str,
        lsn: Lsn,
    ) -> Result<Option<OpId>>;
}
