//! In-memory [`BucketStorage`] with the same semantics as the Postgres one, for fast unit tests
//! of the replicator and the service. Diffing is shared with Postgres ([`crate::diff`]).
//!
//! A batch keeps everything it writes in memory and applies it under the lock at commit, so a
//! dropped batch leaves nothing behind. One batch per deployment is open at a time: a second
//! [`BucketStorage::begin_batch`] waits until the first is committed or dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use riptide_protocol::{Checksum, Lsn, OpId, OplogEntry};

use crate::compaction::scan::compact_log;
use crate::diff::{RowState, diff_row, subkey};
use crate::keys;
use crate::write_checkpoint;
use crate::{
    BatchOperation, BucketChunk, BucketState, BucketStorage, CheckpointEvent, CommitOps,
    CompactLimits, CompactStats, CompactionCandidate, Deployment, DeploymentId, DeploymentState,
    PageLimit, Result, RowChange, StorageBatch, StorageCheckpoint, StorageError,
};

type RowKey = (String, Vec<u8>);

/// In-memory [`crate::BucketStorage`] for unit tests.
#[derive(Debug, Default, Clone)]
pub struct MemoryStorage {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    last_deployment_id: DeploymentId,
    deployments: BTreeMap<DeploymentId, Dep>,
    write_checkpoints: HashMap<(String, String), WriteCheckpoints>,
}

impl Inner {
    /// The highest op id any deployment other than `except` has allocated.
    fn highest_op_id(&self, except: DeploymentId) -> OpId {
        self.deployments
            .iter()
            .filter(|(id, _)| **id != except)
            .map(|(_, d)| d.last_checkpoint.map(|c| c.op_id).unwrap_or(d.op_base))
            .max()
            .unwrap_or(OpId::ZERO)
    }
}

#[derive(Debug)]
struct WriteCheckpoints {
    last_id: OpId,
    history: Vec<(OpId, Lsn)>,
    updated: std::time::Instant,
}

impl Default for WriteCheckpoints {
    fn default() -> Self {
        WriteCheckpoints {
            last_id: OpId::default(),
            history: Vec::new(),
            updated: std::time::Instant::now(),
        }
    }
}

#[derive(Debug)]
struct Dep {
    content: String,
    state: DeploymentState,
    slot_name: String,
    snapshot_done: bool,
    /// High-water mark of op ids and the LSN of the last commit.
    last_checkpoint: Option<StorageCheckpoint>,
    resume_lsn: Option<Lsn>,
    /// Op ids of this deployment start after this: the highest op id of the deployments that
    /// existed when it was created, so positions never go back when rules are redeployed.
    op_base: OpId,
    /// Held by the open batch: one writer per deployment.
    writer: Arc<tokio::sync::Mutex<()>>,
    data: DepData,
}

#[derive(Debug, Default)]
struct DepData {
    rows: HashMap<RowKey, RowState>,
    buckets: BTreeMap<String, BucketLog>,
    /// lookup key → (source table, key) → results
    lookups: HashMap<Vec<u8>, BTreeMap<RowKey, Vec<Vec<u8>>>>,
}

#[derive(Debug, Default)]
struct BucketLog {
    ops: Vec<OplogEntry>,
    checksum: Checksum,
    count: i64,
    last_op: OpId,
    /// Ops that superseded an earlier op since the last compaction.
    superseded: i64,
    /// The checkpoint the last compaction that rewrote something ran at.
    compacted_at: OpId,
}

impl Dep {
    fn to_deployment(&self, id: DeploymentId) -> Deployment {
        Deployment {
            id,
            content: self.content.clone(),
            state: self.state,
            slot_name: self.slot_name.clone(),
            snapshot_done: self.snapshot_done,
            checkpoint: self.served_checkpoint(),
            resume_lsn: self.resume_lsn,
        }
    }

