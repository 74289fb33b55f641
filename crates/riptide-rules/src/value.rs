//! SQLite values (what a synced row holds on the client) and rows of them.

use indexmap::IndexMap;

/// A SQLite value: the type system of output rows and of rule evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum SqliteValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl SqliteValue {
    pub fn is_null(&self) -> bool {
        matches!(self, SqliteValue::Null)
    }
}

/// A row: column name → value, in source column order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row(pub IndexMap<String, SqliteValue>);

#[derive(Debug, thiserror::Error)]
#[error("stored row state cannot be decoded: {0}")]
pub struct RowDecodeError(pub String);

impl Row {
    pub fn new() -> Self {
        Row(IndexMap::new())
    }

    pub fn get(&self, column: &str) -> Option<&SqliteValue> {
        self.0.get(column)
    }

    pub fn insert(&mut self, column: impl Into<String>, value: SqliteValue) {
        self.0.insert(column.into(), value);
    }

    /// Encodes the row for storage as current row state (a BSON document: it keeps i64, f64
    /// including NaN and infinities, text and blobs exactly).
    pub fn encode(&self) -> Vec<u8> {
        let mut doc = bson::Document::new();
        for (k, v) in &self.0 {
            let b = match v {
                SqliteValue::Null => bson::Bson::Null,
                SqliteValue::Integer(i) => bson::Bson::Int64(*i),
                SqliteValue::Real(f) => bson::Bson::Double(*f),
                SqliteValue::Text(s) => bson::Bson::String(s.clone()),
                SqliteValue::Blob(b) => bson::Bson::Binary(bson::Binary {
                    subtype: bson::spec::BinarySubtype::Generic,
                    bytes: b.clone(),
                }),
            };
            doc.insert(k.clone(), b);
        }
        let mut out = Vec::new();
        // Writing a document of plain values into a Vec cannot fail.
        doc.to_writer(&mut out).expect("row encodes as BSON");
        out
    }

    /// Decodes what [`Row::encode`] produced.
    pub fn decode(bytes: &[u8]) -> Result<Row, RowDecodeError> {
        let doc = bson::Document::from_reader(bytes).map_err(|e| RowDecodeError(e.to_string()))?;
        let mut row = Row::new();
        for (k, v) in doc {
            let v = match v {
                bson::Bson::Null => SqliteValue::Null,
                bson::Bson::Int64(i) => SqliteValue::Integer(i),
                bson::Bson::Int32(i) => SqliteValue::Integer(i64::from(i)),
                bson::Bson::Double(f) => SqliteValue::Real(f),
                bson::Bson::String(s) => SqliteValue::Text(s),
                bson::Bson::Binary(b) => SqliteValue::Blob(b.bytes),
                other => return Err(RowDecodeError(format!("unexpected BSON value {other:?}"))),
            };
            row.0.insert(k, v);
        }
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_round_trips_exactly() {
        let mut row = Row::new();
        row.insert("id", SqliteValue::Text("a".into()));
        row.insert("big", SqliteValue::Integer(i64::MAX));
        row.insert("nan", SqliteValue::Real(f64::INFINITY));
        row.insert("b", SqliteValue::Blob(vec![0, 1, 2]));
        row.insert("n", SqliteValue::Null);
        assert_eq!(Row::decode(&row.encode()).unwrap(), row);
        assert!(Row::decode(b"garbage").is_err());
    }
}
