//! Compaction of one bucket in Postgres (rules in [`crate::compaction::scan`]).
//!
//! 1. Read, without locking, the deployment's checkpoint op id: compaction considers ops up to
//!    it (`through`), which the replicator never touches again (it only appends newer ops).
//! 2. Scan the bucket newest first in pages of `scan_page` ops (plain reads), collecting the ops
//!    that become MOVE; those above the leading run are rewritten, `ops_per_transaction` per
//!    transaction (the ones in the run are left to the CLEAR: a MOVE first would cost a row
//!    version each).
//! 3. Replace the leading run with a CLEAR, `ops_per_transaction` ops per transaction: delete
//!    the run's first ops (the previous batch's CLEAR among them) and insert one CLEAR at the
//!    highest deleted op id with their checksum sum.
//! 4. Subtract the superseded ops seen at the start from the bucket's counter.
//!
//! Every rewriting transaction also raises the bucket's `compacted_at_op` to `through`, so a
//! stream that read the bucket for an older checkpoint learns not to complete it, and adjusts
//! `op_count`; the checksum total does not change. Its statements touch only old `bucket_data`
//! rows and, last, the bucket's `bucket_state` row: a replicator batch writing the same bucket
//! waits for at most that short tail, and the deployment row is never locked.
//!
//! Locks: each transaction takes the deployment's data lock shared ([`DATA_LOCK`];
//! `terminate` and `reset_snapshot` take it exclusive, so compaction never writes into data
//! being deleted) and the bucket's compaction lock (two compactions of one bucket take turns),
//! checks that the deployment still has its checkpoint, then locks the bucket's `bucket_state`
//! row, waiting at most 250 ms: when an open replication transaction has written the bucket
//! for longer, compaction leaves the bucket for its next round ([`CompactStats::buckets_busy`])
//! instead of waiting.

use deadpool_postgres::{Object, Pool, Transaction};
use riptide_protocol::{Checksum, OpId};
use tokio_postgres::error::SqlState;

use super::checksum_from_db;
use super::lease::{self, Fence};
use super::reads::op_type;
use crate::compaction::scan::BucketScan;
use crate::failpoints::failpoint;
use crate::{
    CompactLimits, CompactStats, CompactionCandidate, DeploymentId, DeploymentState, Result,
    StorageError,
};

/// Advisory lock class (two-key form) of a deployment's data: shared by compaction
/// transactions, exclusive for `terminate` and `reset_snapshot`. Second key: the deployment id.
pub(super) const DATA_LOCK: i32 = 0x5250_4401;
/// Advisory lock class of one bucket's compaction. Second key: a hash of deployment and bucket.
const BUCKET_LOCK: i32 = 0x5250_4302;
/// How long a compaction transaction waits for the bucket's `bucket_state` row, which a
/// replication transaction that wrote the bucket holds until it commits.
const BUSY_WAIT: &str = "SET LOCAL lock_timeout = '250ms'";

/// The second key of [`DATA_LOCK`] for a deployment (ids beyond `i32` wrap: a collision only
/// makes two deployments wait for each other).
pub(super) fn data_lock_key(id: DeploymentId) -> i32 {
    id as i32
}

pub(super) async fn candidates(
    pool: &Pool,
    id: DeploymentId,
    min_superseded: i64,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<CompactionCandidate>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT bucket, superseded FROM riptide.bucket_state \
             WHERE deployment_id = $1 AND superseded >= $2 AND ($3::text IS NULL OR bucket > $3) \
             ORDER BY bucket LIMIT $4",
        )
        .await?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client
        .query(&stmt, &[&id, &min_superseded, &after, &limit])
        .await?;
    rows.iter()
        .map(|r| {
            Ok(CompactionCandidate {
                bucket: r.try_get(0)?,
                superseded: r.try_get(1)?,
            })
        })
        .collect()
}

pub(super) async fn points(
    pool: &Pool,
    id: DeploymentId,
    buckets: &[String],
) -> Result<std::collections::HashMap<String, OpId>> {
    if buckets.is_empty() {
        return Ok(Default::default());
    }
    // Bucket names as stored (a long one hashed, `crate::keys`), mapped back to the names asked.
    let stored = super::reads::Stored::new(buckets.iter().map(String::as_str), crate::keys::bucket);
    let forms: Vec<&str> = stored.forms.iter().map(|b| b.as_ref()).collect();
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT bucket, compacted_at_op FROM riptide.bucket_state \
             WHERE deployment_id = $1 AND bucket = ANY($2) AND compacted_at_op > 0",
        )
        .await?;
    let rows = client.query(&stmt, &[&id, &forms]).await?;
    rows.iter()
        .map(|r| Ok((stored.full(r.try_get(0)?), OpId(r.try_get(1)?))))
        .collect()
}

