//! The replicator's write path: one storage transaction per source transaction (or per group
//! of consecutive source transactions the replicator commits together).
//!
//! `save` only queues operations; every [`CHUNK_ROWS`] rows (or [`CHUNK_BYTES`]) the queue is
//! processed as a chunk:
//! 1. one query loads the stored state of every source row in the chunk not already known;
//! 2. each operation is diffed ([`crate::diff`]) against the latest state (the chunk's own
//!    overlay first), allocating op ids in order;
//! 3. the chunk is flushed into the open transaction (`batch/write.rs`): ops by binary `COPY`
//!    into `bucket_data`, new current rows by binary `COPY`, changed ones by one
//!    `UPDATE … FROM unnest(…)`, deleted ones by one `DELETE … USING unnest(…)`, parameter rows
//!    likewise, and the chunk's per-bucket checksum/count deltas by one upsert into
//!    `bucket_state`.
//!
//! The flush of a chunk runs in a background task while the next chunk is queued, loaded and
//! diffed (at most one flush in flight; the next one starts after it). Rows of the chunk being
//! flushed are diffed against its in-memory final states, never re-read, so the order in which
//! the load query and the flush statements reach the server does not matter.
//!
//! So memory stays bounded by two chunks however large the source transaction is. `commit`
//! flushes the rest, stores the op-id high-water mark and LSN on the deployment row, notifies
//! [`super::CHECKPOINT_CHANNEL`] and commits. The deployment row stays locked (`FOR UPDATE`)
//! for the whole batch, which makes the replicator the single writer. A batch dropped without
//! commit takes its connection out of the pool and closes it, so the server rolls back.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::{Object, Pool};
use riptide_protocol::{Checksum, Lsn, OpId, OpType, OplogEntry};
use tokio::task::JoinHandle;

use super::lease::{FENCE_CHECK, Fence};
use super::{CHECKPOINT_CHANNEL, to_pg_lsn};
use crate::diff::{RowState, decode_buckets, decode_parameters, diff_row, subkey};
use crate::keys;
use crate::notifications;
use crate::{
    BatchOperation, CheckpointEvent, CommitOps, DeploymentId, DeploymentState, EVENT_OPS_MAX,
    Result, RowChange, StorageBatch, StorageCheckpoint, StorageError,
};

/// Rows queued before a chunk is processed and flushed (default; see
/// `PgStorage::with_batch_chunk_rows`). Also the page size of a truncate.
pub(super) const CHUNK_ROWS: usize = 5_000;
/// Approximate queued bytes (row data + bucket data) before a chunk is processed and flushed.
const CHUNK_BYTES: usize = 8 * 1024 * 1024;

mod write;

use write::write_chunk;

type RowKey = (String, Vec<u8>);

/// The latest known state of one source row within the current chunk.
struct Entry {
    state: Option<RowState>,
    /// The row exists in `current_data` (as flushed so far in this transaction).
    in_db: bool,
    /// `state` differs from what `current_data` holds.
    dirty: bool,
    /// The row's parameter rows differ from what `parameter_lookups` holds.
    params_dirty: bool,
}

struct PendingOp {
    bucket: String,
    op_id: i64,
    op: OpType,
    table: String,
    id: String,
    subkey: String,
    checksum: Checksum,
    data: Option<String>,
}

#[derive(Default)]
struct Chunk {
    overlay: HashMap<RowKey, Entry>,
    ops: Vec<PendingOp>,
    /// bucket → (checksum, count, last op id, superseding ops) of this chunk's ops.
    deltas: HashMap<String, (Checksum, i64, i64, i64)>,
}

/// The batch's connection, inside its open transaction. Shared with the flush task. When the
/// last reference goes without `committed` set, the connection is taken out of the pool and
/// closed, so the server rolls back: a connection with an open transaction never returns to
/// the pool.
struct TxConn {
    client: Option<Object>,
    committed: AtomicBool,
}

impl TxConn {
    fn client(&self) -> Result<&Object> {
        self.client
            .as_ref()
            .ok_or_else(|| StorageError::Corrupt("storage batch connection is gone".into()))
    }
}

impl Drop for TxConn {
    fn drop(&mut self) {
        if !self.committed.load(Ordering::Acquire)
            && let Some(client) = self.client.take()
        {
            drop(Object::take(client));
        }
    }
}

