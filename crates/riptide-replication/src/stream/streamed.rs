//! Streamed in-progress transactions (pgoutput protocol 2, `streaming 'on'`): Postgres sends a
//! transaction larger than `logical_decoding_work_mem` in blocks (Stream Start … Stop) while
//! it runs, then Stream Commit or Stream Abort. Other transactions, and blocks of other
//! streamed transactions, may arrive between its blocks.
//!
//! One streamed transaction at a time is applied as it arrives ("eager"): its changes go
//! through the same chunks as any transaction into its own storage batch, which becomes
//! visible only at Stream Commit (committed at the commit's end LSN) and is rolled back at
//! Stream Abort. So by the commit, most of a big transaction is already written; the commit
//! costs its last chunk and the storage commit.
//!
//! The open storage batch holds the deployment's row lock (storage has a single writer, and
//! op ids are allocated as rows are saved), so while it is open nothing else can be written.
//! When something else needs storage before the eager transaction ends (a committed
//! transaction with changes, a second streamed transaction with changes, a subtransaction
//! abort that must take back saved changes, or a gated table) the eager transaction is
//! *deferred*: its batch is rolled back and the run ends with
//! [`ReplicationError::StreamDeferred`]. The replicator then reconnects with protocol 1
//! (Postgres re-sends everything after the acknowledged position and sends the transaction
//! whole at its commit, decoded on its side) until that transaction has committed, and then
//! streams again (`replicator.rs`). Nothing is lost or applied twice: only committed storage
//! batches move the acknowledged position. Write checkpoints and idle position records
//! (empty commits) wait while the batch is open; catalog checks too.
//!
//! Relation messages inside a streamed transaction's blocks describe the relation for that
//! transaction only (pgoutput tracks what it sent per streamed transaction): they are kept
//! per transaction and dropped at its end.

use std::collections::HashSet;

use riptide_protocol::Lsn;

use super::TransactionApplier;
use super::transaction::OpenTransaction;
use crate::error::ReplicationError;
use crate::pgoutput::{StreamAbort, StreamCommit, StreamStart};

/// What marks an open transaction as a streamed one.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    /// The top-level transaction's xid.
    pub(super) xid: u32,
    /// Subtransactions whose changes were taken into this transaction.
    pub(super) subxacts: HashSet<u32>,
}

impl TransactionApplier {
    /// Stream Start: the changes up to Stream Stop belong to `s.xid`. A group held for
    /// commit is committed first (streamed blocks come between transactions).
    pub async fn stream_start(&mut self, s: StreamStart) -> Result<Option<Lsn>, ReplicationError> {
        let released = self.release().await?;
        if self.tx.is_some() || self.in_stream.is_some() {
            return Err(ReplicationError::Protocol(format!(
                "stream start of {} inside a transaction",
                s.xid
            )));
        }
        self.in_stream = Some(s.xid);
        let tx = match self.eager.take_if(|tx| stream_xid(tx) == Some(s.xid)) {
            Some(tx) => tx,
            None => OpenTransaction::streamed(s.xid),
        };
        self.tx = Some(tx);
        Ok(released)
    }

    /// Stream Stop: the block ends. The transaction stays open (as the eager one) if it has
    /// changes for storage.
    pub fn stream_stop(&mut self) -> Result<(), ReplicationError> {
        let Some(xid) = self.in_stream.take() else {
            return Err(ReplicationError::Protocol(
                "stream stop outside a stream".into(),
            ));
        };
        let tx = self.tx.take();
        if let Some(tx) = tx.filter(|tx| tx.has_changes()) {
            if self.eager.is_some() {
                // `push` defers before a second transaction takes changes.
                return Err(ReplicationError::Protocol(format!(
                    "streamed transaction {xid} with changes beside another"
                )));
            }
            self.eager = Some(tx);
        }
        Ok(())
    }

