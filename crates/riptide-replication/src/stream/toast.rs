//! Unchanged TOAST columns. pgoutput leaves a TOASTed value out of an update that did not
//! change it. Its value comes from, in order: the old tuple (REPLICA IDENTITY FULL), the row
//! as written earlier in the same chunk (rows above [`TOAST_CANDIDATE_BYTES`] are remembered
//! for the chunk), the row as the transaction's storage batch sees it (earlier chunks of the
//! transaction, then what is committed; one lookup per table per chunk), or a re-read of the
//! row from the source by key. A value found nowhere is replicated as NULL, with a warning.
//! Nothing is held for the whole transaction: a bulk update of wide rows costs a chunk of
//! memory, not the transaction's size.

use std::collections::HashMap;

use riptide_rules::{Row, SqliteValue};

use super::TransactionApplier;
use super::changes::Pending;
use super::transaction::OpenTransaction;
use crate::connection::{QUERY_TIMEOUT, quote_ident, quote_literal, within};
use crate::error::ReplicationError;
use crate::pgoutput::TupleValue;
use crate::row_image;
use crate::schema::TableSchema;

/// Rows that may hold TOASTed values (approximate size above this) are remembered for the
/// rest of their chunk, so a later update in the same chunk can fill its unchanged columns
/// before the batch has them.
pub(super) const TOAST_CANDIDATE_BYTES: usize = 1_000;

/// Earlier states of the rows of a chunk that have unchanged columns, found outside the
/// chunk: in the transaction's batch or storage, or re-read from the source.
#[derive(Default)]
pub(super) struct EarlierRows {
    /// Table → key → stored row (encoded).
    stored: HashMap<String, HashMap<Vec<u8>, Vec<u8>>>,
    reread: HashMap<(u32, Vec<u8>), Row>,
}

impl EarlierRows {
    /// The row's earlier state: as written earlier in this transaction, else as stored, else
    /// as re-read.
    pub(super) fn state(&self, written: &Written, schema: &TableSchema, key: &[u8]) -> Option<Row> {
        let id_key = (schema.id, key.to_vec());
        written
            .get(&id_key)
            .cloned()
            .or_else(|| {
                self.stored
                    .get(schema.qualified.as_str())
                    .and_then(|m| m.get(key))
                    .and_then(|bytes| Row::decode(bytes).ok())
            })
            .or_else(|| self.reread.get(&id_key).cloned())
    }

    fn is_stored(&self, schema: &TableSchema, key: &[u8]) -> bool {
        self.stored
            .get(schema.qualified.as_str())
            .is_some_and(|m| m.contains_key(key))
    }
}

/// Rows written earlier in the chunk (that may have TOASTed values), by relation and key.
pub(super) type Written = HashMap<(u32, Vec<u8>), Row>;

/// Upserts of a chunk with unchanged columns that the transaction has not written.
fn missing<'a>(
    written: &'a Written,
    pending: &'a [Pending],
) -> impl Iterator<Item = (&'a TableSchema, &'a Vec<u8>)> + 'a {
    pending.iter().filter_map(|p| match p {
        Pending::Upsert {
            schema,
            key,
            unchanged,
            ..
        } if !unchanged.is_empty() && !written.contains_key(&(schema.id, key.clone())) => {
            Some((schema.as_ref(), key))
        }
        _ => None,
    })
}

impl TransactionApplier {
    /// The earlier states of the chunk's rows with unchanged columns that the chunk has not
    /// written: rows as the transaction's batch sees them (or storage, before the transaction
    /// has a batch; one lookup per table), and for rows neither has, a re-read from the
    /// source.
    pub(super) async fn earlier_rows(
        &mut self,
        tx: &mut OpenTransaction,
        pending: &[Pending],
    ) -> Result<EarlierRows, ReplicationError> {
        let mut wanted: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        for (schema, key) in missing(&tx.written, pending) {
            wanted
                .entry(schema.qualified.clone())
                .or_default()
                .push(key.clone());
        }
        let mut earlier = EarlierRows::default();
        for (table, keys) in wanted {
            let rows = match &mut tx.batch {
                Some(batch) => batch.current_rows(&table, &keys).await?,
                None => {
                    self.storage
                        .current_rows(self.deployment, &table, &keys)
                        .await?
                }
            };
            earlier.stored.insert(table, rows);
        }
        let written = &tx.written;
        for (schema, key) in missing(written, pending) {
            if !earlier.is_stored(schema, key)
                && !earlier.reread.contains_key(&(schema.id, key.clone()))
                && let Some(row) = self.reread(schema, key).await?
            {
                earlier.reread.insert((schema.id, key.clone()), row);
            }
        }
        Ok(earlier)
    }