/// A rewriting transaction, or why there is none.
enum Begin<'c> {
    Tx(Transaction<'c>),
    /// The deployment was terminated or reset, or a replication transaction is writing the
    /// bucket: leave it for now.
    Stop,
}

/// One bucket being compacted.
struct Job<'a> {
    /// The lease every rewriting transaction checks (`lease.rs`), if fenced.
    fence: Option<&'a Fence>,
    id: DeploymentId,
    bucket: &'a str,
    /// Ops up to this op id are considered.
    through: i64,
    /// The deployment's `data_epoch` at the start (`reset_snapshot` raises it).
    epoch: i64,
    per_tx: usize,
    stats: CompactStats,
}

pub(super) async fn compact_bucket(
    pool: &Pool,
    fence: Option<&Fence>,
    id: DeploymentId,
    bucket: &str,
    limits: &CompactLimits,
) -> Result<CompactStats> {
    let mut client = pool.get().await?;
    let start = client
        .query_opt(
            "SELECT d.state, d.snapshot_done AND d.last_checkpoint_lsn IS NOT NULL, \
                    d.last_op_id, s.superseded, d.data_epoch \
             FROM riptide.deployments d \
             LEFT JOIN riptide.bucket_state s ON s.deployment_id = d.id AND s.bucket = $2 \
             WHERE d.id = $1",
            &[&id, &bucket],
        )
        .await?
        .ok_or(StorageError::UnknownDeployment(id))?;
    let state: String = start.try_get(0)?;
    let served: bool = start.try_get(1)?;
    let superseded: Option<i64> = start.try_get(3)?;
    let Some(superseded) = superseded else {
        return Ok(CompactStats::default());
    };
    if state == DeploymentState::Terminated.as_str() || !served {
        return Ok(CompactStats::default());
    }
    let mut job = Job {
        fence,
        id,
        bucket,
        through: start.try_get(2)?,
        epoch: start.try_get(4)?,
        per_tx: limits.ops_per_transaction.max(2),
        stats: CompactStats::default(),
    };

    let finished = match job.moves(&mut client, limits).await? {
        None => false,
        Some(None) => true,
        Some(Some(top)) => {
            failpoint!("compaction::before_clear");
            job.clears(&mut client, top).await?
        }
    };
    if finished {
        failpoint!("compaction::before_counter");
    }
    if finished && let Begin::Tx(tx) = job.begin(&mut client).await? {
        tx.execute(
            "UPDATE riptide.bucket_state SET superseded = GREATEST(superseded - $3, 0) \
             WHERE deployment_id = $1 AND bucket = $2",
            &[&id, &bucket, &superseded],
        )
        .await?;
        tx.commit().await?;
    }
    if job.stats.ops_moved > 0 || job.stats.ops_removed > 0 {
        job.stats.buckets = 1;
    }
    Ok(job.stats)
}