pub(super) struct PgBatch {
    conn: Arc<TxConn>,
    /// The chunk being written in the background, if any.
    inflight: Option<JoinHandle<Result<()>>>,
    /// The final row states of the chunk in flight (or last written): rows found here are
    /// diffed against these, not re-read.
    prev: Option<Arc<Chunk>>,
    chunk_rows: usize,
    id: DeploymentId,
    last_op: i64,
    queue: Vec<BatchOperation>,
    queue_bytes: usize,
    chunk: Chunk,
    changed_buckets: BTreeSet<String>,
    changed_lookups: BTreeSet<Vec<u8>>,
    /// The committed op-id high-water mark when the batch began.
    previous: i64,
    /// Every op written so far while there are at most `EVENT_OPS_MAX` (published with the
    /// commit's event); `None` once there are more.
    recent: Option<Vec<(String, OplogEntry)>>,
    /// A write failed: the transaction is aborted and must not be committed.
    failed: bool,
    /// The lease the commit checks (`lease.rs`), if the storage is fenced.
    fence: Option<Fence>,
    /// The writing process, named in the commit's notification.
    node: Arc<str>,
}

impl Drop for PgBatch {
    fn drop(&mut self) {
        // Stop writing into a transaction nobody will commit; the task's reference to the
        // connection goes with it and `TxConn` closes the connection.
        if let Some(task) = self.inflight.take() {
            task.abort();
        }
    }
}

fn estimate(op: &BatchOperation) -> usize {
    match op {
        BatchOperation::Row(r) => {
            let change = match &r.change {
                RowChange::Upsert {
                    row,
                    buckets,
                    parameters,
                } => {
                    row.len()
                        + buckets
                            .iter()
                            .map(|b| {
                                b.bucket.len() + b.table.len() + b.id.len() + b.data.len() + 64
                            })
                            .sum::<usize>()
                        + parameters
                            .iter()
                            .map(|p| p.lookup.len() + p.result.len() + 32)
                            .sum::<usize>()
                }
                RowChange::Delete => 0,
            };
            r.source_table.len() + r.key.len() + change + 64
        }
        BatchOperation::Truncate { .. } => 64,
    }
}

impl PgBatch {
    pub(super) async fn begin(
        pool: &Pool,
        id: DeploymentId,
        chunk_rows: usize,
        fence: Option<Fence>,
        node: Arc<str>,
    ) -> Result<PgBatch> {
        let client = pool.get().await?;
        match &fence {
            // One round trip, as `BEGIN` alone (see `Fence::duration`).
            Some(f) => {
                client
                    .batch_execute(&format!(
                        "BEGIN; SET LOCAL idle_in_transaction_session_timeout = {}",
                        f.duration.as_millis().max(1)
                    ))
                    .await?
            }
            None => client.batch_execute("BEGIN").await?,
        }
        // From here on, dropping `batch` closes the connection (rolls back).
        let mut batch = PgBatch {
            conn: Arc::new(TxConn {
                client: Some(client),
                committed: AtomicBool::new(false),
            }),
            inflight: None,
            prev: None,
            chunk_rows: chunk_rows.max(1),
            id,
            last_op: 0,
            queue: Vec::new(),
            queue_bytes: 0,
            chunk: Chunk::default(),
            changed_buckets: BTreeSet::new(),
            changed_lookups: BTreeSet::new(),
            previous: 0,
            recent: Some(Vec::new()),
            failed: false,
            fence,
            node,
        };
        let client = batch.conn.client()?;
        let stmt = client
            .prepare_cached(
                "SELECT state, last_op_id FROM riptide.deployments WHERE id = $1 FOR UPDATE",
            )
            .await?;
        let row = client
            .query_opt(&stmt, &[&id])
            .await?
            .ok_or(StorageError::UnknownDeployment(id))?;
        let state: String = row.try_get(0)?;
        let state = DeploymentState::parse(&state)
            .ok_or_else(|| StorageError::Corrupt(format!("unknown deployment state {state:?}")))?;
        if state == DeploymentState::Terminated {
            return Err(StorageError::InvalidState { id, state });
        }
        batch.last_op = row.try_get(1)?;
        batch.previous = batch.last_op;
        Ok(batch)
    }

    /// Waits for the chunk in flight, if any.
    async fn wait_inflight(&mut self) -> Result<()> {
        if let Some(task) = self.inflight.take() {
            task.await.map_err(|_| StorageError::BatchFailed)??;
        }
        Ok(())
    }

