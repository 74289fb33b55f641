//! Source row → [`RowOperation`]: evaluates the sync rules' data and parameter queries once per
//! row and packs the results for storage.

use riptide_rules::{Row, SyncRules};
use riptide_storage::{BucketRow, ParameterRow, RowChange, RowOperation};

use crate::schema::TableSchema;

/// The upsert of `row` (its full current state) under `key`.
pub fn upsert(rules: &SyncRules, schema: &TableSchema, key: Vec<u8>, row: &Row) -> RowOperation {
    let evaluation = rules.evaluate_row(&schema.table, row);
    if !evaluation.errors.is_empty() {
        // Messages may quote values; log only how many.
        tracing::debug!(
            table = %schema.qualified,
            errors = evaluation.errors.len(),
            "row skipped by some data queries"
        );
    }
    let buckets = evaluation
        .rows
        .into_iter()
        .map(|r| BucketRow {
            bucket: r.bucket,
            table: r.table,
            id: r.id,
            data: r.data,
        })
        .collect();
    let parameters = rules
        .evaluate_parameter_row(&schema.table, row)
        .into_iter()
        .map(|p| ParameterRow {
            lookup: p.lookup.key(),
            result: p.result,
        })
        .collect();
    RowOperation {
        source_table: schema.qualified.clone(),
        key,
        change: RowChange::Upsert {
            row: row.encode(),
            buckets,
            parameters,
        },
    }
}

/// The deletion of the row under `key`.
pub fn delete(schema: &TableSchema, key: Vec<u8>) -> RowOperation {
    RowOperation {
        source_table: schema.qualified.clone(),
        key,
        change: RowChange::Delete,
    }
}
