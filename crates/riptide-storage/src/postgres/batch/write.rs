//! Step 3 of a chunk (see `batch.rs`): writing it into the open transaction. Every statement
//! covers the whole chunk: binary `COPY` for new rows, `unnest` arrays for changed and deleted
//! ones, one upsert for the bucket totals.

use std::collections::HashMap;
use std::pin::pin;

use deadpool_postgres::Object;
use postgres_types::Type;
use riptide_protocol::Checksum;
use tokio_postgres::binary_copy::BinaryCopyInWriter;

use super::{Chunk, Entry, PendingOp, RowKey, TxConn};
use crate::diff::{RowState, encode_buckets, encode_parameters};
use crate::keys;
use crate::postgres::reads::op_type_str;
use crate::{DeploymentId, Result};

/// Writes one chunk into the open transaction.
pub(super) async fn write_chunk(conn: &TxConn, id: DeploymentId, chunk: &Chunk) -> Result<()> {
    let client = conn.client()?;
    // 1. The ops.
    copy_ops(client, id, &chunk.ops).await?;
    // 2. Current rows and parameter rows.
    RowWrites::of(&chunk.overlay).write(client, id).await?;
    // 3. The running bucket totals.
    add_bucket_totals(client, id, &chunk.deltas).await
}

/// The chunk's ops, by binary `COPY` into `bucket_data`.
async fn copy_ops(client: &Object, id: DeploymentId, ops: &[PendingOp]) -> Result<()> {
    if ops.is_empty() {
        return Ok(());
    }
    let stmt = client
        .prepare_cached(
            "COPY riptide.bucket_data (deployment_id, bucket, op_id, op, object_type, \
                 object_id, subkey, checksum, data) FROM STDIN (FORMAT binary)",
        )
        .await?;
    let sink = client.copy_in(&stmt).await?;
    let types = [
        Type::INT8,
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
    ];
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    for op in ops {
        let checksum = i64::from(op.checksum.value());
        let bucket = keys::bucket(&op.bucket);
        writer
            .as_mut()
            .write(&[
                &id,
                &bucket.as_ref(),
                &op.op_id,
                &op_type_str(op.op),
                &op.table,
                &op.id,
                &op.subkey,
                &checksum,
                &op.data,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Source rows by (table, key), as the parallel arrays of an `unnest`.
#[derive(Default)]
struct Keys<'c> {
    tables: Vec<&'c str>,
    keys: Vec<&'c [u8]>,
}

impl<'c> Keys<'c> {
    fn push(&mut self, key: &'c RowKey) {
        self.tables.push(key.0.as_str());
        self.keys.push(key.1.as_slice());
    }
}

/// What a chunk changes in `current_data` and `parameter_lookups`, sorted by statement.
#[derive(Default)]
struct RowWrites<'c> {
    /// New rows.
    insert: Vec<(&'c RowKey, &'c RowState)>,
    /// Changed rows: their keys, and new data, buckets and lookups in the same order.
    update: Keys<'c>,
    update_data: Vec<&'c [u8]>,
    update_buckets: Vec<Vec<u8>>,
    update_lookups: Vec<Vec<u8>>,
    /// Deleted rows.
    delete: Keys<'c>,
    /// Rows whose stored parameter rows are replaced (deleted, then inserted if any).
    delete_parameters: Keys<'c>,
    insert_parameters: Vec<(&'c RowKey, &'c RowState)>,
}

impl<'c> RowWrites<'c> {
    fn of(overlay: &'c HashMap<RowKey, Entry>) -> Self {
        let mut w = RowWrites::default();
        for (key, e) in overlay {
            if e.dirty {
                match (&e.state, e.in_db) {
                    (Some(s), false) => w.insert.push((key, s)),
                    (Some(s), true) => {
                        w.update.push(key);
                        w.update_data.push(s.row.as_slice());
                        w.update_buckets.push(encode_buckets(&s.buckets));
                        w.update_lookups.push(encode_parameters(&s.parameters));
                    }
                    (None, true) => w.delete.push(key),
                    (None, false) => {}
                }
            }
            if e.params_dirty {
                if e.in_db {
                    w.delete_parameters.push(key);
                }
                if let Some(s) = &e.state
                    && !s.parameters.is_empty()
                {
                    w.insert_parameters.push((key, s));
                }
            }
        }
        w
    }

    async fn write(&self, client: &Object, id: DeploymentId) -> Result<()> {
        self.delete_rows(client, id).await?;
        self.update_rows(client, id).await?;
        self.copy_rows(client, id).await?;
        self.delete_parameter_rows(client, id).await?;
        self.copy_parameter_rows(client, id).await
    }

    async fn delete_rows(&self, client: &Object, id: DeploymentId) -> Result<()> {
        if self.delete.keys.is_empty() {
            return Ok(());
        }
        let stmt = client
            .prepare_cached(
                "DELETE FROM riptide.current_data c \
                     USING unnest($2::text[], $3::bytea[]) AS k(source_table, source_key) \
                     WHERE c.deployment_id = $1 AND c.source_table = k.source_table \
                       AND c.source_key = k.source_key",
            )
            .await?;
        client
            .execute(&stmt, &[&id, &self.delete.tables, &self.delete.keys])
            .await?;
        Ok(())
    }

    async fn update_rows(&self, client: &Object, id: DeploymentId) -> Result<()> {
        if self.update.keys.is_empty() {
            return Ok(());
        }
        let stmt = client
            .prepare_cached(
                "UPDATE riptide.current_data c \
                     SET data = u.data, buckets = u.buckets, lookups = u.lookups \
                     FROM unnest($2::text[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[]) \
                          AS u(source_table, source_key, data, buckets, lookups) \
                     WHERE c.deployment_id = $1 AND c.source_table = u.source_table \
                       AND c.source_key = u.source_key",
            )
            .await?;
        client
            .execute(
                &stmt,
                &[
                    &id,
                    &self.update.tables,
                    &self.update.keys,
                    &self.update_data,
                    &self.update_buckets,
                    &self.update_lookups,
                ],
            )
            .await?;
        Ok(())
    }

    /// New rows, by binary `COPY` into `current_data`.
    async fn copy_rows(&self, client: &Object, id: DeploymentId) -> Result<()> {
        if self.insert.is_empty() {
            return Ok(());
        }
        let stmt = client
            .prepare_cached(
                "COPY riptide.current_data (deployment_id, source_table, source_key, data, \
                     buckets, lookups) FROM STDIN (FORMAT binary)",
            )
            .await?;
        let sink = client.copy_in(&stmt).await?;
        let types = [
            Type::INT8,
            Type::TEXT,
            Type::BYTEA,
            Type::BYTEA,
            Type::BYTEA,
            Type::BYTEA,
        ];
        let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
        for ((table, key), s) in &self.insert {
            let buckets = encode_buckets(&s.buckets);
            let lookups = encode_parameters(&s.parameters);
            writer
                .as_mut()
                .write(&[&id, table, key, &s.row, &buckets, &lookups])
                .await?;
        }
        writer.finish().await?;
        Ok(())
    }

    async fn delete_parameter_rows(&self, client: &Object, id: DeploymentId) -> Result<()> {
        if self.delete_parameters.keys.is_empty() {
            return Ok(());
        }
        let stmt = client
            .prepare_cached(
                "DELETE FROM riptide.parameter_lookups p \
                     USING unnest($2::text[], $3::bytea[]) AS k(source_table, source_key) \
                     WHERE p.deployment_id = $1 AND p.source_table = k.source_table \
                       AND p.source_key = k.source_key",
            )
            .await?;
        client
            .execute(
                &stmt,
                &[
                    &id,
                    &self.delete_parameters.tables,
                    &self.delete_parameters.keys,
                ],
            )
            .await?;
        Ok(())
    }

    /// New parameter rows, by binary `COPY` into `parameter_lookups`.
    async fn copy_parameter_rows(&self, client: &Object, id: DeploymentId) -> Result<()> {
        if self.insert_parameters.is_empty() {
            return Ok(());
        }
        let stmt = client
            .prepare_cached(
                "COPY riptide.parameter_lookups (deployment_id, lookup, source_table, \
                     source_key, result) FROM STDIN (FORMAT binary)",
            )
            .await?;
        let sink = client.copy_in(&stmt).await?;
        let types = [
            Type::INT8,
            Type::BYTEA,
            Type::TEXT,
            Type::BYTEA,
            Type::BYTEA,
        ];
        let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
        for ((table, key), s) in &self.insert_parameters {
            for p in &s.parameters {
                let lookup = keys::row_key(&p.lookup);
                writer
                    .as_mut()
                    .write(&[&id, &lookup.as_ref(), table, key, &p.result])
                    .await?;
            }
        }
        writer.finish().await?;
        Ok(())
    }
}

/// Adds the chunk's per-bucket checksum, count, last op id and superseding-op count to
/// `bucket_state`.
async fn add_bucket_totals(
    client: &Object,
    id: DeploymentId,
    deltas: &HashMap<String, (Checksum, i64, i64, i64)>,
) -> Result<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    let mut names = Vec::with_capacity(deltas.len());
    let mut sums = Vec::with_capacity(deltas.len());
    let mut counts = Vec::with_capacity(deltas.len());
    let mut lasts = Vec::with_capacity(deltas.len());
    let mut superseded = Vec::with_capacity(deltas.len());
    for (bucket, (sum, count, last, supersedes)) in deltas {
        names.push(keys::bucket(bucket));
        sums.push(i64::from(sum.value()));
        counts.push(*count);
        lasts.push(*last);
        superseded.push(*supersedes);
    }
    let stmt = client
        .prepare_cached(
            "INSERT INTO riptide.bucket_state \
                     (deployment_id, bucket, checksum, op_count, last_op_id, superseded) \
                 SELECT $1, u.bucket, u.checksum, u.op_count, u.last_op_id, u.superseded \
                 FROM unnest($2::text[], $3::int8[], $4::int8[], $5::int8[], $6::int8[]) \
                      AS u(bucket, checksum, op_count, last_op_id, superseded) \
                 ON CONFLICT (deployment_id, bucket) DO UPDATE SET \
                     checksum = (riptide.bucket_state.checksum + excluded.checksum) \
                                % 4294967296, \
                     op_count = riptide.bucket_state.op_count + excluded.op_count, \
                     last_op_id = excluded.last_op_id, \
                     superseded = riptide.bucket_state.superseded + excluded.superseded",
        )
        .await?;
    let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
    client
        .execute(&stmt, &[&id, &names, &sums, &counts, &lasts, &superseded])
        .await?;
    Ok(())
}