    /// Starts writing the current chunk in the background (after the one in flight).
    async fn start_flush(&mut self) -> Result<()> {
        self.wait_inflight().await?;
        let chunk = Arc::new(std::mem::take(&mut self.chunk));
        if chunk.ops.is_empty() && chunk.overlay.values().all(|e| !e.dirty) {
            // Nothing to write; everything before is written.
            self.prev = None;
            return Ok(());
        }
        let (conn, id, task_chunk) = (self.conn.clone(), self.id, chunk.clone());
        self.inflight = Some(tokio::spawn(async move {
            write_chunk(&conn, id, &task_chunk).await
        }));
        self.prev = Some(chunk);
        Ok(())
    }

    /// Writes the current chunk and waits until everything is written.
    async fn flush(&mut self) -> Result<()> {
        self.start_flush().await?;
        self.wait_inflight().await?;
        self.prev = None;
        Ok(())
    }

    /// Processes everything queued and starts writing it.
    async fn process_queue(&mut self) -> Result<()> {
        let queue = std::mem::take(&mut self.queue);
        self.queue_bytes = 0;
        let mut rows = Vec::new();
        for op in queue {
            match op {
                BatchOperation::Row(r) => rows.push((r.source_table, r.key, r.change)),
                BatchOperation::Truncate { source_table } => {
                    self.apply_rows(std::mem::take(&mut rows)).await?;
                    self.flush().await?;
                    self.truncate(&source_table).await?;
                }
            }
        }
        self.apply_rows(rows).await?;
        self.start_flush().await
    }

    /// Diffs rows into the current chunk, first loading the stored state of unknown keys.
    async fn apply_rows(&mut self, rows: Vec<(String, Vec<u8>, RowChange)>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tables = Vec::new();
        let mut keys = Vec::new();
        let mut seen: HashSet<(&str, &[u8])> = HashSet::with_capacity(rows.len());
        for (t, k, _) in &rows {
            if !seen.insert((t.as_str(), k.as_slice())) {
                continue;
            }
            let key = (t.clone(), k.clone());
            let in_prev = self
                .prev
                .as_ref()
                .is_some_and(|p| p.overlay.contains_key(&key));
            if !in_prev && !self.chunk.overlay.contains_key(&key) {
                tables.push(t.as_str());
                keys.push(k.as_slice());
            }
        }
        if !keys.is_empty() {
            let client = self.conn.client()?;
            let stmt = client
                .prepare_cached(
                    "SELECT c.source_table, c.source_key, c.data, c.buckets, c.lookups \
                     FROM unnest($2::text[], $3::bytea[]) AS k(source_table, source_key) \
                     JOIN riptide.current_data c \
                       ON c.deployment_id = $1 AND c.source_table = k.source_table \
                      AND c.source_key = k.source_key",
                )
                .await?;
            let found = client.query(&stmt, &[&self.id, &tables, &keys]).await?;
            for row in found {
                let state = RowState {
                    row: row.try_get(2)?,
                    buckets: decode_buckets(row.try_get(3)?)?,
                    parameters: decode_parameters(row.try_get(4)?)?,
                };
                let key: RowKey = (row.try_get(0)?, row.try_get(1)?);
                self.chunk.overlay.insert(
                    key,
                    Entry {
                        state: Some(state),
                        in_db: true,
                        dirty: false,
                        params_dirty: false,
                    },
                );
            }
        }
        for (table, key, change) in rows {
            self.apply_row((table, key), change);
        }
        Ok(())
    }

