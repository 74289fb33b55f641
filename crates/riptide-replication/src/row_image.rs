//! Source rows as the replicator sees them: the replica-identity key bytes and the
//! [`Row`] of SQLite values, from pgoutput tuples (stream) or text columns (snapshot).
//!
//! The key is the identity columns' text values, each encoded as `0x00` (NULL) or
//! `0x01` + big-endian u32 length + bytes, in column order. Snapshot and stream produce the
//! same text (same session settings), hence the same key for the same row.

use riptide_rules::{Row, SqliteValue};

use crate::pgoutput::{TupleData, TupleValue};
use crate::schema::TableSchema;
use crate::values;

/// Appends one key column.
fn push_key_part(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            // Postgres values are < 1 GB, so the length fits in u32.
            out.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(v);
        }
    }
}

/// The key from the identity columns' text values (`None` entries are NULL).
#[cfg(test)]
pub fn encode_key<'a>(values: impl IntoIterator<Item = Option<&'a [u8]>>) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        push_key_part(&mut out, v);
    }
    out
}

/// The identity columns' text values back from a key (`None` for NULL); `None` if the key
/// is malformed.
pub fn decode_key(key: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let mut parts = Vec::new();
    let mut rest = key;
    while let Some((&tag, tail)) = rest.split_first() {
        match tag {
            0 => {
                parts.push(None);
                rest = tail;
            }
            1 => {
                let len_bytes: [u8; 4] = tail.get(..4)?.try_into().ok()?;
                let len = usize::try_from(u32::from_be_bytes(len_bytes)).ok()?;
                let value = tail.get(4..4 + len)?;
                parts.push(Some(value));
                rest = &tail[4 + len..];
            }
            _ => return None,
        }
    }
    Some(parts)
}

/// Why a tuple does not fit its relation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TupleError {
    #[error("tuple has {found} columns but relation {table} has {expected}")]
    ColumnCount {
        table: String,
        expected: usize,
        found: usize,
    },
    #[error("identity column {column} of {table} was not sent (unchanged TOAST)")]
    KeyUnavailable { table: String, column: String },
    #[error("binary tuple values are not supported (column {column} of {table})")]
    Binary { table: String, column: String },
}

fn check_width(schema: &TableSchema, tuple: &TupleData) -> Result<(), TupleError> {
    if tuple.0.len() != schema.columns.len() {
        return Err(TupleError::ColumnCount {
            table: schema.qualified.clone(),
            expected: schema.columns.len(),
            found: tuple.0.len(),
        });
    }
    Ok(())
}

