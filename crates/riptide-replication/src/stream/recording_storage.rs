//! For the applier's tests: a [`BucketStorage`] over [`MemoryStorage`] that records every
//! storage commit (after it succeeded) and the size of every save, and fails saves or
//! commits when told to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use riptide_protocol::{Lsn, OpId};
use riptide_storage::{
    BatchOperation, BucketChunk, BucketState, BucketStorage, CheckpointEvent, Deployment,
    DeploymentId, MemoryStorage, Result, StorageBatch, StorageCheckpoint, StorageError,
};

#[derive(Debug, Default)]
pub(super) struct Log {
    /// The LSN of each storage commit that succeeded, in order.
    pub commits: Vec<Lsn>,
    /// Operations per `save` of each storage commit, in order (of commits that succeeded).
    pub saves: Vec<Vec<usize>>,
    /// Batches begun.
    pub begun: usize,
    /// Batches begun and not yet committed or dropped. Postgres storage locks the
    /// deployment's row for a batch's lifetime, so a second open batch would wait forever:
    /// `begin_batch` panics instead.
    pub open: usize,
    pub fail_save: bool,
    pub fail_commit: bool,
}

#[derive(Clone, Default)]
pub(super) struct RecordingStorage {
    pub memory: MemoryStorage,
    pub log: Arc<Mutex<Log>>,
}

impl RecordingStorage {
    pub fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap()
    }

    pub fn commits(&self) -> Vec<Lsn> {
        self.log().commits.clone()
    }
}

struct RecordingBatch {
    inner: Box<dyn StorageBatch>,
    saves: Vec<usize>,
    log: Arc<Mutex<Log>>,
    _open: Open,
}

/// Counts its batch out of [`Log::open`] when the batch is committed or dropped.
struct Open(Arc<Mutex<Log>>);

impl Drop for Open {
    fn drop(&mut self) {
        if let Ok(mut log) = self.0.lock() {
            log.open -= 1;
        }
    }
}

#[async_trait]
impl StorageBatch for RecordingBatch {
    async fn save(&mut self, ops: Vec<BatchOperation>) -> Result<()> {
        if self.log.lock().unwrap().fail_save {
            return Err(StorageError::BatchFailed);
        }
        self.saves.push(ops.len());
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
        if self.log.lock().unwrap().fail_commit {
            return Err(StorageError::BatchFailed);
        }
        let event = self.inner.commit(lsn).await?;
        let mut log = self.log.lock().unwrap();
        log.commits.push(lsn);
        log.saves.push(self.saves);
        Ok(event)
    }
}

#[async_trait]
impl BucketStorage for RecordingStorage {
    async fn migrate(&self) -> Result<()> {
        self.memory.migrate().await
    }
    async fn active_deployment(&self) -> Result<Option<Deployment>> {
        self.memory.active_deployment().await
    }
    async fn processing_deployment(&self) -> Result<Option<Deployment>> {
        self.memory.processing_deployment().await
    }
    async fn deployment(&self, id: DeploymentId) -> Result<Deployment> {
        self.memory.deployment(id).await
    }
    async fn create_deployment(&self, content: &str, slot_prefix: &str) -> Result<Deployment> {
        self.memory.create_deployment(content, slot_prefix).await
    }
    async fn activate(&self, id: DeploymentId) -> Result<()> {
        self.memory.activate(id).await
    }
    async fn terminate(&self, id: DeploymentId) -> Result<()> {
        self.memory.terminate(id).await
    }
    async fn reset_snapshot(&self, id: DeploymentId) -> Result<()> {
        self.memory.reset_snapshot(id).await
    }
    async fn mark_snapshot_done(&self, id: DeploymentId) -> Result<()> {
        self.memory.mark_snapshot_done(id).await
    }
    async fn complete_snapshot(&self, id: DeploymentId) -> Result<()> {
        self.memory.complete_snapshot(id).await
    }
    async fn begin_batch(&self, id: DeploymentId) -> Result<Box<dyn StorageBatch>> {
        let inner = self.memory.begin_batch(id).await?;
        let mut log = self.log();
        assert_eq!(log.open, 0, "a storage batch begun while another is open");
        log.begun += 1;
        log.open += 1;
        drop(log);
        Ok(Box::new(RecordingBatch {
            inner,
            saves: Vec::new(),
            log: self.log.clone(),
            _open: Open(self.log.clone()),
        }))
    }
    async fn current_rows(
        &self,
        id: DeploymentId,
        source_table: &str,
        keys: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Vec<u8>>> {
        self.memory.current_rows(id, source_table, keys).await
    }
    async fn checkpoint(&self, id: DeploymentId) -> Result<Option<StorageCheckpoint>> {
        self.memory.checkpoint(id).await
    }
    async fn parameter_results(
        &self,
        id: DeploymentId,
        lookups: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Vec<Vec<u8>>>> {
        self.memory.parameter_results(id, lookups).await
    }
    async fn bucket_states(
        &self,
        id: DeploymentId,
        checkpoint: OpId,
        buckets: &[String],
    ) -> Result<HashMap<String, BucketState>> {
        self.memory.bucket_states(id, checkpoint, buckets).await
    }
    async fn bucket_data(
        &self,
        id: DeploymentId,
        checkpoint: OpId,
        buckets: &[(String, OpId)],
        limit: usize,
    ) -> Result<Vec<BucketChunk>> {
        self.memory
            .bucket_data(id, checkpoint, buckets, limit)
            .await
    }
    async fn compaction_candidates(
        &self,
        id: DeploymentId,
        min_superseded: i64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<riptide_storage::CompactionCandidate>> {
        self.memory
            .compaction_candidates(id, min_superseded, after, limit)
            .await
    }
    async fn compact_bucket(
        &self,
        id: DeploymentId,
        bucket: &str,
        limits: &riptide_storage::CompactLimits,
    ) -> Result<riptide_storage::CompactStats> {
        self.memory.compact_bucket(id, bucket, limits).await
    }
    async fn compaction_points(
        &self,
        id: DeploymentId,
        buckets: &[String],
    ) -> Result<HashMap<String, OpId>> {
        self.memory.compaction_points(id, buckets).await
    }
    async fn create_write_checkpoint(
        &self,
        user_id: &str,
        client_id: &str,
        lsn: Lsn,
    ) -> Result<OpId> {
        self.memory
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
        self.memory
            .request_checkpoint(user_id, client_id, requested, lsn)
            .await
    }
    async fn write_checkpoint(
        &self,
        user_id: &str,
        client_id: &str,
        lsn: Lsn,
    ) -> Result<Option<OpId>> {
        self.memory.write_checkpoint(user_id, client_id, lsn).await
    }
}