    /// The checkpoint readers may use: only once the snapshot is complete.
    fn served_checkpoint(&self) -> Option<StorageCheckpoint> {
        if self.snapshot_done {
            self.last_checkpoint
        } else {
            None
        }
    }
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another test thread panicked; the data is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn dep_mut(inner: &mut Inner, id: DeploymentId) -> Result<&mut Dep> {
    inner
        .deployments
        .get_mut(&id)
        .ok_or(StorageError::UnknownDeployment(id))
}

fn dep(inner: &Inner, id: DeploymentId) -> Result<&Dep> {
    inner
        .deployments
        .get(&id)
        .ok_or(StorageError::UnknownDeployment(id))
}

/// Makes `id` active and stops the active one.
fn activate_locked(inner: &mut Inner, id: DeploymentId) -> Result<()> {
    let state = dep(inner, id)?.state;
    if !matches!(state, DeploymentState::Processing | DeploymentState::Active) {
        return Err(StorageError::InvalidState { id, state });
    }
    for (other, d) in inner.deployments.iter_mut() {
        if *other != id && d.state == DeploymentState::Active {
            d.state = DeploymentState::Stop;
        }
    }
    dep_mut(inner, id)?.state = DeploymentState::Active;
    Ok(())
}

fn random_hex4() -> String {
    let u = uuid::Uuid::new_v4();
    let b = u.as_bytes();
    format!("{:02x}{:02x}", b[0], b[1])
}

#[async_trait]
impl BucketStorage for MemoryStorage {
    async fn migrate(&self) -> Result<()> {
        Ok(())
    }

    async fn active_deployment(&self) -> Result<Option<Deployment>> {
        let inner = self.lock();
        Ok(inner
            .deployments
            .iter()
            .find(|(_, d)| d.state == DeploymentState::Active)
            .map(|(id, d)| d.to_deployment(*id)))
    }

    async fn processing_deployment(&self) -> Result<Option<Deployment>> {
        let inner = self.lock();
        Ok(inner
            .deployments
            .iter()
            .rev()
            .find(|(_, d)| d.state == DeploymentState::Processing)
            .map(|(id, d)| d.to_deployment(*id)))
    }

    async fn deployment(&self, id: DeploymentId) -> Result<Deployment> {
        let inner = self.lock();
        Ok(dep(&inner, id)?.to_deployment(id))
    }

    async fn create_deployment(&self, content: &str, slot_prefix: &str) -> Result<Deployment> {
        let mut inner = self.lock();
        inner.last_deployment_id += 1;
        let id = inner.last_deployment_id;
        let op_base = inner.highest_op_id(id);
        let d = Dep {
            content: content.to_owned(),
            state: DeploymentState::Processing,
            slot_name: format!("{slot_prefix}{id}_{}", random_hex4()),
            snapshot_done: false,
            last_checkpoint: None,
            resume_lsn: None,
            op_base,
            writer: Arc::new(tokio::sync::Mutex::new(())),
            data: DepData::default(),
        };
        let out = d.to_deployment(id);
        inner.deployments.insert(id, d);
        Ok(out)
    }

    async fn activate(&self, id: DeploymentId) -> Result<()> {
        activate_locked(&mut self.lock(), id)
    }

    async fn terminate(&self, id: DeploymentId) -> Result<()> {
        let writer = dep(&self.lock(), id)?.writer.clone();
        let _guard = writer.lock_owned().await;
        let mut inner = self.lock();
        let op_base = inner.highest_op_id(id);
        let d = dep_mut(&mut inner, id)?;
        d.op_base = op_base;
        d.data = DepData::default();
        d.state = DeploymentState::Terminated;
        Ok(())
    }

    async fn reset_snapshot(&self, id: DeploymentId) -> Result<()> {
        let writer = dep(&self.lock(), id)?.writer.clone();
        let _guard = writer.lock_owned().await;
        let mut inner = self.lock();
        let op_base = inner.highest_op_id(id);
        let d = dep_mut(&mut inner, id)?;
        d.op_base = op_base;
        d.data = DepData::default();
        d.snapshot_done = false;
        d.last_checkpoint = None;
        d.resume_lsn = None;
        Ok(())
    }

