//! The initial snapshot of the tables the sync rules use.
//!
//! Soundness: the slot is created on the walsender session with `EXPORT_SNAPSHOT`; its
//! consistent point is where streaming begins, and the exported snapshot sees exactly the
//! transactions committed before it. The tables are read on an ordinary connection in a
//! `REPEATABLE READ` transaction importing that snapshot while the walsender session stays
//! idle (the export lives until its next command). Then the whole snapshot is committed as
//! one storage batch at the consistent point, and the same session starts streaming from the
//! slot (which begins at that point): nothing is missed, nothing applied twice.
//!
//! Rows are read through a cursor, `FETCH`ing [`FETCH_ROWS`] text-format rows at a time, so
//! memory stays bounded by one chunk whatever the table size; the next chunk is fetched while
//! storage saves the previous one.

use std::sync::Arc;

use pgwire_replication::ReplicationClient;
use riptide_protocol::Lsn;
use riptide_rules::SyncRules;
use riptide_storage::{BatchOperation, BucketStorage, CheckpointEvent, DeploymentId};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::batch::PipelinedBatch;
use crate::error::ReplicationError;
use crate::evaluate;
use crate::row_image;
use crate::schema::{TableSchema, TypeMap};
use crate::status::ReplicationStatus;
use riptide_pg::{quote_ident, quote_literal};

/// Rows per cursor fetch.
pub const FETCH_ROWS: usize = 10_000;

/// What `CREATE_REPLICATION_SLOT … EXPORT_SNAPSHOT` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    pub consistent_point: Lsn,
    pub snapshot_name: String,
}

/// Creates the logical slot on a gated walsender session, exporting its snapshot.
pub async fn create_slot(
    session: &mut ReplicationClient,
    slot: &str,
) -> Result<CreatedSlot, ReplicationError> {
    create_slot_with(session, slot, false).await
}

/// Like [`create_slot`]; a `temporary` slot is dropped when its session ends (used for the
/// consistent snapshot of a table copied while streaming, see `tables.rs`).
pub async fn create_slot_with(
    session: &mut ReplicationClient,
    slot: &str,
    temporary: bool,
) -> Result<CreatedSlot, ReplicationError> {
    let rows = session
        .simple_query(&format!(
            "CREATE_REPLICATION_SLOT {}{} LOGICAL pgoutput EXPORT_SNAPSHOT",
            quote_ident(slot),
            if temporary { " TEMPORARY" } else { "" }
        ))
        .await?;
    let row = rows.first().ok_or_else(|| {
        ReplicationError::Protocol("CREATE_REPLICATION_SLOT returned no row".into())
    })?;
    let text = |i: usize| -> Result<String, ReplicationError> {
        row.get(i)
            .and_then(|v| v.as_ref())
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_owned)
            .ok_or_else(|| {
                ReplicationError::Protocol(format!("CREATE_REPLICATION_SLOT column {i} missing"))
            })
    };
    let consistent_point = text(1)?
        .parse::<Lsn>()
        .map_err(|_| ReplicationError::Protocol("invalid consistent point".into()))?;
    Ok(CreatedSlot {
        consistent_point,
        snapshot_name: text(2)?,
    })
}

pub struct SnapshotContext<'a> {
    pub storage: &'a Arc<dyn BucketStorage>,
    pub deployment: DeploymentId,
    pub rules: &'a SyncRules,
    pub types: &'a TypeMap,
    pub status: &'a ReplicationStatus,
    pub chunk_rows: usize,
}

/// Copies every published table the rules use as of the exported snapshot and commits the
/// result, with the tracked set (`tables.rs`), at the consistent point. Returns the commit's
/// event and, as of the same snapshot, the referenced tables in `publication` with their
/// OIDs (the baseline of `tables.rs`).
pub async fn copy_tables(
    ctx: &SnapshotContext<'_>,
    client: &mut Client,
    created: &CreatedSlot,
    publication: &str,
) -> Result<(CheckpointEvent, crate::tables::Tracked), ReplicationError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    tx.batch_execute(&format!(
        "SET TRANSACTION SNAPSHOT {}",
        quote_literal(&created.snapshot_name)
    ))
    .await?;

    let mut batch = PipelinedBatch::new(ctx.storage.begin_batch(ctx.deployment).await?);
    let mut tables = ctx.rules.source_tables();
    tables.sort();
    let published = crate::tables::published(&tx, publication, &tables).await?;
    for table in &tables {
        if !published.contains_key(&table.qualified()) {
            // The stream would never update its rows; copied once it is published.
            tracing::warn!(table = %table.qualified(), publication, "table used by the sync rules is not in the publication; skipped");
            continue;
        }
        let Some(schema) = TableSchema::load(&tx, table, ctx.types).await? else {
            tracing::warn!(table = %table.qualified(), "table used by the sync rules does not exist; skipped");
            continue;
        };
        ctx.status.snapshot_table_started(Some(&schema.qualified));
        tracing::info!(table = %schema.qualified, lsn = %created.consistent_point, "snapshot of table started");
        let rows = copy_table(ctx, &tx, &schema, &mut batch).await?;
        tracing::info!(table = %schema.qualified, rows, "snapshot of table done");
    }
    ctx.status.snapshot_table_started(None);
    tx.commit().await?;
    batch
        .save(vec![crate::tables::tracked_op(&published)])
        .await?;
    Ok((batch.commit(created.consistent_point).await?, published))
}

/// Copies one table's rows (as of `tx`'s snapshot) into `batch` as upserts, a cursor chunk
/// at a time. Returns the number of rows.
pub async fn copy_table(
    ctx: &SnapshotContext<'_>,
    tx: &tokio_postgres::Transaction<'_>,
    schema: &TableSchema,
    batch: &mut PipelinedBatch,
) -> Result<u64, ReplicationError> {
    let columns = schema
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let select_list = if columns.is_empty() { "NULL" } else { &columns };
    tx.batch_execute(&format!(
        "DECLARE riptide_snapshot NO SCROLL CURSOR FOR SELECT {select_list} FROM {}.{}",
        quote_ident(&schema.table.schema),
        quote_ident(&schema.table.name)
    ))
    .await?;
    let fetch = format!("FETCH {} FROM riptide_snapshot", ctx.chunk_rows.max(1));
    let mut total = 0u64;
    let mut messages = tx.simple_query(&fetch).await?;
    loop {
        let mut ops = Vec::with_capacity(ctx.chunk_rows);
        for message in &messages {
            if let SimpleQueryMessage::Row(row) = message {
                let values = (0..schema.columns.len()).map(|i| row.get(i));
                let (key, row) = row_image::text_row(schema, values);
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
        // Fetch the next chunk while storage saves this one.
        batch.save(ops).await?;
        messages = tx.simple_query(&fetch).await?;
    }
    tx.batch_execute("CLOSE riptide_snapshot").await?;
    Ok(total)
}