    /// Stream Commit: the eager transaction's batch commits at the end LSN (or, already in
    /// storage before a restart, is rolled back); a streamed transaction without changes
    /// only moves the position.
    pub async fn stream_commit(
        &mut self,
        c: StreamCommit,
    ) -> Result<Option<Lsn>, ReplicationError> {
        let released = self.release().await?;
        if self.tx.is_some() || self.in_stream.is_some() {
            return Err(ReplicationError::Protocol(format!(
                "stream commit of {} inside a transaction",
                c.xid
            )));
        }
        self.status.received(c.end_lsn);
        self.stream_relations.remove(&c.xid);
        let tx = self.eager.take_if(|tx| stream_xid(tx) == Some(c.xid));
        if c.end_lsn <= self.resume_lsn {
            // Applied before a restart: the batch (if any) rolls back as it drops.
            return Ok(released);
        }
        let ack = match tx {
            Some(mut tx) => {
                tx.transactions = 1;
                self.commit_transaction(tx, c.end_lsn).await?
            }
            None => {
                self.unrecorded = Some(c.end_lsn);
                self.record_idle(false).await?
            }
        };
        let checked = self.check_tables().await?;
        Ok(checked.or(ack).or(released))
    }

    /// Stream Abort: of the whole transaction (its batch rolls back), or of a subtransaction
    /// (nothing to do unless its changes were taken: then the transaction is deferred).
    pub fn stream_abort(&mut self, a: StreamAbort) -> Result<(), ReplicationError> {
        if self.in_stream.is_some() {
            return Err(ReplicationError::Protocol(format!(
                "stream abort of {} inside a stream",
                a.xid
            )));
        }
        if a.xid == a.subxid {
            self.stream_relations.remove(&a.xid);
            if let Some(tx) = self.eager.take_if(|tx| stream_xid(tx) == Some(a.xid)) {
                tracing::debug!(xid = a.xid, rows = tx.rows, "streamed transaction aborted");
            }
            return Ok(());
        }
        let taken = self.eager.as_ref().is_some_and(|tx| {
            tx.stream
                .as_ref()
                .is_some_and(|s| s.xid == a.xid && s.subxacts.contains(&a.subxid))
        });
        if taken {
            return Err(self.defer(a.xid, "a subtransaction with saved changes aborted"));
        }
        Ok(())
    }

    /// Whether the eager transaction's storage batch is open (nothing else may write).
    pub(super) fn storage_held(&self) -> bool {
        self.eager.as_ref().is_some_and(|tx| tx.batch.is_some())
    }

    /// Rolls the eager transaction back and ends the run: `xid` replays without streaming.
    pub(super) fn defer(&mut self, xid: u32, why: &'static str) -> ReplicationError {
        self.eager = None;
        tracing::info!(
            xid,
            why,
            "streamed transaction deferred: replaying it whole at its commit (protocol 1)"
        );
        ReplicationError::StreamDeferred { xid }
    }

    /// Checks, before `tx` takes a change, that it may: a streamed transaction becomes the
    /// eager one unless another is; any transaction needing storage while the eager one
    /// holds it defers that one.
    pub(super) fn admit_change(
        &mut self,
        tx: &mut OpenTransaction,
    ) -> Result<(), ReplicationError> {
        let Some(state) = &mut tx.stream else {
            return Ok(());
        };
        if let Some(change_xid) = self.change_xid.filter(|x| *x != state.xid) {
            state.subxacts.insert(change_xid);
        }
        match self.eager.as_ref().and_then(stream_xid) {
            Some(other) if other != state.xid => {
                Err(self.defer(other, "another streamed transaction has changes"))
            }
            _ => Ok(()),
        }
    }

    /// Before `tx` opens a storage batch: an eager transaction holding storage is deferred.
    pub(super) fn admit_batch(&mut self, tx: &OpenTransaction) -> Result<(), ReplicationError> {
        if tx.stream.is_some() || !self.storage_held() {
            return Ok(());
        }
        let xid = self.eager.as_ref().and_then(stream_xid).unwrap_or_default();
        Err(self.defer(xid, "a committed transaction needs storage"))
    }
}

fn stream_xid(tx: &OpenTransaction) -> Option<u32> {
    tx.stream.as_ref().map(|s| s.xid)
}