    /// Reads the current row with `key` from the source table (text format, so it maps like
    /// a snapshot row). `None` if there is no source connection or the row is gone.
    async fn reread(
        &mut self,
        schema: &TableSchema,
        key: &[u8],
    ) -> Result<Option<Row>, ReplicationError> {
        if self.source.is_none() {
            return Ok(None);
        }
        let Some(sql) = reread_query(schema, key) else {
            return Ok(None);
        };
        let Some(reader) = self.reader().await? else {
            return Ok(None);
        };
        let query = async { Ok(reader.simple_query(&sql).await?) };
        let messages = match within("re-read a row", QUERY_TIMEOUT, query).await {
            Ok(messages) => messages,
            Err(e) => {
                // A connection that hung or failed is not used again.
                self.reader = None;
                return Err(e);
            }
        };
        for message in &messages {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                let values = (0..schema.columns.len()).map(|i| row.get(i));
                let (_, row) = row_image::text_row(schema, values);
                tracing::debug!(table = %schema.qualified, "row re-read for unchanged TOAST columns");
                return Ok(Some(row));
            }
        }
        Ok(None)
    }
}

/// `SELECT` of every column of the row with `key`, comparing key columns as text. `None` if
/// the key does not match the table's identity columns.
fn reread_query(schema: &TableSchema, key: &[u8]) -> Option<String> {
    let parts = row_image::decode_key(key)?;
    let key_columns: Vec<_> = schema.columns.iter().filter(|c| c.is_key).collect();
    if key_columns.is_empty() || key_columns.len() != parts.len() {
        return None;
    }
    let mut conditions = Vec::with_capacity(parts.len());
    for (column, part) in key_columns.iter().zip(&parts) {
        let name = quote_ident(&column.name);
        conditions.push(match part {
            None => format!("{name} IS NULL"),
            Some(text) => format!(
                "{name}::text = {}",
                quote_literal(&String::from_utf8_lossy(text))
            ),
        });
    }
    let select = schema
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "SELECT {} FROM {}.{} WHERE {} LIMIT 1",
        if select.is_empty() { "NULL" } else { &select },
        quote_ident(&schema.table.schema),
        quote_ident(&schema.table.name),
        conditions.join(" AND ")
    ))
}

/// Takes values the old row (REPLICA IDENTITY FULL) carries for unchanged columns.
pub(super) fn fill_from_old(
    schema: &TableSchema,
    old: &[TupleValue],
    row: &mut Row,
    unchanged: &mut Vec<usize>,
) {
    let mut filled = false;
    unchanged.retain(|&i| {
        let (Some(column), Some(TupleValue::Text(text))) = (schema.columns.get(i), old.get(i))
        else {
            return true;
        };
        row.insert(
            column.name.clone(),
            crate::values::convert(column.kind, text),
        );
        filled = true;
        false
    });
    if filled {
        row_image::reorder(schema, row);
    }
}

/// Fills the unchanged columns from the row's earlier state.
pub(super) fn fill_unchanged(
    schema: &TableSchema,
    unchanged: &[usize],
    earlier: Option<&Row>,
    row: &mut Row,
) {
    let mut missing = 0usize;
    for &i in unchanged {
        let Some(column) = schema.columns.get(i) else {
            continue;
        };
        let value = earlier
            .and_then(|e| e.get(&column.name))
            .cloned()
            .unwrap_or_else(|| {
                missing += 1;
                SqliteValue::Null
            });
        row.insert(column.name.clone(), value);
    }
    if missing > 0 {
        tracing::warn!(
            table = %schema.qualified,
            columns = missing,
            "unchanged TOAST columns not found in stored row nor in the table; replicated as NULL"
        );
    }
    row_image::reorder(schema, row);
}
