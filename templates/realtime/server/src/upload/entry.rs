//! The SDK's `CrudEntry` JSON, parsed strictly: every problem is reported with the entry's
//! position, before anything touches the database.

use serde_json::{Map, Value};

use super::UploadError;

/// The operation of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Insert or replace the row (the SDK's `PUT`).
    Put,
    /// Update the given columns (`PATCH`).
    Patch,
    /// Delete the row (`DELETE`).
    Delete,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Put => "PUT",
            Op::Patch => "PATCH",
            Op::Delete => "DELETE",
        }
    }
}

/// One uploaded change.
#[derive(Debug, Clone)]
pub struct CrudEntry {
    pub op: Op,
    pub table: String,
    pub id: String,
    pub data: Map<String, Value>,
    pub op_id: Option<i64>,
    pub tx_id: Option<i64>,
}

/// Parses `{"batch":[CrudEntry…]}`.
pub fn parse_batch(body: &[u8]) -> Result<Vec<CrudEntry>, UploadError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| UploadError::MalformedJson(e.to_string()))?;
    let Some(batch) = value.get("batch") else {
        return Err(UploadError::InvalidBatch(
            "the body must be {\"batch\": [CrudEntry, …]}".into(),
        ));
    };
    let Value::Array(items) = batch else {
        return Err(UploadError::InvalidBatch("`batch` must be an array".into()));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_entry(index, item))
        .collect()
}

fn invalid(index: usize, message: impl Into<String>) -> UploadError {
    UploadError::InvalidEntry {
        index,
        message: message.into(),
    }
}

fn parse_entry(index: usize, item: &Value) -> Result<CrudEntry, UploadError> {
    let Value::Object(obj) = item else {
        return Err(invalid(index, "an entry must be a JSON object"));
    };
    let op = match obj.get("op").and_then(Value::as_str) {
        Some("PUT") => Op::Put,
        Some("PATCH") => Op::Patch,
        Some("DELETE") => Op::Delete,
        _ => {
            return Err(invalid(
                index,
                "`op` must be \"PUT\", \"PATCH\" or \"DELETE\"",
            ));
        }
    };
    let table = match obj.get("type") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        _ => {
            return Err(invalid(
                index,
                "`type` (the table name) must be a non-empty string",
            ));
        }
    };
    let id = match obj.get("id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        None | Some(Value::Null) => return Err(UploadError::MissingId { index }),
        Some(Value::String(_)) => return Err(UploadError::MissingId { index }),
        Some(_) => return Err(invalid(index, "`id` must be a string")),
    };
    let data = match obj.get("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return Err(invalid(index, "`data` must be an object")),
    };
    let number = |key: &str| -> Result<Option<i64>, UploadError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| invalid(index, format!("`{key}` must be an integer"))),
        }
    };
    Ok(CrudEntry {
        op,
        table,
        id,
        data,
        op_id: number("op_id")?,
        tx_id: number("tx_id")?,
    })
}