    async fn mark_snapshot_done(&self, id: DeploymentId) -> Result<()> {
        let mut inner = self.lock();
        dep_mut(&mut inner, id)?.snapshot_done = true;
        Ok(())
    }

    async fn complete_snapshot(&self, id: DeploymentId) -> Result<()> {
        // One lock: marked done and activated together.
        let mut inner = self.lock();
        activate_locked(&mut inner, id)?;
        dep_mut(&mut inner, id)?.snapshot_done = true;
        Ok(())
    }

    async fn begin_batch(&self, id: DeploymentId) -> Result<Box<dyn StorageBatch>> {
        let writer = dep(&self.lock(), id)?.writer.clone();
        let guard = writer.lock_owned().await;
        let last_op = {
            let inner = self.lock();
            let d = dep(&inner, id)?;
            if d.state == DeploymentState::Terminated {
                return Err(StorageError::InvalidState { id, state: d.state });
            }
            d.last_checkpoint.map(|c| c.op_id).unwrap_or(d.op_base)
        };
        Ok(Box::new(MemoryBatch {
            storage: self.clone(),
            id,
            _writer: guard,
            last_op,
            previous: last_op,
            overlay: HashMap::new(),
            ops: Vec::new(),
            superseding: HashMap::new(),
            changed_lookups: BTreeSet::new(),
        }))
    }

