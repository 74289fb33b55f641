//! Shared setup: a source database, a storage that records every committed batch, and a
//! replicator running in the background.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use riptide_protocol::{Lsn, OpId};
use riptide_replication::{ReplicationSource, Replicator, StreamOptions};
use riptide_rules::SyncRules;
use riptide_storage::{
    BatchOperation, BucketChunk, BucketState, BucketStorage, CheckpointEvent, Deployment,
    DeploymentId, MemoryStorage, Result, StorageBatch, StorageCheckpoint,
};
use riptide_testkit::{TestDatabase, wait_for};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One committed storage batch.
#[derive(Debug, Clone)]
pub struct Committed {
    pub lsn: Lsn,
    pub ops: Vec<BatchOperation>,
    /// How many `save` calls it took.
    pub saves: usize,
}

/// Delegates to another storage and records each committed batch.
pub struct RecordingStorage {
    pub inner: Arc<dyn BucketStorage>,
    pub log: Arc<Mutex<Vec<Committed>>>,
    /// When set, `current_rows` answers nothing (stored row state lost).
    pub forget_rows: std::sync::atomic::AtomicBool,
    /// Injected faults: `activate` (and completing a snapshot) fails this many more times.
    pub fail_activations: AtomicU64,
    /// Injected faults: a `save` that would take the rows saved past this fails (once; 0: off).
    pub fail_past_rows: Arc<AtomicU64>,
    /// Rows saved so far (every batch, committed or not).
    pub rows_saved: Arc<AtomicU64>,
}

/// The error an injected fault returns.
pub fn injected() -> riptide_storage::StorageError {
    riptide_storage::StorageError::InvalidArgument("injected fault".into())
}

impl RecordingStorage {
    pub fn new(inner: Arc<dyn BucketStorage>) -> Arc<Self> {
        Arc::new(RecordingStorage {
            inner,
            log: Arc::default(),
            forget_rows: std::sync::atomic::AtomicBool::new(false),
            fail_activations: AtomicU64::new(0),
            fail_past_rows: Arc::default(),
            rows_saved: Arc::default(),
        })
    }

    pub fn commits(&self) -> Vec<Committed> {
        self.log.lock().unwrap().clone()
    }

    /// All row ops committed after the first `skip` commits.
    pub fn ops_after(&self, skip: usize) -> Vec<BatchOperation> {
        self.commits()
            .into_iter()
            .skip(skip)
            .flat_map(|c| c.ops)
            .collect()
    }
}

struct RecordingBatch {
    inner: Box<dyn StorageBatch>,
    ops: Vec<BatchOperation>,
    saves: usize,
    log: Arc<Mutex<Vec<Committed>>>,
    fail_past_rows: Arc<AtomicU64>,
    rows_saved: Arc<AtomicU64>,
}

#[async_trait]
impl StorageBatch for RecordingBatch {
    async fn save(&mut self, ops: Vec<BatchOperation>) -> Result<()> {
        let limit = self.fail_past_rows.load(Ordering::SeqCst);
        let saved = self
            .rows_saved
            .fetch_add(ops.len() as u64, Ordering::SeqCst);
        if limit > 0 && saved + ops.len() as u64 > limit {
            self.fail_past_rows.store(0, Ordering::SeqCst);
            return Err(injected());
        }
        // The replicator's own state (tracked tables, snapshot progress) is not a source
        // change.
        self.ops.extend(
            ops.iter()
                .filter(|op| {
                    !matches!(op, BatchOperation::Row(r)
                        if riptide_replication::is_pseudo_table(&r.source_table))
                })
                .cloned(),
        );
        self.saves += 1;
        self.inner.save(ops).await
    }

