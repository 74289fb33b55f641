//! Checks an entry against the catalog and converts its values by column type.
//!
//! Client databases are SQLite: uuids, text and timestamps arrive as strings, booleans as 0/1
//! integers. Each value becomes the text form of its Postgres value, bound as a text parameter
//! and cast to the column's type in SQL (`$1::text::boolean`), so one parameter type serves every
//! column while wrong types are still refused here, precisely.

use serde_json::Value;

use super::UploadError;
use super::catalog::{Catalog, Column, Table, ValueKind};
use super::entry::{CrudEntry, Op};

/// A column and its new value (`None` = SQL NULL), as text.
#[derive(Debug, Clone)]
pub struct ColumnValue<'a> {
    pub column: &'a Column,
    pub value: Option<String>,
}

/// A checked entry, ready for authorisation and the merge policy.
#[derive(Debug, Clone)]
pub struct Write<'a> {
    /// Position in the batch (for error messages).
    pub index: usize,
    pub op: Op,
    pub table: &'a Table,
    /// The row id, canonical text of the `id` column's type.
    pub id: String,
    /// The given columns (never `id`); empty for DELETE.
    pub values: Vec<ColumnValue<'a>>,
}

impl<'a> Write<'a> {
    /// The new value of `column`: `None` if the entry does not set it, `Some(None)` for NULL.
    pub fn value(&self, column: &str) -> Option<Option<&str>> {
        self.values
            .iter()
            .find(|v| v.column.name == column)
            .map(|v| v.value.as_deref())
    }

    /// Sets (or adds) a column's value; the column must be in the table.
    pub fn set(&mut self, column: &str, value: Option<String>) -> bool {
        if let Some(existing) = self.values.iter_mut().find(|v| v.column.name == column) {
            existing.value = value;
            return true;
        }
        match self.table.columns.get(column) {
            Some(col) => {
                self.values.push(ColumnValue { column: col, value });
                true
            }
            None => false,
        }
    }

    /// Removes a column from the write.
    pub fn unset(&mut self, column: &str) {
        self.values.retain(|v| v.column.name != column);
    }
}

/// Checks `entry` against `catalog` and converts its values.
pub fn check<'a>(
    catalog: &'a Catalog,
    index: usize,
    entry: &CrudEntry,
) -> Result<Write<'a>, UploadError> {
    let table = catalog
        .table(&entry.table)
        .ok_or_else(|| UploadError::UnknownTable {
            index,
            table: entry.table.clone(),
        })?;
    let id_column = table.id_column().ok_or_else(|| UploadError::UnknownTable {
        index,
        table: entry.table.clone(),
    })?;
    let id = convert(&Value::String(entry.id.clone()), id_column)
        .map_err(|message| invalid_value(index, table, id_column, message))?
        .ok_or(UploadError::MissingId { index })?;
    let mut values = Vec::new();
    if entry.op != Op::Delete {
        for (name, value) in &entry.data {
            let column = table
                .columns
                .get(name)
                .ok_or_else(|| UploadError::UnknownColumn {
                    index,
                    table: table.name.clone(),
                    column: name.clone(),
                })?;
            if column.generated {
                return Err(invalid_value(
                    index,
                    table,
                    column,
                    "is a generated column and cannot be written".into(),
                ));
            }
            let converted =
                convert(value, column).map_err(|m| invalid_value(index, table, column, m))?;
            if name == "id" {
                if converted.as_deref() != Some(id.as_str()) {
                    return Err(invalid_value(
                        index,
                        table,
                        column,
                        "differs from the entry's id".into(),
                    ));
                }
                continue;
            }
            values.push(ColumnValue {
                column,
                value: converted,
            });
        }
    }
    Ok(Write {
        index,
        op: entry.op,
        table,
        id,
        values,
    })
}

fn invalid_value(index: usize, table: &Table, column: &Column, message: String) -> UploadError {
    UploadError::InvalidValue {
        index,
        table: table.name.clone(),
        column: column.name.clone(),
        message,
    }
}

/// The text form of `value` for `column`, or why it does not fit.
fn convert(value: &Value, column: &Column) -> Result<Option<String>, String> {
    if value.is_null() {
        return Ok(None);
    }
    let expected = |what: &str| {
        format!(
            "expects {what} ({}), got {}",
            column.sql_type,
            kind_of(value)
        )
    };
    let text = match column.kind {
        ValueKind::Uuid => match value {
            Value::String(s) => uuid::Uuid::parse_str(s)
                .map(|u| u.to_string())
                .map_err(|_| {
                    format!("expects a uuid ({}), got a malformed uuid", column.sql_type)
                })?,
            _ => return Err(expected("a uuid string")),
        },
        ValueKind::Bool => match value {
            Value::Bool(b) => b.to_string(),
            Value::Number(n) if n.as_i64() == Some(0) => "false".into(),
            Value::Number(n) if n.as_i64() == Some(1) => "true".into(),
            _ => return Err(expected("a boolean: true/false or 0/1")),
        },
        ValueKind::Integer => match value {
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => i.to_string(),
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{f:.0}"),
                _ => return Err(expected("an integer")),
            },
            _ => return Err(expected("an integer")),
        },
        ValueKind::Number => match value {
            Value::Number(n) => n.to_string(),
            _ => return Err(expected("a number")),
        },
        ValueKind::Text => match value {
            Value::String(s) => s.clone(),
            _ => return Err(expected("text")),
        },
        ValueKind::Json => match value {
            // SQLite keeps JSON as text.
            Value::String(s) => {
                serde_json::from_str::<Value>(s).map_err(|_| {
                    format!(
                        "expects JSON ({}), got text that is not JSON",
                        column.sql_type
                    )
                })?;
                s.clone()
            }
            other => other.to_string(),
        },
        ValueKind::DateTime => match value {
            Value::String(s) => s.clone(),
            _ => return Err(expected("a date/time string")),
        },
        ValueKind::Other => match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    };
    if text.contains('\0') {
        return Err("contains a NUL character, which Postgres text cannot hold".into());
    }
    Ok(Some(text))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
