//! A full chunk (or the rest at commit) of pending changes → storage operations, saved into
//! the transaction's storage batch (opened at its first chunk).

use riptide_storage::BatchOperation;

use super::TransactionApplier;
use super::changes::Pending;
use super::toast::{EarlierRows, TOAST_CANDIDATE_BYTES, fill_unchanged};
use super::transaction::OpenTransaction;
use crate::batch::PipelinedBatch;
use crate::error::ReplicationError;
use crate::evaluate;
use crate::failpoints::failpoint;
use crate::row_image;

impl TransactionApplier {
    /// Fills unchanged columns, evaluates and saves the pending chunk.
    pub(super) async fn flush(&mut self, tx: &mut OpenTransaction) -> Result<(), ReplicationError> {
        if tx.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut tx.pending);
        tx.pending_bytes = 0;
        // 1. The earlier state of rows with unchanged TOAST columns: from the transaction's
        //    storage batch (which sees its earlier chunks) or storage, else re-read from the
        //    source.
        let earlier = self.earlier_rows(tx, &pending).await?;
        // 2. Each change evaluated against the rules, in order. Rows remembered for this
        //    chunk are dropped after it: later chunks find them in the batch.
        let ops = self.operations(tx, pending, &earlier);
        tx.written.clear();
        // 3. Saved into the transaction's storage batch.
        let n = ops.len() as u64;
        tx.rows += n;
        self.status.add_rows(n);
        if tx.batch.is_none() {
            self.admit_batch(tx)?;
        }
        let batch = match &mut tx.batch {
            Some(batch) => batch,
            None => tx.batch.insert(PipelinedBatch::new(
                self.storage.begin_batch(self.deployment).await?,
            )),
        };
        batch.save(ops).await?;
        failpoint!("replication::after_save");
        Ok(())
    }

    /// The storage operations of a chunk. Upserts get their unchanged columns filled (from
    /// rows written earlier in the transaction first); rows that may hold TOASTed values are
    /// remembered for the rest of the transaction.
    fn operations(
        &self,
        tx: &mut OpenTransaction,
        pending: Vec<Pending>,
        earlier: &EarlierRows,
    ) -> Vec<BatchOperation> {
        let mut ops = Vec::with_capacity(pending.len());
        for p in pending {
            match p {
                Pending::Upsert {
                    schema,
                    key,
                    mut row,
                    unchanged,
                } => {
                    if !unchanged.is_empty() {
                        let state = earlier.state(&tx.written, &schema, &key);
                        fill_unchanged(&schema, &unchanged, state.as_ref(), &mut row);
                    }
                    let remember = row_image::approximate_size(&row) > TOAST_CANDIDATE_BYTES;
                    if remember || !tx.written.is_empty() {
                        tx.written.remove(&(schema.id, key.clone()));
                    }
                    let op = evaluate::upsert(&self.rules, &schema, key, &row);
                    if remember {
                        tx.written.insert((schema.id, op.key.clone()), row);
                    }
                    ops.push(BatchOperation::Row(op));
                }
                Pending::Delete { schema, key } => {
                    if !tx.written.is_empty() {
                        tx.written.remove(&(schema.id, key.clone()));
                    }
                    ops.push(BatchOperation::Row(evaluate::delete(&schema, key)));
                }
                Pending::Truncate { schema } => {
                    tx.written.retain(|(id, _), _| *id != schema.id);
                    ops.push(BatchOperation::Truncate {
                        source_table: schema.qualified.clone(),
                    });
                }
            }
        }
        ops
    }
}