    async fn current_rows(
        &self,
        id: DeploymentId,
        source_table: &str,
        keys: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Vec<u8>>> {
        let inner = self.lock();
        let Some(d) = inner.deployments.get(&id) else {
            return Ok(HashMap::new());
        };
        let mut out = HashMap::new();
        for k in keys {
            let stored = keys::row_key(k).into_owned();
            if let Some(s) = d.data.rows.get(&(source_table.to_owned(), stored)) {
                out.insert(k.clone(), s.row.clone());
            }
        }
        Ok(out)
    }

    async fn checkpoint(&self, id: DeploymentId) -> Result<Option<StorageCheckpoint>> {
        let inner = self.lock();
        Ok(dep(&inner, id)?.served_checkpoint())
    }

    async fn parameter_results(
        &self,
        id: DeploymentId,
        lookups: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Vec<Vec<u8>>>> {
        let inner = self.lock();
        let d = inner.deployments.get(&id);
        let mut out = HashMap::new();
        for l in lookups {
            let results = d
                .and_then(|d| d.data.lookups.get(l))
                .map(|m| m.values().flatten().cloned().collect())
                .unwrap_or_default();
            out.insert(l.clone(), results);
        }
        Ok(out)
    }

    async fn bucket_states(
        &self,
        id: DeploymentId,
        checkpoint: OpId,
        buckets: &[String],
    ) -> Result<HashMap<String, BucketState>> {
        let inner = self.lock();
        let Some(d) = inner.deployments.get(&id) else {
            return Ok(HashMap::new());
        };
        let mut out = HashMap::new();
        for b in buckets {
            let Some(log) = d.data.buckets.get(b) else {
                continue;
            };
            let mut state = BucketState {
                checksum: log.checksum,
                count: log.count,
            };
            if log.last_op > checkpoint {
                for op in log.ops.iter().rev().take_while(|o| o.op_id > checkpoint) {
                    state.checksum = Checksum(state.checksum.0 - op.checksum.0);
                    state.count -= 1;
                }
            }
            if state.count > 0 {
                out.insert(b.clone(), state);
            }
        }
        Ok(out)
    }

    async fn bucket_data(
        &self,
        id: DeploymentId,
        checkpoint: OpId,
        buckets: &[(String, OpId)],
        limit: usize,
    ) -> Result<Vec<BucketChunk>> {
        let limit = PageLimit {
            ops: limit,
            bytes: usize::MAX,
        };
        self.bucket_data_page(id, checkpoint, buckets, limit).await
    }

    async fn bucket_data_page(
        &self,
        id: DeploymentId,
        checkpoint: OpId,
        buckets: &[(String, OpId)],
        limit: PageLimit,
    ) -> Result<Vec<BucketChunk>> {
        let inner = self.lock();
        let Some(d) = inner.deployments.get(&id) else {
            return Ok(Vec::new());
        };
        // Sorted by bucket name; for a bucket requested twice the first `after` counts.
        let mut wanted: BTreeMap<&str, OpId> = BTreeMap::new();
        for (b, after) in buckets {
            wanted.entry(b.as_str()).or_insert(*after);
        }
        let mut out: Vec<BucketChunk> = Vec::new();
        let mut remaining = limit.ops;
        let mut bytes = 0usize;
        for (b, after) in wanted {
            let Some(log) = d.data.buckets.get(b) else {
                continue;
            };
            let mut ops = log
                .ops
                .iter()
                .filter(|o| o.op_id > after && o.op_id <= checkpoint)
                .peekable();
            if ops.peek().is_none() {
                continue;
            }
            if remaining == 0 || bytes >= limit.bytes {
                // Later buckets are left out; the caller sees a full page and reads again.
                break;
            }
            let mut taken: Vec<OplogEntry> = Vec::new();
            while remaining > 0 && bytes < limit.bytes {
                let Some(op) = ops.next() else { break };
                bytes = bytes.saturating_add(crate::op_bytes(op));
                taken.push(op.clone());
                remaining -= 1;
            }
            let has_more = ops.peek().is_some();
            out.push(BucketChunk {
                bucket: b.to_owned(),
                ops: taken,
                has_more,
            });
            if has_more {
                break;
            }
        }
        Ok(out)
    }

    async fn compaction_candidates(
        &self,
        id: DeploymentId,
        min_superseded: i64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CompactionCandidate>> {
        let inner = self.lock();
        let Some(d) = inner.deployments.get(&id) else {
            return Ok(Vec::new());
        };
        let range = match after {
            Some(a) => d
                .data
                .buckets
                .range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => d.data.buckets.range::<str, _>(..),
        };
        Ok(range
            .filter(|(_, log)| log.superseded >= min_superseded)
            .take(limit)
            .map(|(bucket, log)| CompactionCandidate {
                bucket: bucket.clone(),
                superseded: log.superseded,
            })
            .collect())
    }

    async fn compact_bucket(
        &self,
        id: DeploymentId,
        bucket: &str,
        limits: &CompactLimits,
    ) -> Result<CompactStats> {
        // Batches apply their ops at commit under this lock, so the whole bucket is compacted
        // against one committed checkpoint.
        let mut inner = self.lock();
        let d = dep_mut(&mut inner, id)?;
        let through = match (d.state, d.served_checkpoint()) {
            (DeploymentState::Terminated, _) | (_, None) => return Ok(CompactStats::default()),
            (_, Some(c)) => c.op_id,
        };
        let Some(log) = d.data.buckets.get_mut(bucket) else {
            return Ok(CompactStats::default());
        };
        let done = compact_log(&mut log.ops, through, limits.key_memory);
        log.superseded = 0;
        if done.moved == 0 && done.removed == 0 {
            return Ok(CompactStats::default());
        }
        log.count -= i64::try_from(done.removed).unwrap_or(i64::MAX);
        log.compacted_at = log.compacted_at.max(through);
        Ok(CompactStats {
            buckets: 1,
            ops_moved: done.moved,
            ops_removed: done.removed,
            bytes_reclaimed: done.bytes,
            buckets_busy: 0,
        })
    }

    async fn compaction_points(
        &self,
        id: DeploymentId,
        buckets: &[String],
    ) -> Result<HashMap<String, OpId>> {
        let inner = self.lock();
        let Some(d) = inner.deployments.get(&id) else {
            return Ok(HashMap::new());
        };
        Ok(buckets
            .iter()
            .filter_map(|b| {
                let log = d.data.buckets.get(b)?;
                (log.compacted_at > OpId::ZERO).then(|| (b.clone(), log.compacted_at))
            })
            .collect())
    }

    async fn create_write_checkpoint(
        &self,
        user_id: &str,
        client_id: &str,
        lsn: Lsn,
    ) -> Result<OpId> {
        let mut inner = self.lock();
        let wc = inner
            .write_checkpoints
            .entry((user_id.to_owned(), client_id.to_owned()))
            .or_default();
        wc.last_id = wc.last_id.next();
        wc.updated = std::time::Instant::now();
        let id = wc.last_id;
        write_checkpoint::record(&mut wc.history, id, lsn);
        Ok(id)
    }

    async fn request_checkpoint(
        &self,
        user_id: &str,
        client_id: &str,
        requested: OpId,
        lsn: Lsn,
    ) -> Result<OpId> {
        if requested.0 < 0 {
            return Err(StorageError::InvalidArgument(
                "checkpoint request id must not be negative".into(),
            ));
        }
        let mut inner = self.lock();
        let wc = inner
            .write_checkpoints
            .entry((user_id.to_owned(), client_id.to_owned()))
            .or_default();
        wc.updated = std::time::Instant::now();
        if requested >= wc.last_id {
            wc.last_id = requested;
            write_checkpoint::record(&mut wc.history, requested, lsn);
        }
        Ok(wc.last_id)
    }

    async fn prune_write_checkpoints(
        &self,
        user_id: &str,
        keep: usize,
        max_age: std::time::Duration,
    ) -> Result<u64> {
        let mut inner = self.lock();
        let mut mine: Vec<(std::time::Instant, String)> = inner
            .write_checkpoints
            .iter()
            .filter(|((u, _), _)| u == user_id)
            .map(|((_, c), wc)| (wc.updated, c.clone()))
            .collect();
        // Newest first; the first `keep` young enough stay.
        mine.sort_by_key(|m| std::cmp::Reverse(m.0));
        let mut deleted = 0u64;
        for (i, (updated, client)) in mine.into_iter().enumerate() {
            if i >= keep || updated.elapsed() > max_age {
                inner
                    .write_checkpoints
                    .remove(&(user_id.to_owned(), client));
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn write_checkpoint(
        &self,
        user_id: &str,
        client_id: &str,
        lsn: Lsn,
    ) -> Result<Option<OpId>> {
        let inner = self.lock();
        Ok(inner
            .write_checkpoints
            .get(&(user_id.to_owned(), client_id.to_owned()))
            .and_then(|wc| write_checkpoint::select(&wc.history, lsn)))
    }
}

/// An open in-memory batch: all changes are held here until commit.
struct MemoryBatch {
    storage: MemoryStorage,
    id: DeploymentId,
    _writer: tokio::sync::OwnedMutexGuard<()>,
    /// Last op id allocated (starts at the committed high-water mark).
    last_op: OpId,
    /// The committed high-water mark when the batch began.
    previous: OpId,
    /// New state of every row touched by this batch (`None`: deleted).
    overlay: HashMap<RowKey, Option<RowState>>,
    ops: Vec<(String, OplogEntry)>,
    /// Per bucket, the ops of this batch that supersede an earlier op.
    superseding: HashMap<String, i64>,
    changed_lookups: BTreeSet<Vec<u8>>,
}

impl MemoryBatch {
    fn apply_row(&mut self, inner: &Inner, key: RowKey, change: RowChange) -> Result<()> {
        let d = dep(inner, self.id)?;
        let prev = match self.overlay.get(&key) {
            Some(s) => s.as_ref(),
            None => d.data.rows.get(&key),
        };
        let sk = subkey(&key.0, &key.1);
        let diff = diff_row(prev, change, &sk);
        for op in diff.ops {
            if op.supersedes {
                *self.superseding.entry(op.bucket.clone()).or_default() += 1;
            }
            self.last_op = self.last_op.next();
            let entry = OplogEntry {
                op_id: self.last_op,
                op: op.op,
                object_type: Some(op.table),
                object_id: Some(op.id),
                checksum: op.checksum,
                subkey: Some(sk.clone()),
                data: op.data,
            };
            self.ops.push((op.bucket, entry));
        }
        self.changed_lookups.extend(diff.changed_lookups);
        if prev.is_some() || diff.new_state.is_some() {
            self.overlay.insert(key, diff.new_state);
        }
        Ok(())
    }
}

#[async_trait]
impl StorageBatch for MemoryBatch {
    async fn save(&mut self, ops: Vec<BatchOperation>) -> Result<()> {
        let storage = self.storage.clone();
        let inner = storage.lock();
        for op in ops {
            match op {
                BatchOperation::Row(row) => {
                    // Rows are known by their stored keys, as in Postgres (`keys.rs`).
                    let key = keys::row_key(&row.key).into_owned();
                    self.apply_row(&inner, (row.source_table, key), row.change)?;
                }
                BatchOperation::Truncate { source_table } => {
                    let d = dep(&inner, self.id)?;
                    let mut keys: BTreeSet<RowKey> = d
                        .data
                        .rows
                        .keys()
                        .filter(|(t, _)| *t == source_table)
                        .cloned()
                        .collect();
                    keys.extend(
                        self.overlay
                            .iter()
                            .filter(|((t, _), s)| *t == source_table && s.is_some())
                            .map(|(k, _)| k.clone()),
                    );
                    for key in keys {
                        self.apply_row(&inner, key, RowChange::Delete)?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn current_rows(
        &mut self,
        source_table: &str,
        keys: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Vec<u8>>> {
        let inner = self.storage.lock();
        let d = dep(&inner, self.id)?;
        let mut out = HashMap::new();
        for k in keys {
            let key = (source_table.to_owned(), keys::row_key(k).into_owned());
            let state = match self.overlay.get(&key) {
                Some(state) => state.as_ref(),
                None => d.data.rows.get(&key),
            };
            if let Some(state) = state {
                out.insert(k.clone(), state.row.clone());
            }
        }
        Ok(out)
    }

    async fn commit(self: Box<Self>, lsn: Lsn) -> Result<CheckpointEvent> {
        let this = *self;
        let mut inner = this.storage.lock();
        let d = dep_mut(&mut inner, this.id)?;
        if d.state == DeploymentState::Terminated {
            return Err(StorageError::InvalidState {
                id: this.id,
                state: d.state,
            });
        }
        let data = &mut d.data;
        for (key, new_state) in this.overlay {
            if let Some(old) = data.rows.remove(&key) {
                for p in &old.parameters {
                    if let Some(m) = data.lookups.get_mut(&p.lookup) {
                        m.remove(&key);
                        if m.is_empty() {
                            data.lookups.remove(&p.lookup);
                        }
                    }
                }
            }
            if let Some(state) = new_state {
                for p in &state.parameters {
                    data.lookups
                        .entry(p.lookup.clone())
                        .or_default()
                        .entry(key.clone())
                        .or_default()
                        .push(p.result.clone());
                }
                data.rows.insert(key, state);
            }
        }
        let ops = if this.ops.len() <= crate::EVENT_OPS_MAX {
            CommitOps::collect(this.ops.iter().cloned()).map(Arc::new)
        } else {
            None
        };
        let mut changed_buckets = BTreeSet::new();
        for (bucket, entry) in this.ops {
            let log = data.buckets.entry(bucket.clone()).or_default();
            log.checksum += entry.checksum;
            log.count += 1;
            log.last_op = entry.op_id;
            log.ops.push(entry);
            changed_buckets.insert(bucket);
        }
        for (bucket, n) in this.superseding {
            if let Some(log) = data.buckets.get_mut(&bucket) {
                log.superseded += n;
            }
        }
        let checkpoint = StorageCheckpoint {
            op_id: this.last_op,
            lsn,
        };
        d.last_checkpoint = Some(checkpoint);
        d.resume_lsn = Some(lsn);
        Ok(CheckpointEvent {
            deployment: this.id,
            checkpoint,
            previous: this.previous,
            changed_buckets: changed_buckets.into_iter().collect(),
            changed_lookups: this.changed_lookups.into_iter().collect(),
            all_lookups_changed: false,
            ops,
        })
    }
}
