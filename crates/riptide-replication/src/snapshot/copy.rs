//! Reading a table's rows for a snapshot: a cursor over the table (in replica-identity key
//! order, after a key when resuming), [`super::FETCH_ROWS`] text-format rows per fetch, each
//! evaluated against the rules and handed to a [`RowSink`] a chunk at a time; the next chunk
//! is fetched while the sink saves this one.

use std::sync::Arc;

use riptide_rules::SyncRules;
use riptide_storage::{BatchOperation, BucketStorage, DeploymentId};
use tokio_postgres::SimpleQueryMessage;

use crate::batch::PipelinedBatch;
use crate::connection::{quote_ident, quote_literal};
use crate::error::ReplicationError;
use crate::evaluate;
use crate::pgoutput::ReplicaIdentity;
use crate::row_image;
use crate::schema::{TableSchema, TypeMap};
use crate::status::ReplicationStatus;

pub struct SnapshotContext<'a> {
    pub storage: &'a Arc<dyn BucketStorage>,
    pub deployment: DeploymentId,
    pub rules: &'a SyncRules,
    pub types: &'a TypeMap,
    pub status: &'a ReplicationStatus,
    pub chunk_rows: usize,
}

/// Where copied rows go.
pub(crate) trait RowSink {
    /// One chunk of `table`'s rows; `last_key` is the key of the last one when the copy is in
    /// key order (so a resumed copy may go on after it).
    async fn rows(
        &mut self,
        table: &str,
        ops: Vec<BatchOperation>,
        last_key: Option<Vec<u8>>,
    ) -> Result<(), ReplicationError>;
}

/// The rows go into one batch, committed by its owner (a live table's resync).
impl RowSink for PipelinedBatch {
    async fn rows(
        &mut self,
        _table: &str,
        ops: Vec<BatchOperation>,
        _last_key: Option<Vec<u8>>,
    ) -> Result<(), ReplicationError> {
        self.save(ops).await
    }
}

/// Copies one table's rows (as of `tx`'s snapshot) into `batch` as upserts, a cursor chunk
/// at a time. Returns the number of rows.
pub async fn copy_table(
    ctx: &SnapshotContext<'_>,
    tx: &tokio_postgres::Transaction<'_>,
    schema: &TableSchema,
    batch: &mut PipelinedBatch,
) -> Result<u64, ReplicationError> {
    copy_rows(ctx, tx, schema, Order::Any, batch).await
}

/// In which order a copy reads a table.
pub(crate) enum Order<'k> {
    /// Whatever is cheapest (a sequential scan).
    Any,
    /// By replica-identity key (when the table has a usable one), after this key if any.
    Key { after: Option<&'k [u8]> },
}

/// Whether the table's rows can be read in key order and resumed after a key: its identity
/// is its primary key or an identity index (unique, not null, btree-ordered).
pub(crate) fn key_ordered(schema: &TableSchema) -> bool {
    schema.replica_identity != ReplicaIdentity::Full && schema.columns.iter().any(|c| c.is_key)
}

/// The query reading `schema`'s rows in `order`.
fn select(schema: &TableSchema, order: &Order<'_>) -> String {
    let columns = schema
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!(
        "SELECT {} FROM {}.{}",
        if columns.is_empty() { "NULL" } else { &columns },
        quote_ident(&schema.table.schema),
        quote_ident(&schema.table.name)
    );
    let Order::Key { after } = order else {
        return sql;
    };
    if !key_ordered(schema) {
        return sql;
    }
    let keys: Vec<String> = schema
        .columns
        .iter()
        .filter(|c| c.is_key)
        .map(|c| quote_ident(&c.name))
        .collect();
    // The last key's values as text; untyped literals take their columns' types, so the
    // row comparison uses the key's own ordering (the index's).
    let after = after
        .and_then(row_image::decode_key)
        .filter(|parts| parts.len() == keys.len())
        .and_then(|parts| {
            parts
                .iter()
                .map(|p| p.map(|text| quote_literal(&String::from_utf8_lossy(text))))
                .collect::<Option<Vec<_>>>()
        });
    if let Some(values) = after {
        sql.push_str(&format!(
            " WHERE ({}) > ({})",
            keys.join(", "),
            values.join(", ")
        ));
    }
    sql.push_str(&format!(" ORDER BY {}", keys.join(", ")));
    sql
}

/// Copies `schema`'s rows in `order` into `sink`. Returns the number of rows.
pub(crate) async fn copy_rows(
    ctx: &SnapshotContext<'_>,
    tx: &tokio_postgres::Transaction<'_>,
    schema: &TableSchema,
    order: Order<'_>,
    sink: &mut impl RowSink,
) -> Result<u64, ReplicationError> {
    let keyed = matches!(order, Order::Key { .. }) && key_ordered(schema);
    tx.batch_execute(&format!(
        "DECLARE riptide_snapshot NO SCROLL CURSOR FOR {}",
        select(schema, &order)
    ))
    .await?;
    let fetch = format!("FETCH {} FROM riptide_snapshot", ctx.chunk_rows.max(1));
    let mut total = 0u64;
    let mut messages = tx.simple_query(&fetch).await?;
    loop {
        let mut ops = Vec::with_capacity(ctx.chunk_rows);
        let mut last_key = None;
        for message in &messages {
            if let SimpleQueryMessage::Row(row) = message {
                let values = (0..schema.columns.len()).map(|i| row.get(i));
                let (key, row) = row_image::text_row(schema, values);
                if keyed {
                    last_key = Some(key.clone());
                }
                ops.push(BatchOperation::Row(evaluate::upsert(
                    ctx.rules, schema, key, &row,
                )));
            }
        }
        if ops.is_empty() {
            break;
        }
        let n = ops.len() as u64;
        total += n;
        ctx.status.snapshot_progress(n);
        ctx.status.add_rows(n);
        // Fetch the next chunk while the sink saves this one.
        sink.rows(&schema.qualified, ops, last_key).await?;
        messages = tx.simple_query(&fetch).await?;
    }
    tx.batch_execute("CLOSE riptide_snapshot").await?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row_image::encode_key;

    #[test]
    fn key_order_resumes_after_the_last_key() {
        let mut schema = crate::row_image::tests::schema();
        schema.replica_identity = ReplicaIdentity::Default;
        let key = encode_key([Some(&b"it's"[..])]);
        let sql = select(&schema, &Order::Key { after: Some(&key) });
        assert!(
            sql.ends_with(r#"WHERE ("id") > ('it''s') ORDER BY "id""#),
            "{sql}"
        );
        let sql = select(&schema, &Order::Key { after: None });
        assert!(
            sql.ends_with(r#"FROM "public"."todos" ORDER BY "id""#),
            "{sql}"
        );
        assert!(!select(&schema, &Order::Any).contains("ORDER BY"));
        schema.replica_identity = ReplicaIdentity::Full;
        assert!(!select(&schema, &Order::Key { after: Some(&key) }).contains("WHERE"));
    }
}
