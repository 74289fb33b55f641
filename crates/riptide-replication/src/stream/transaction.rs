//! Transaction boundaries: Begin and Commit, non-transactional messages and idle time. Decides
//! when a source transaction is skipped (already applied before a restart), held for group
//! commit or committed to storage, and which LSN may be acknowledged: only ever one that
//! storage has just committed.

use std::collections::HashMap;
use std::time::Instant;

use riptide_protocol::Lsn;
use riptide_storage::CheckpointEvent;

use super::changes::Pending;
use super::streamed::StreamState;
use super::toast::Written;
use super::{CHECKPOINT_MESSAGE_PREFIX, TransactionApplier};
use crate::batch::PipelinedBatch;
use crate::error::ReplicationError;
use crate::failpoints::failpoint;

/// The source transaction in progress, or the group of committed source transactions whose
/// storage commit is held for the next one.
pub(super) struct OpenTransaction {
    /// Between transactions of a group: the end LSN of its last (committed) transaction.
    pub(super) held: Option<Lsn>,
    /// Source transactions committed into this storage batch so far.
    pub(super) transactions: u64,
    /// When the group's first transaction committed at the source.
    pub(super) group_started: Option<Instant>,
    /// Skipped: already applied before a restart.
    pub(super) skip: bool,
    /// LSN of the commit record (for the table gates).
    pub(super) final_lsn: Lsn,
    pub(super) batch: Option<PipelinedBatch>,
    pub(super) pending: Vec<Pending>,
    /// Approximate bytes of `pending`.
    pub(super) pending_bytes: usize,
    /// Rows (that may have TOASTed values) written earlier in the chunk being flushed; rows of
    /// earlier chunks are read back from the transaction's storage batch instead of being
    /// held in memory.
    pub(super) written: Written,
    pub(super) rows: u64,
    /// A streamed transaction (`streamed.rs`).
    pub(super) stream: Option<StreamState>,
}

impl OpenTransaction {
    fn new(final_lsn: Lsn, skip: bool) -> Self {
        OpenTransaction {
            held: None,
            transactions: 0,
            group_started: None,
            skip,
            final_lsn,
            batch: None,
            pending: Vec::new(),
            pending_bytes: 0,
            written: HashMap::new(),
            rows: 0,
            stream: None,
        }
    }

    /// A streamed transaction: its commit LSN is not known yet, but comes after every
    /// position seen so far (so it passes every table gate of a copy already made).
    pub(super) fn streamed(xid: u32) -> Self {
        OpenTransaction {
            stream: Some(StreamState {
                xid,
                ..StreamState::default()
            }),
            ..OpenTransaction::new(Lsn(u64::MAX), false)
        }
    }

    /// Whether anything of it is for storage.
    pub(super) fn has_changes(&self) -> bool {
        self.batch.is_some() || !self.pending.is_empty()
    }
}

impl TransactionApplier {
    /// A pgoutput Begin.
    pub fn begin(&mut self, final_lsn: Lsn) -> Result<(), ReplicationError> {
        if let Some(tx) = &mut self.tx
            && tx.held.is_some()
        {
            // The next transaction of a group: it continues the held storage batch.
            self.status.received(final_lsn);
            tx.held = None;
            tx.final_lsn = final_lsn;
            return Ok(());
        }
        if self.tx.is_some() {
            return Err(ReplicationError::Protocol(format!(
                "begin at {final_lsn} inside an open transaction"
            )));
        }
        self.status.received(final_lsn);
        // Commit records never overlap the recorded position: one that starts before it
        // ended before it, so the transaction is already in storage.
        let skip = final_lsn < self.resume_lsn;
        if skip {
            tracing::debug!(lsn = %final_lsn, "skipping transaction already applied");
        }
        self.tx = Some(OpenTransaction::new(final_lsn, skip));
        Ok(())
    }

    /// A pgoutput Commit. Returns the LSN to acknowledge, if storage committed. A transaction
    /// with changes for storage may instead be held for group commit (see the module docs):
    /// then nothing is acknowledged until [`Self::release`].
    pub async fn commit(&mut self, end_lsn: Lsn) -> Result<Option<Lsn>, ReplicationError> {
        let Some(mut tx) = self.tx.take() else {
            return Err(ReplicationError::Protocol(format!(
                "commit at {end_lsn} without a transaction"
            )));
        };
        if tx.held.is_some() || tx.stream.is_some() {
            self.tx = Some(tx);
            return Err(ReplicationError::Protocol(format!(
                "commit at {end_lsn} without a begin"
            )));
        }
        self.status.received(end_lsn);
        if tx.skip || end_lsn <= self.resume_lsn {
            return Ok(None);
        }
        tx.transactions += 1;
        let started = *tx.group_started.get_or_insert_with(Instant::now);
        let has_changes = tx.batch.is_some() || !tx.pending.is_empty();
        if has_changes
            && tx.transactions < self.options.group_max_transactions
            && started.elapsed() < self.options.group_max_age
        {
            tx.held = Some(end_lsn);
            self.tx = Some(tx);
            return Ok(None);
        }
        let ack = self.commit_transaction(tx, end_lsn).await?;
        let checked = self.check_tables().await?;
        Ok(checked.or(ack))
    }