    fn apply_row(&mut self, key: RowKey, change: RowChange) {
        let sk = subkey(&key.0, &key.1);
        let (ops, changed_lookups) = if let Some(entry) = self.chunk.overlay.get_mut(&key) {
            if entry.state.is_none() && matches!(change, RowChange::Delete) {
                return;
            }
            let diff = diff_row(entry.state.as_ref(), change, &sk);
            if diff.parameters_changed() {
                entry.params_dirty = true;
            }
            entry.state = diff.new_state;
            entry.dirty = true;
            (diff.ops, diff.changed_lookups)
        } else {
            // Not loaded: either written by the chunk in flight (its final state is what the
            // database will hold) or new.
            let prev = self
                .prev
                .as_ref()
                .and_then(|p| p.overlay.get(&key))
                .and_then(|e| e.state.as_ref());
            if prev.is_none() && matches!(change, RowChange::Delete) {
                return;
            }
            let in_db = prev.is_some();
            let diff = diff_row(prev, change, &sk);
            let params_dirty = diff.parameters_changed();
            self.chunk.overlay.insert(
                key,
                Entry {
                    state: diff.new_state,
                    in_db,
                    dirty: true,
                    params_dirty,
                },
            );
            (diff.ops, diff.changed_lookups)
        };
        self.changed_lookups.extend(changed_lookups);
        for op in ops {
            self.last_op += 1;
            let delta =
                self.chunk
                    .deltas
                    .entry(op.bucket.clone())
                    .or_insert((Checksum::ZERO, 0, 0, 0));
            delta.0 += op.checksum;
            delta.1 += 1;
            delta.2 = self.last_op;
            delta.3 += i64::from(op.supersedes);
            if !self.changed_buckets.contains(&op.bucket) {
                self.changed_buckets.insert(op.bucket.clone());
            }
            if let Some(recent) = &mut self.recent {
                if recent.len() < EVENT_OPS_MAX {
                    recent.push((
                        op.bucket.clone(),
                        OplogEntry {
                            op_id: OpId(self.last_op),
                            op: op.op,
                            object_type: Some(op.table.clone()),
                            object_id: Some(op.id.clone()),
                            checksum: op.checksum,
                            subkey: Some(sk.clone()),
                            data: op.data.clone(),
                        },
                    ));
                } else {
                    self.recent = None;
                }
            }
            self.chunk.ops.push(PendingOp {
                bucket: op.bucket,
                op_id: self.last_op,
                op: op.op,
                table: op.table,
                id: op.id,
                subkey: sk.clone(),
                checksum: op.checksum,
                data: op.data,
            });
        }
    }

