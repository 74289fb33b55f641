//! Row-level messages: Relation messages describe tables; Insert, Update, Delete and Truncate
//! become pending changes of the open transaction, saved a chunk at a time (`flush.rs`).

use std::sync::Arc;

use riptide_protocol::Lsn;
use riptide_rules::Row;

use super::TransactionApplier;
use super::toast::fill_from_old;
use crate::error::ReplicationError;
use crate::pgoutput::{Delete, Insert, OldTuple, Relation, Truncate, Update};
use crate::row_image::{self, TupleError};
use crate::schema::TableSchema;
use crate::tables::Gate;

/// One change waiting in the current chunk.
pub(super) enum Pending {
    Upsert {
        schema: Arc<TableSchema>,
        key: Vec<u8>,
        row: Row,
        /// Columns not sent (unchanged TOAST), to fill from the stored row.
        unchanged: Vec<usize>,
    },
    Delete {
        schema: Arc<TableSchema>,
        key: Vec<u8>,
    },
    Truncate {
        schema: Arc<TableSchema>,
    },
}

impl Pending {
    /// About how much memory the change holds.
    pub(super) fn approximate_size(&self) -> usize {
        match self {
            Pending::Upsert { key, row, .. } => key.len() + row_image::approximate_size(row) + 64,
            Pending::Delete { key, .. } => key.len() + 64,
            Pending::Truncate { .. } => 64,
        }
    }
}

impl TransactionApplier {
    /// A Relation message: the table's columns and replica identity from now on, and whether
    /// the rules use it. A referenced table under an OID not streamed under its name is gated
    /// until the next catalog check decides.
    pub(super) fn relation(&mut self, r: &Relation) {
        let used = self
            .used_tables
            .contains(&format!("{}.{}", r.namespace, r.name));
        let mut schema = TableSchema::from_relation(r, &self.types, used);
        tracing::debug!(table = %schema.qualified, relation = r.id, "relation described");
        if schema.used && !schema.columns.iter().any(|c| c.is_key) {
            // REPLICA IDENTITY NOTHING (or DEFAULT without a primary key): rows have no
            // identity, so updates and deletes cannot be matched. Skip the table rather
            // than merging every row under one empty key.
            tracing::error!(
                table = %schema.qualified,
                error = %crate::source::SourceError::ReplicaIdentityNothing {
                    table: schema.qualified.clone()
                },
                "table is not replicated: it has no replica identity"
            );
            schema.used = false;
        }
        if let Some(tracking) = &mut self.tracking {
            let tracked_name = tracking.tracked_oids.get(&r.id);
            if schema.used && tracked_name != Some(&schema.qualified) {
                // A referenced name on an OID not streamed under it: ignore its
                // changes until the catalog check decides (copy, or removal).
                self.gates.entry(r.id).or_insert(Gate::Blocked);
                tracking.check_needed = true;
            } else if tracked_name.is_some() && !schema.used {
                tracking.check_needed = true;
            }
        }
        let schema = Arc::new(schema);
        match self.in_stream {
            Some(xid) => {
                self.stream_relations
                    .entry(xid)
                    .or_default()
                    .insert(r.id, schema);
            }
            None => {
                self.relations.insert(r.id, schema);
            }
        }
    }

    pub(super) async fn insert(&mut self, i: &Insert) -> Result<Option<Lsn>, ReplicationError> {
        let Some(schema) = self.relevant(i.relation_id)? else {
            return Ok(None);
        };
        let key = tuple_result(row_image::tuple_key(&schema, &i.new))?;
        let (row, unchanged) = tuple_result(row_image::tuple_row(&schema, &i.new))?;
        self.push(Pending::Upsert {
            schema,
            key,
            row,
            unchanged,
        })
        .await
    }