    /// Whether a group's storage commit is held (see [`Self::release`]).
    pub fn holding(&self) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.held.is_some())
    }

    /// Commits the held group, if any. Returns the LSN to acknowledge.
    pub async fn release(&mut self) -> Result<Option<Lsn>, ReplicationError> {
        let Some(end_lsn) = self.tx.as_ref().and_then(|tx| tx.held) else {
            return Ok(None);
        };
        let Some(tx) = self.tx.take() else {
            return Ok(None);
        };
        let ack = self.commit_transaction(tx, end_lsn).await?;
        let checked = self.check_tables().await?;
        Ok(checked.or(ack))
    }

    pub(super) async fn commit_transaction(
        &mut self,
        mut tx: OpenTransaction,
        end_lsn: Lsn,
    ) -> Result<Option<Lsn>, ReplicationError> {
        self.flush(&mut tx).await?;
        match tx.batch.take() {
            Some(batch) => {
                failpoint!("replication::before_commit");
                let event = batch.commit(end_lsn).await?;
                self.committed(event, end_lsn, tx.transactions);
                failpoint!("replication::after_commit");
                tracing::debug!(
                    lsn = %end_lsn,
                    rows = tx.rows,
                    transactions = tx.transactions,
                    "transactions committed"
                );
                Ok(Some(end_lsn))
            }
            None => {
                self.unrecorded = Some(end_lsn);
                self.record_idle(false).await
            }
        }
    }

    /// A logical decoding message. A non-transactional `powersync` message commits an empty
    /// batch at its LSN so the checkpoint LSN advances (write checkpoints wait on it).
    pub async fn message(
        &mut self,
        transactional: bool,
        lsn: Lsn,
        prefix: &str,
    ) -> Result<Option<Lsn>, ReplicationError> {
        self.status.received(lsn);
        if transactional || prefix != CHECKPOINT_MESSAGE_PREFIX || lsn <= self.resume_lsn {
            return Ok(None);
        }
        if self.storage_held() {
            // A streamed transaction's batch holds storage: recorded after it ends.
            self.unrecorded = self.unrecorded.max(Some(lsn));
            return Ok(None);
        }
        // pgoutput delivers non-transactional messages between transactions only.
        let released = self.release().await?;
        if self.tx.is_some() || lsn <= self.resume_lsn {
            return Ok(released);
        }
        self.commit_empty(lsn).await.map(Some)
    }

    /// Called when idle (keepalives, timer): records the position of skipped transactions
    /// once `idle_commit_interval` has passed since the last commit.
    pub async fn on_idle(&mut self) -> Result<Option<Lsn>, ReplicationError> {
        if self.holding() {
            return self.release().await;
        }
        if self.tx.is_some() {
            return Ok(None);
        }
        let ack = self.record_idle(false).await?;
        let checked = self.check_tables().await?;
        Ok(checked.or(ack))
    }

    pub(super) async fn record_idle(
        &mut self,
        force: bool,
    ) -> Result<Option<Lsn>, ReplicationError> {
        let Some(lsn) = self.unrecorded else {
            return Ok(None);
        };
        if self.storage_held() {
            return Ok(None);
        }
        if !force && self.last_commit.elapsed() < self.options.idle_commit_interval {
            return Ok(None);
        }
        self.commit_empty(lsn).await.map(Some)
    }

    async fn commit_empty(&mut self, lsn: Lsn) -> Result<Lsn, ReplicationError> {
        let batch = self.storage.begin_batch(self.deployment).await?;
        let event = batch.commit(lsn).await?;
        self.committed(event, lsn, 0);
        Ok(lsn)
    }

    /// Storage committed up to `lsn`: it is the new resume position, and its event goes to
    /// the checkpoint bus.
    pub(super) fn committed(&mut self, event: CheckpointEvent, lsn: Lsn, transactions: u64) {
        self.resume_lsn = lsn;
        self.unrecorded = None;
        self.last_commit = Instant::now();
        self.status.committed(lsn, transactions);
        // No receivers is fine: nobody is streaming yet.
        let _ = self.events.send(event);
    }
}