    async fn current_rows(
        &mut self,
        source_table: &str,
        keys: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Vec<u8>>> {
        self.inner.current_rows(source_table, keys).await
    }

    async fn commit(self: Box<Self>, lsn: Lsn) -> Result<CheckpointEvent> {
        let event = self.inner.commit(lsn).await?;
        self.log.lock().unwrap().push(Committed {
            lsn,
            ops: self.ops,
            saves: self.saves,
        });
        Ok(event)
    }
}

#[async_trait]
impl BucketStorage for RecordingStorage {
    async fn migrate(&self) -> Result<()> {
        self.inner.migrate().await
    }
    async fn active_deployment(&self) -> Result<Option<Deployment>> {
        self.inner.active_deployment().await
    }
    async fn processing_deployment(&self) -> Result<Option<Deployment>> {
        self.inner.processing_deployment().await
    }
    async fn deployment(&self, id: DeploymentId) -> Result<Deployment> {
        self.inner.deployment(id).await
    }
    async fn create_deployment(&self, content: &str, slot_prefix: &str) -> Result<Deployment> {
        self.inner.create_deployment(content, slot_prefix).await
    }
    async fn activate(&self, id: DeploymentId) -> Result<()> {
        if self
            .fail_activations
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(injected());
        }
        self.inner.activate(id).await
    }
    async fn terminate(&self, id: DeploymentId) -> Result<()> {
        self.inner.terminate(id).await
    }
    async fn reset_snapshot(&self, id: DeploymentId) -> Result<()> {
        self.inner.reset_snapshot(id).await
    }
    async fn mark_snapshot_done(&self, id: DeploymentId) -> Result<()> {
        self.inner.mark_snapshot_done(id).await
    }
    async fn complete_snapshot(&self, id: DeploymentId) -> Result<()> {
        if self
            .fail_activations
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(injected());
        }
        self.inner.complete_snapshot(id).await
    }
    async fn begin_batch(&self, id: DeploymentId) -> Result<Box<dyn StorageBatch>> {
        Ok(Box::new(RecordingBatch {
            inner: self.inner.begin_batch(id).await?,
            ops: Vec::new(),
            saves: 0,
            log: self.log.clone(),
            fail_past_rows: self.fail_past_rows.clone(),
            rows_saved: self.rows_saved.clone(),
        }))
    }
    async fn current_rows(
        &self,
        id: DeploymentId,
        source_table: &str,
        keys: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Vec<u8>>> {
        if self.forget_rows.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(HashMap::new());
        }
        self.inner.current_rows(id, source_table, keys).await
    }
    async fn checkpoint(&self, id: DeploymentId) -> Result<Option<StorageCheckpoint>> {
        self.inner.checkpoint(id).await
    }
    async fn parameter_results(
        &self,
        id: DeploymentId,
        lookups: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Vec<Vec<u8>>>> {
        self.inner.parameter_results(id, lookups).await
    }
    async fn bucket_states(
        &self,
        id: DeploymentId,
        checkpoint: OpId,
        buckets: &[String],
    ) -> Result<HashMap<String, BucketState>> {
        self.inner.bucket_states(id, checkpoint, buckets).await
    }
    async fn bucket_data(
        &self,
        id: DeploymentId,
        checkpoint: OpId,
        buckets: &[(String, OpId)],
        limit: usize,
    ) -> Result<Vec<BucketChunk>> {
        self.inner.bucket_data(id, checkpoint, buckets, limit).await
    }
    async fn compaction_candidates(
        &self,
        id: DeploymentId,
        min_superseded: i64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<riptide_storage::CompactionCandidate>> {
        self.inner
            .compaction_candidates(id, min_superseded, after, limit)
            .await
    }
    async fn compact_bucket(
        &self,
        id: DeploymentId,
        bucket: &str,
        limits: &riptide_storage::CompactLimits,
    ) -> Result<riptide_storage::CompactStats> {
        self.inner.compact_bucket(id, bucket, limits).await
    }
    async fn compaction_points(
        &self,
        id: DeploymentId,
        buckets: &[String],
    ) -> Result<HashMap<String, OpId>> {
        self.inner.compaction_points(id, buckets).await
    }
    async fn create_write_checkpoint(
        &self,
        user_id: &str,
        client_id: &str,
        lsn: Lsn,
    ) -> Result<OpId> {
        self.inner
            .create_write_checkpoint(user_id, client_id, lsn)
            .await
    }
    async fn request_checkpoint(
        &self,
        user_id: &str,
        client_id: &str,
        requested: OpId,
        lsn: Lsn,
    ) -> Result<OpId> {
        self.inner
            .request_checkpoint(user_id, client_id, requested, lsn)
            .await
    }
    async fn write_checkpoint(
        &self,
        user_id: &str,
        client_id: &str,
        lsn: Lsn,
    ) -> Result<Option<OpId>> {
        self.inner.write_checkpoint(user_id, client_id, lsn).await
    }
}

pub const RULES: &str = "
bucket_definitions:
  global:
    data:
      - SELECT id, title, n, body FROM todos
";

pub fn options(db: &TestDatabase) -> ReplicationSource {
    ReplicationSource {
        connection: db.connection(),
        publication: "powersync".into(),
        slot_prefix: "riptide_".into(),
    }
}

/// A source database with `todos` (text primary key) and the `powersync` publication.
pub async fn source_db() -> TestDatabase {
    let db = TestDatabase::create().await;
    db.client()
        .await
        .batch_execute(
            "CREATE TABLE todos (id text PRIMARY KEY, title text, n int4, body text);
             CREATE TABLE other (id int PRIMARY KEY, v text);
             CREATE PUBLICATION powersync FOR ALL TABLES;",
        )
        .await
        .unwrap();
    db
}

pub struct Running {
    pub storage: Arc<RecordingStorage>,
    pub deployment: Deployment,
    pub replicator: Arc<Replicator>,
    pub cancel: CancellationToken,
    pub task: JoinHandle<std::result::Result<(), riptide_replication::ReplicationError>>,
}

impl Running {
    /// Stops the replicator and waits for it to return.
    pub async fn stop(self) -> (Arc<RecordingStorage>, Deployment) {
        self.cancel.cancel();
        self.task.await.unwrap().unwrap();
        (self.storage, self.deployment)
    }

    /// Waits until storage has committed at least `commits` batches.
    pub async fn wait_commits(&self, commits: usize) -> Vec<Committed> {
        let storage = self.storage.clone();
        wait_for("commits", Duration::from_secs(30), || {
            let storage = storage.clone();
            async move {
                let c = storage.commits();
                (c.len() >= commits).then_some(c)
            }
        })
        .await
    }
}

pub fn memory_storage() -> Arc<RecordingStorage> {
    RecordingStorage::new(Arc::new(MemoryStorage::new()))
}

/// Starts replicating `deployment` (creating one if `None`).
pub async fn start(
    db: &TestDatabase,
    storage: Arc<RecordingStorage>,
    deployment: Option<Deployment>,
    rules: &str,
) -> Running {
    start_with(db, storage, deployment, rules, StreamOptions::default()).await
}

/// [`start`] with these stream options.
pub async fn start_with(
    db: &TestDatabase,
    storage: Arc<RecordingStorage>,
    deployment: Option<Deployment>,
    rules: &str,
    stream_options: StreamOptions,
) -> Running {
    let deployment = match deployment {
        Some(d) => d,
        None => storage.create_deployment(rules, "riptide_").await.unwrap(),
    };
    let (events, _) = tokio::sync::broadcast::channel(64);
    let replicator = Arc::new(
        Replicator::new(options(db), storage.clone(), events).with_stream_options(stream_options),
    );
    let rules = Arc::new(SyncRules::parse(rules).unwrap());
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let replicator = replicator.clone();
        let deployment = deployment.clone();
        let cancel = cancel.clone();
        async move { replicator.run(deployment, rules, cancel).await }
    });
    Running {
        storage,
        deployment,
        replicator,
        cancel,
        task,
    }
}