    /// An Update: an upsert under the new key, preceded by a delete of the old key when the
    /// identity changed. Unchanged columns the old tuple (REPLICA IDENTITY FULL) carries are
    /// filled from it; the rest at flush.
    pub(super) async fn update(&mut self, u: &Update) -> Result<Option<Lsn>, ReplicationError> {
        let Some(schema) = self.relevant(u.relation_id)? else {
            return Ok(None);
        };
        let (mut row, mut unchanged) = tuple_result(row_image::tuple_row(&schema, &u.new))?;
        let mut old_key = None;
        if let Some(old) = &u.old {
            old_key = Some(tuple_result(row_image::tuple_key(&schema, old.tuple()))?);
            if let OldTuple::Full(old_tuple) = old {
                fill_from_old(&schema, &old_tuple.0, &mut row, &mut unchanged);
            }
        }
        let key = match (row_image::tuple_key(&schema, &u.new), &old_key) {
            (Ok(key), _) => key,
            // An identity column that was not sent did not change.
            (Err(TupleError::KeyUnavailable { .. }), Some(old_key)) => old_key.clone(),
            (Err(e @ TupleError::KeyUnavailable { .. }), None) => {
                tracing::warn!(table = %schema.qualified, error = %e, "update skipped");
                return Ok(None);
            }
            (Err(e), _) => return Err(tuple_error(e)),
        };
        if let Some(old_key) = old_key
            && old_key != key
        {
            self.push(Pending::Delete {
                schema: schema.clone(),
                key: old_key,
            })
            .await?;
        }
        self.push(Pending::Upsert {
            schema,
            key,
            row,
            unchanged,
        })
        .await
    }

    pub(super) async fn delete(&mut self, d: &Delete) -> Result<Option<Lsn>, ReplicationError> {
        let Some(schema) = self.relevant(d.relation_id)? else {
            return Ok(None);
        };
        let key = tuple_result(row_image::tuple_key(&schema, d.old.tuple()))?;
        self.push(Pending::Delete { schema, key }).await
    }

    pub(super) async fn truncate(&mut self, t: &Truncate) -> Result<Option<Lsn>, ReplicationError> {
        for &id in &t.relation_ids {
            if let Some(schema) = self.relevant(id)? {
                self.push(Pending::Truncate { schema }).await?;
            }
        }
        Ok(None)
    }

    /// The relation's schema if the rules use it and the transaction is not skipped.
    fn relevant(&self, relation_id: u32) -> Result<Option<Arc<TableSchema>>, ReplicationError> {
        let Some(tx) = self.tx.as_ref().filter(|tx| tx.held.is_none()) else {
            return Err(ReplicationError::Protocol(
                "row change outside a transaction".into(),
            ));
        };
        let streamed = self
            .in_stream
            .and_then(|xid| self.stream_relations.get(&xid))
            .and_then(|relations| relations.get(&relation_id));
        let schema = streamed
            .or_else(|| self.relations.get(&relation_id))
            .ok_or_else(|| {
                ReplicationError::Protocol(format!("change to undescribed relation {relation_id}"))
            })?;
        if !schema.used || tx.skip {
            return Ok(None);
        }
        if !self.gates.is_empty()
            && let Some(gate) = self.gates.get(&relation_id)
            && !gate.passes(tx.final_lsn)
        {
            if let Some(stream) = &tx.stream {
                // Whether a gated table's changes count is decided per whole transaction
                // (`tables.rs`): not while one streams.
                return Err(ReplicationError::StreamDeferred { xid: stream.xid });
            }
            return Ok(None);
        }
        Ok(Some(schema.clone()))
    }

    /// Adds a change to the open transaction's chunk, flushing the chunk when it is full (in
    /// rows or bytes).
    async fn push(&mut self, change: Pending) -> Result<Option<Lsn>, ReplicationError> {
        let chunk_rows = self.options.chunk_rows;
        let chunk_bytes = self.options.chunk_bytes;
        let Some(mut tx) = self.tx.take() else {
            return Err(ReplicationError::Protocol(
                "row change outside a transaction".into(),
            ));
        };
        self.admit_change(&mut tx)?;
        tx.pending_bytes += change.approximate_size();
        tx.pending.push(change);
        let result = if tx.pending.len() >= chunk_rows || tx.pending_bytes >= chunk_bytes {
            self.flush(&mut tx).await
        } else {
            Ok(())
        };
        self.tx = Some(tx);
        result.map(|()| None)
    }
}

fn tuple_error(e: TupleError) -> ReplicationError {
    ReplicationError::Protocol(e.to_string())
}

fn tuple_result<T>(r: Result<T, TupleError>) -> Result<T, ReplicationError> {
    r.map_err(tuple_error)
}