impl Job<'_> {
    /// Begins a rewriting transaction: takes the locks, checks the deployment still serves a
    /// checkpoint at or after `through` with the data compaction started on (same epoch), and locks the bucket's `bucket_state` row, waiting at
    /// most [`BUSY_WAIT`] (a replication transaction writing the bucket holds it until it
    /// commits).
    async fn begin<'c>(&mut self, client: &'c mut Object) -> Result<Begin<'c>> {
        let tx = client.transaction().await?;
        let lock = tx
            .prepare_cached(
                "SELECT pg_advisory_xact_lock_shared($1, $2), \
                        pg_advisory_xact_lock($3, hashtext($4::text || ':' || $5))",
            )
            .await?;
        tx.execute(
            &lock,
            &[
                &DATA_LOCK,
                &data_lock_key(self.id),
                &BUCKET_LOCK,
                &self.id.to_string(),
                &self.bucket,
            ],
        )
        .await?;
        // A statement after the locks: it sees what a terminate that held them committed.
        let row = tx
            .query_opt(
                "SELECT state, snapshot_done, last_op_id, data_epoch FROM riptide.deployments \
                 WHERE id = $1",
                &[&self.id],
            )
            .await?;
        let usable = match row {
            Some(r) => {
                let state: String = r.try_get(0)?;
                let done: bool = r.try_get(1)?;
                let last: i64 = r.try_get(2)?;
                let epoch: i64 = r.try_get(3)?;
                state != DeploymentState::Terminated.as_str()
                    && done
                    && last >= self.through
                    && epoch == self.epoch
            }
            None => false,
        };
        if !usable {
            return Ok(Begin::Stop);
        }
        // Its share lock is held to commit: a takeover waits for this transaction.
        lease::check(self.fence, &tx).await?;
        // Waits briefly: replication transactions on a busy bucket are short, and the lock
        // comes free between them; a long one makes the bucket wait for the next round.
        tx.batch_execute(BUSY_WAIT).await?;
        let stmt = tx
            .prepare_cached(
                "SELECT 1 FROM riptide.bucket_state WHERE deployment_id = $1 AND bucket = $2 \
                 FOR UPDATE",
            )
            .await?;
        match tx.query_opt(&stmt, &[&self.id, &self.bucket]).await {
            Ok(Some(_)) => Ok(Begin::Tx(tx)),
            Ok(None) => Ok(Begin::Stop),
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                self.stats.buckets_busy = 1;
                Ok(Begin::Stop)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Pass 1: scans the bucket newest first and rewrites superseded ops as MOVE, except those
    /// the CLEAR will replace (held in memory until the scan ends, up to `key_memory / 16` of
    /// them; beyond that, the ones held are written). Returns the op id through which the
    /// leading run can become a CLEAR (`Some(None)`: nothing to clear; `None`: stopped, see
    /// [`Begin::Stop`]).
    async fn moves(
        &mut self,
        client: &mut Object,
        limits: &CompactLimits,
    ) -> Result<Option<Option<OpId>>> {
        let mut scan = BucketScan::new(limits.key_memory);
        let page = i64::try_from(limits.scan_page.max(1)).unwrap_or(i64::MAX);
        let mut below = self.through.saturating_add(1);
        let held = self.per_tx.max(limits.key_memory / 16);
        let mut pending: Vec<(i64, u64)> = Vec::new();
        loop {
            let stmt = client
                .prepare_cached(
                    "SELECT op_id, op, object_type, object_id, subkey, \
                            (COALESCE(octet_length(object_type), 0) \
                             + COALESCE(octet_length(object_id), 0) \
                             + COALESCE(octet_length(subkey), 0) \
                             + COALESCE(octet_length(data), 0))::int8 \
                     FROM riptide.bucket_data \
                     WHERE deployment_id = $1 AND bucket = $2 AND op_id < $3 \
                     ORDER BY op_id DESC LIMIT $4",
                )
                .await?;
            let rows = client
                .query(&stmt, &[&self.id, &self.bucket, &below, &page])
                .await?;
            for row in &rows {
                let op_id: i64 = row.try_get(0)?;
                let op = op_type(row.try_get(1)?)?;
                let object_type: Option<&str> = row.try_get(2)?;
                let object_id: Option<&str> = row.try_get(3)?;
                let subkey: Option<&str> = row.try_get(4)?;
                let key = match (object_type, object_id, subkey) {
                    (Some(t), Some(i), Some(s)) => Some((t, i, s)),
                    _ => None,
                };
                if scan.visit(OpId(op_id), op, key) {
                    let bytes: i64 = row.try_get(5)?;
                    pending.push((op_id, u64::try_from(bytes).unwrap_or(0)));
                    if pending.len() >= held {
                        if !self.write_moves(client, &pending).await? {
                            return Ok(None);
                        }
                        pending.clear();
                    }
                }
                below = op_id;
            }
            if rows.len() < usize::try_from(page).unwrap_or(usize::MAX) {
                break;
            }
        }
        let top = scan.clear_through();
        pending.retain(|(op_id, _)| top.is_none_or(|top| *op_id > top.0));
        if !self.write_moves(client, &pending).await? {
            return Ok(None);
        }
        Ok(Some(top))
    }

    /// Rewrites `moves` (op id, bytes dropped) as MOVEs, `per_tx` per transaction. False:
    /// stopped (see [`Begin::Stop`]).
    async fn write_moves(&mut self, client: &mut Object, moves: &[(i64, u64)]) -> Result<bool> {
        for chunk in moves.chunks(self.per_tx) {
            if !self.write_move_chunk(client, chunk).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn write_move_chunk(
        &mut self,
        client: &mut Object,
        pending: &[(i64, u64)],
    ) -> Result<bool> {
        let Begin::Tx(tx) = self.begin(client).await? else {
            return Ok(false);
        };
        let ids: Vec<i64> = pending.iter().map(|(id, _)| *id).collect();
        let stmt = tx
            .prepare_cached(
                "UPDATE riptide.bucket_data SET op = 'MOVE', object_type = NULL, \
                     object_id = NULL, subkey = NULL, data = NULL \
                 WHERE deployment_id = $1 AND bucket = $2 AND op_id = ANY($3) \
                   AND op IN ('PUT', 'REMOVE') \
                 RETURNING op_id",
            )
            .await?;
        let moved = tx.query(&stmt, &[&self.id, &self.bucket, &ids]).await?;
        let moved: std::collections::HashSet<i64> = moved
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        if !moved.is_empty() {
            self.mark(&tx, 0).await?;
        }
        failpoint!("compaction::before_move_commit");
        tx.commit().await?;
        self.stats.ops_moved += moved.len() as u64;
        self.stats.bytes_reclaimed += pending
            .iter()
            .filter(|(id, _)| moved.contains(id))
            .map(|(_, bytes)| bytes)
            .sum::<u64>();
        failpoint!("compaction::after_move_commit");
        Ok(true)
    }

    /// Raises the bucket's compaction point and lowers its op count by `removed`: the last
    /// statement of a rewriting transaction.
    async fn mark(&self, tx: &Transaction<'_>, removed: i64) -> Result<()> {
        let stmt = tx
            .prepare_cached(
                "UPDATE riptide.bucket_state SET op_count = op_count - $3, \
                     compacted_at_op = GREATEST(compacted_at_op, $4) \
                 WHERE deployment_id = $1 AND bucket = $2",
            )
            .await?;
        tx.execute(&stmt, &[&self.id, &self.bucket, &removed, &self.through])
            .await?;
        Ok(())
    }

    /// Pass 2: replaces the ops up to `top` (each superseded, or a REMOVE/MOVE/CLEAR) with one
    /// CLEAR, a batch of ops per transaction. False: stopped early (see [`Begin::Stop`]).
    async fn clears(&mut self, client: &mut Object, top: OpId) -> Result<bool> {
        let batch = i64::try_from(self.per_tx).unwrap_or(i64::MAX);
        loop {
            let Begin::Tx(tx) = self.begin(client).await? else {
                return Ok(false);
            };
            let stmt = tx
                .prepare_cached(
                    // A range up to the batch's last op id (one index range scan; an `IN` of
                    // a LIMIT subquery can be re-run for every row of the bucket).
                    "DELETE FROM riptide.bucket_data d \
                     WHERE d.deployment_id = $1 AND d.bucket = $2 AND d.op_id <= ( \
                         SELECT max(op_id) FROM ( \
                             SELECT op_id FROM riptide.bucket_data \
                             WHERE deployment_id = $1 AND bucket = $2 AND op_id <= $3 \
                             ORDER BY op_id LIMIT $4) batch) \
                     RETURNING d.op_id, d.checksum, pg_column_size(d.*)::int8",
                )
                .await?;
            let rows = tx
                .query(&stmt, &[&self.id, &self.bucket, &top.0, &batch])
                .await?;
            if rows.len() < 2 {
                // Only the CLEAR of the previous batch (or nothing) is left: done.
                tx.rollback().await?;
                return Ok(true);
            }
            // The scan found every op up to `top` superseded (PUTs included: they are not
            // rewritten as MOVE first) or a REMOVE/MOVE/CLEAR. Ops up to the checkpoint change
            // only by compaction (which the bucket lock serializes) and none are added below it;
            // the data epoch `begin` checks rules out a deployment reset meanwhile.
            let mut checksum = Checksum::ZERO;
            let mut last = 0i64;
            let mut bytes = 0u64;
            for row in &rows {
                let op_id: i64 = row.try_get(0)?;
                checksum += checksum_from_db(row.try_get(1)?)?;
                last = last.max(op_id);
                bytes += u64::try_from(row.try_get::<_, i64>(2)?).unwrap_or(0);
            }
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO riptide.bucket_data (deployment_id, bucket, op_id, op, checksum) \
                     VALUES ($1, $2, $3, 'CLEAR', $4) \
                     RETURNING pg_column_size(riptide.bucket_data.*)::int8",
                )
                .await?;
            let clear_size: i64 = tx
                .query_one(
                    &stmt,
                    &[&self.id, &self.bucket, &last, &i64::from(checksum.value())],
                )
                .await?
                .try_get(0)?;
            let removed = rows.len() as i64 - 1;
            self.mark(&tx, removed).await?;
            failpoint!("compaction::before_clear_commit");
            tx.commit().await?;
            self.stats.ops_removed += removed as u64;
            self.stats.bytes_reclaimed +=
                bytes.saturating_sub(u64::try_from(clear_size).unwrap_or(0));
            failpoint!("compaction::after_clear_commit");
            if last >= top.0 {
                return Ok(true);
            }
        }
    }
}