/// The replica-identity key of a tuple (a new row, or an old key/full row).
pub fn tuple_key(schema: &TableSchema, tuple: &TupleData) -> Result<Vec<u8>, TupleError> {
    check_width(schema, tuple)?;
    let mut out = Vec::new();
    for (column, value) in schema.columns.iter().zip(&tuple.0) {
        if !column.is_key {
            continue;
        }
        match value {
            TupleValue::Null => push_key_part(&mut out, None),
            TupleValue::Text(t) => push_key_part(&mut out, Some(t)),
            TupleValue::Unchanged => {
                return Err(TupleError::KeyUnavailable {
                    table: schema.qualified.clone(),
                    column: column.name.clone(),
                });
            }
            TupleValue::Binary(_) => {
                return Err(TupleError::Binary {
                    table: schema.qualified.clone(),
                    column: column.name.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// The row of a tuple, and the indexes of columns that were not sent (unchanged TOAST), which
/// are absent from the row.
pub fn tuple_row(schema: &TableSchema, tuple: &TupleData) -> Result<(Row, Vec<usize>), TupleError> {
    check_width(schema, tuple)?;
    let mut row = Row(indexmap::IndexMap::with_capacity(schema.columns.len()));
    let mut unchanged = Vec::new();
    for (i, (column, value)) in schema.columns.iter().zip(&tuple.0).enumerate() {
        let v = match value {
            TupleValue::Null => SqliteValue::Null,
            TupleValue::Text(t) => values::convert(column.kind, t),
            TupleValue::Unchanged => {
                unchanged.push(i);
                continue;
            }
            TupleValue::Binary(_) => {
                return Err(TupleError::Binary {
                    table: schema.qualified.clone(),
                    column: column.name.clone(),
                });
            }
        };
        row.0.insert(column.name.clone(), v);
    }
    Ok((row, unchanged))
}

/// Puts the unchanged columns back in source column order after they were filled in.
pub fn reorder(schema: &TableSchema, row: &mut Row) {
    let position = |name: &str| schema.columns.iter().position(|c| c.name == name);
    row.0.sort_by(|a, _, b, _| position(a).cmp(&position(b)));
}

/// The row and key of a snapshot row read as text columns in schema order.
pub fn text_row<'a>(
    schema: &TableSchema,
    values: impl IntoIterator<Item = Option<&'a str>>,
) -> (Vec<u8>, Row) {
    let mut row = Row(indexmap::IndexMap::with_capacity(schema.columns.len()));
    let mut key = Vec::new();
    for (column, value) in schema.columns.iter().zip(values) {
        if column.is_key {
            push_key_part(&mut key, value.map(str::as_bytes));
        }
        let v = match value {
            None => SqliteValue::Null,
            Some(t) => values::convert(column.kind, t.as_bytes()),
        };
        row.0.insert(column.name.clone(), v);
    }
    (key, row)
}

/// Approximate size of a row's values, to decide whether it may have TOASTed columns.
pub fn approximate_size(row: &Row) -> usize {
    row.0
        .values()
        .map(|v| match v {
            SqliteValue::Text(s) => s.len(),
            SqliteValue::Blob(b) => b.len(),
            _ => 8,
        })
        .sum()
}

#[cfg(test)]
pub(crate) mod tests {
    use bytes::Bytes;
    use riptide_rules::TableRef;

    use super::*;
    use crate::pgoutput::ReplicaIdentity;
    use crate::schema::Column;
    use crate::values::value_kind;

    pub(crate) fn schema() -> TableSchema {
        let col = |name: &str, type_oid: u32, is_key: bool| Column {
            name: name.into(),
            type_oid,
            kind: value_kind(type_oid),
            is_key,
        };
        TableSchema {
            id: 1,
            table: TableRef::new("public", "todos"),
            qualified: "public.todos".into(),
            columns: vec![
                col("id", 25, true),
                col("n", 23, false),
                col("body", 25, false),
            ],
            replica_identity: ReplicaIdentity::Default,
            used: true,
        }
    }

    fn t(s: &str) -> TupleValue {
        TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn snapshot_and_stream_keys_agree() {
        let s = schema();
        let tuple = TupleData(vec![t("a1"), t("5"), TupleValue::Null]);
        let (key, row) = text_row(&s, [Some("a1"), Some("5"), None]);
        assert_eq!(tuple_key(&s, &tuple).unwrap(), key);
        assert_eq!(key, encode_key([Some(&b"a1"[..])]));
        let (stream_row, unchanged) = tuple_row(&s, &tuple).unwrap();
        assert_eq!(stream_row, row);
        assert!(unchanged.is_empty());
        assert_eq!(row.get("n"), Some(&SqliteValue::Integer(5)));
    }

    #[test]
    fn key_encoding_is_unambiguous() {
        let a = encode_key([Some(&b"ab"[..]), Some(&b"c"[..])]);
        let b = encode_key([Some(&b"a"[..]), Some(&b"bc"[..])]);
        assert_eq!(
            decode_key(&a),
            Some(vec![Some(&b"ab"[..]), Some(&b"c"[..])])
        );
        assert_eq!(
            decode_key(&encode_key([None, Some(&b""[..])])),
            Some(vec![None, Some(&b""[..])])
        );
        assert_eq!(decode_key(&[1, 0, 0]), None);
        assert_eq!(decode_key(&[1, 0, 0, 0, 9, b'x']), None);
        let c = encode_key([None, Some(&b""[..])]);
        assert_ne!(a, b);
        assert_ne!(c, encode_key([Some(&b""[..]), None]));
    }

    #[test]
    fn unchanged_columns_are_reported_and_reordered() {
        let s = schema();
        let (mut row, unchanged) =
            tuple_row(&s, &TupleData(vec![t("a"), TupleValue::Unchanged, t("x")])).unwrap();
        assert_eq!(unchanged, vec![1]);
        row.insert("n", SqliteValue::Integer(1));
        reorder(&s, &mut row);
        assert_eq!(row.0.keys().collect::<Vec<_>>(), ["id", "n", "body"]);
        assert!(matches!(
            tuple_key(&s, &TupleData(vec![TupleValue::Unchanged, t("1"), t("x")])),
            Err(TupleError::KeyUnavailable { .. })
        ));
        assert!(matches!(
            tuple_row(&s, &TupleData(vec![t("a")])),
            Err(TupleError::ColumnCount { .. })
        ));
    }
}