    /// The rows of `keys` as this transaction sees them, once the queue is processed: the chunk
    /// in flight holds the final states of its rows (written or being written); every other row
    /// is as flushed into the open transaction, which a query on it sees.
    async fn rows_as_seen(
        &self,
        source_table: &str,
        keys: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Vec<u8>>> {
        let mut out = HashMap::new();
        let mut query: Vec<(Vec<u8>, &Vec<u8>)> = Vec::new();
        for key in keys {
            let stored = keys::row_key(key).into_owned();
            let row_key = (source_table.to_owned(), stored);
            let known = self
                .chunk
                .overlay
                .get(&row_key)
                .or_else(|| self.prev.as_ref().and_then(|p| p.overlay.get(&row_key)));
            match known {
                Some(entry) => {
                    if let Some(state) = &entry.state {
                        out.insert(key.clone(), state.row.clone());
                    }
                }
                None => query.push((row_key.1, key)),
            }
        }
        if query.is_empty() {
            return Ok(out);
        }
        let back: HashMap<&[u8], &Vec<u8>> =
            query.iter().map(|(s, k)| (s.as_slice(), *k)).collect();
        let stored: Vec<&[u8]> = query.iter().map(|(s, _)| s.as_slice()).collect();
        let client = self.conn.client()?;
        let stmt = client
            .prepare_cached(
                "SELECT source_key, data FROM riptide.current_data \
                 WHERE deployment_id = $1 AND source_table = $2 AND source_key = ANY($3)",
            )
            .await?;
        for row in client
            .query(&stmt, &[&self.id, &source_table, &stored])
            .await?
        {
            let key: Vec<u8> = row.try_get(0)?;
            if let Some(full) = back.get(key.as_slice()) {
                out.insert((*full).clone(), row.try_get(1)?);
            }
        }
        Ok(out)
    }

    /// Turns every stored row of `source_table` into a delete, a page at a time. The chunk
    /// must be flushed before (so `current_data` is the whole truth).
    async fn truncate(&mut self, source_table: &str) -> Result<()> {
        let page = i64::try_from(self.chunk_rows).unwrap_or(i64::MAX);
        loop {
            let client = self.conn.client()?;
            let stmt = client
                .prepare_cached(
                    "SELECT source_key, data, buckets, lookups FROM riptide.current_data \
                     WHERE deployment_id = $1 AND source_table = $2 \
                     ORDER BY source_key LIMIT $3",
                )
                .await?;
            let rows = client
                .query(&stmt, &[&self.id, &source_table, &page])
                .await?;
            if rows.is_empty() {
                return Ok(());
            }
            let mut keys = Vec::with_capacity(rows.len());
            for row in rows {
                let key: Vec<u8> = row.try_get(0)?;
                let state = RowState {
                    row: row.try_get(1)?,
                    buckets: decode_buckets(row.try_get(2)?)?,
                    parameters: decode_parameters(row.try_get(3)?)?,
                };
                self.chunk.overlay.insert(
                    (source_table.to_owned(), key.clone()),
                    Entry {
                        state: Some(state),
                        in_db: true,
                        dirty: false,
                        params_dirty: false,
                    },
                );
                keys.push(key);
            }
            for key in keys {
                self.apply_row((source_table.to_owned(), key), RowChange::Delete);
            }
            self.flush().await?;
        }
    }
}

#[async_trait::async_trait]
impl StorageBatch for PgBatch {
    async fn save(&mut self, ops: Vec<BatchOperation>) -> Result<()> {
        if self.failed {
            return Err(StorageError::BatchFailed);
        }
        for mut op in ops {
            // From here on a row is known by its stored key (`keys.rs`).
            if let BatchOperation::Row(r) = &mut op
                && let Cow::Owned(stored) = keys::row_key(&r.key)
            {
                r.key = stored;
            }
            self.queue_bytes += estimate(&op);
            self.queue.push(op);
            if (self.queue.len() >= self.chunk_rows || self.queue_bytes >= CHUNK_BYTES)
                && let Err(e) = self.process_queue().await
            {
                self.failed = true;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn current_rows(
        &mut self,
        source_table: &str,
        keys: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Vec<u8>>> {
        if self.failed {
            return Err(StorageError::BatchFailed);
        }
        if let Err(e) = self.process_queue().await {
            self.failed = true;
            return Err(e);
        }
        match self.rows_as_seen(source_table, keys).await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    async fn commit(mut self: Box<Self>, lsn: Lsn) -> Result<CheckpointEvent> {
        if self.failed {
            return Err(StorageError::BatchFailed);
        }
        self.process_queue().await?;
        self.wait_inflight().await?;
        let client = self.conn.client()?;
        let pg_lsn = to_pg_lsn(lsn);
        store_checkpoint(client, self.fence.as_ref(), self.id, self.last_op, pg_lsn).await?;
        let event = CheckpointEvent {
            deployment: self.id,
            checkpoint: StorageCheckpoint {
                op_id: OpId(self.last_op),
                lsn,
            },
            previous: OpId(self.previous),
            changed_buckets: std::mem::take(&mut self.changed_buckets)
                .into_iter()
                .collect(),
            changed_lookups: std::mem::take(&mut self.changed_lookups)
                .into_iter()
                .collect(),
            all_lookups_changed: false,
            ops: self
                .recent
                .take()
                .and_then(CommitOps::collect)
                .map(Arc::new),
        };
        // Delivered to listeners at commit, in commit order (`notifications.rs`).
        let payload = notifications::checkpoint_payload(&self.node, &event);
        let stmt = client.prepare_cached(notifications::NOTIFY_SQL).await?;
        client
            .execute(&stmt, &[&CHECKPOINT_CHANNEL, &payload])
            .await?;
        client.batch_execute("COMMIT").await?;
        // Committed: the connection goes back to the pool when the batch is dropped.
        self.conn.committed.store(true, Ordering::Release);
        Ok(event)
    }
}

/// Stores the commit's op-id high-water mark and LSN on the deployment row. Fenced: the same
/// statement checks the lease epoch (its share lock held to commit, `lease.rs`) and records it
/// (`deployments.lease_epoch`), so fencing costs no round trip; no row updated means the lease
/// was taken over.
async fn store_checkpoint(
    client: &Object,
    fence: Option<&Fence>,
    id: DeploymentId,
    last_op: i64,
    lsn: postgres_types::PgLsn,
) -> Result<()> {
    const SET: &str = "UPDATE riptide.deployments SET last_op_id = $2, last_checkpoint_lsn = $3, \
                       resume_lsn = $3, last_commit_at = now(), updated_at = now() WHERE id = $1";
    let Some(fence) = fence else {
        let stmt = client.prepare_cached(SET).await?;
        client.execute(&stmt, &[&id, &last_op, &lsn]).await?;
        return Ok(());
    };
    let fenced = format!(
        "WITH fence AS ({}) {} AND EXISTS (SELECT 1 FROM fence)",
        FENCE_CHECK.replace("$1", "$4").replace("$2", "$5"),
        SET.replace(" WHERE id = $1", ", lease_epoch = $5 WHERE id = $1")
    );
    let stmt = client.prepare_cached(&fenced).await?;
    let n = client
        .execute(&stmt, &[&id, &last_op, &lsn, &fence.lease, &fence.epoch])
        .await?;
    if n == 0 {
        return Err(fence.lost());
    }
    Ok(())
}
