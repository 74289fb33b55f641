//! Uploads: `POST /api/sync` with `{"batch":[CrudEntry…]}`.
//!
//! 1. [`entry`] parses the batch strictly; [`convert`] checks every entry's table, columns and
//!    values against the [`catalog`] — all before touching the database.
//! 2. The whole batch runs in one Postgres transaction: a record in `applied_uploads` first
//!    (idempotency, below), then for each entry [`authorize`] and the [`merge_policy`](crate::merge_policy).
//!    Any refusal or database error rolls everything back.
//!
//! ## Idempotency
//! The SDK retries a batch whose response it did not get. Replaying it is not harmless even
//! though every operation is an upsert, update or delete: if someone else wrote the same row in
//! between, the replay would bring back the older value. So each applied batch is recorded as
//! (user, SHA-256 of the batch's canonical form — op ids, ops, tables, ids and data). The SDK's
//! `op_id`s are per client database, so two devices of one user can send the same op ids; the
//! content hash keeps their different batches apart. A retry is answered
//! `{"applied":0,"already_applied":true}` and changes nothing. Records older than 30 days are
//! removed at start-up.

pub mod authorize;
pub mod catalog;
pub mod convert;
pub mod entry;
pub mod sql;

use axum::http::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::merge_policy;
use catalog::Catalog;
use entry::CrudEntry;

/// The largest accepted request body (the default of `Limits::upload_body_bytes`).
pub const MAX_BODY_BYTES: usize = crate::limits::UPLOAD_BODY_BYTES;

/// Why a batch was not applied (nothing of it was).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidBatch(String),
    #[error("entry {index}: {message}")]
    InvalidEntry { index: usize, message: String },
    #[error("entry {index} has no id")]
    MissingId { index: usize },
    #[error("entry {index}: unknown table {table:?} (not a synced table)")]
    UnknownTable { index: usize, table: String },
    #[error("entry {index}: table {table} has no column {column:?}")]
    UnknownColumn {
        index: usize,
        table: String,
        column: String,
    },
    #[error("entry {index}: {table}.{column} {message}")]
    InvalidValue {
        index: usize,
        table: String,
        column: String,
        message: String,
    },
    #[error("entry {index} ({table}) is not allowed: {reason}")]
    Forbidden {
        index: usize,
        table: String,
        reason: String,
    },
    #[error("entry {index}: {kind} of constraint {constraint}")]
    Constraint {
        index: usize,
        kind: &'static str,
        constraint: String,
        table: Option<String>,
        column: Option<String>,
    },
    #[error("entry {index}: {message}")]
    DataException { index: usize, message: String },
    #[error("the database is busy; retry the upload")]
    Retry(#[source] tokio_postgres::Error),
    #[error("the upload failed in the database")]
    Database(#[source] tokio_postgres::Error),
    #[error("no database connection for the upload")]
    Pool(#[source] deadpool_postgres::PoolError),
}

impl UploadError {
    /// Classifies a database error raised by entry `index`.
    pub fn database(index: usize, source: tokio_postgres::Error) -> UploadError {
        use tokio_postgres::error::SqlState;
        let Some(db) = source.as_db_error() else {
            return UploadError::Database(source);
        };
        let code = db.code().clone();
        let kind = if code == SqlState::UNIQUE_VIOLATION {
            Some("unique violation")
        } else if code == SqlState::FOREIGN_KEY_VIOLATION {
            Some("foreign key violation")
        } else if code == SqlState::NOT_NULL_VIOLATION {
            Some("not-null violation")
        } else if code == SqlState::CHECK_VIOLATION {
            Some("check violation")
        } else if code == SqlState::EXCLUSION_VIOLATION {
            Some("exclusion violation")
        } else {
            None
        };
        if let Some(kind) = kind {
            let constraint = db
                .constraint()
                .map(str::to_owned)
                .or_else(|| db.column().map(|c| format!("{c} NOT NULL")))
                .unwrap_or_else(|| "(unnamed)".into());
            return UploadError::Constraint {
                index,
                kind,
                constraint,
                table: db.table().map(str::to_owned),
                column: db.column().map(str::to_owned),
            };
        }
        if code.code().starts_with("22") {
            // Data exceptions (a timestamp that does not parse, a number out of range): the
            // message is about the client's own value.
            return UploadError::DataException {
                index,
                message: db.message().to_owned(),
            };
        }
        if code == SqlState::T_R_SERIALIZATION_FAILURE || code == SqlState::T_R_DEADLOCK_DETECTED {
            return UploadError::Retry(source);
        }
        UploadError::Database(source)
    }

    pub(crate) fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            UploadError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            UploadError::InvalidBatch(_) => (StatusCode::BAD_REQUEST, "invalid_batch"),
            UploadError::InvalidEntry { .. } => (StatusCode::BAD_REQUEST, "invalid_entry"),
            UploadError::MissingId { .. } => (StatusCode::BAD_REQUEST, "missing_id"),
            UploadError::UnknownTable { .. } => (StatusCode::BAD_REQUEST, "unknown_table"),
            UploadError::UnknownColumn { .. } => (StatusCode::BAD_REQUEST, "unknown_column"),
            UploadError::InvalidValue { .. } | UploadError::DataException { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_value")
            }
            UploadError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            UploadError::Constraint { kind, .. } => match *kind {
                "unique violation" => (StatusCode::CONFLICT, "unique_violation"),
                "foreign key violation" => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "foreign_key_violation")
                }
                "not-null violation" => (StatusCode::UNPROCESSABLE_ENTITY, "not_null_violation"),
                "check violation" => (StatusCode::UNPROCESSABLE_ENTITY, "check_violation"),
                _ => (StatusCode::CONFLICT, "constraint_violation"),
            },
            UploadError::Retry(_) => (StatusCode::SERVICE_UNAVAILABLE, "retry"),
            UploadError::Database(_) | UploadError::Pool(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }

    /// Adds `entry`, `table`, `column`, `constraint` to the JSON error object where known.
    pub(crate) fn add_details(&self, error: &mut Value) {
        let (index, table, column, constraint) = match self {
            UploadError::InvalidEntry { index, .. }
            | UploadError::MissingId { index }
            | UploadError::DataException { index, .. } => (Some(*index), None, None, None),
            UploadError::UnknownTable { index, table } => (Some(*index), Some(table), None, None),
            UploadError::UnknownColumn {
                index,
                table,
                column,
            }
            | UploadError::InvalidValue {
                index,
                table,
                column,
                ..
            } => (Some(*index), Some(table), Some(column), None),
            UploadError::Forbidden { index, table, .. } => (Some(*index), Some(table), None, None),
            UploadError::Constraint {
                index,
                constraint,
                table,
                column,
                ..
            } => (
                Some(*index),
                table.as_ref(),
                column.as_ref(),
                Some(constraint),
            ),
            _ => (None, None, None, None),
        };
        if let Some(index) = index {
            error["entry"] = index.into();
        }
        if let Some(table) = table {
            error["table"] = table.clone().into();
        }
        if let Some(column) = column {
            error["column"] = column.clone().into();
        }
        if let Some(constraint) = constraint {
            error["constraint"] = constraint.clone().into();
        }
    }
}

/// What an upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// Entries applied by this request.
    pub applied: usize,
    /// The same batch was applied before; nothing changed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub already_applied: bool,
}

/// The batch's identity: SHA-256 over its entries in a canonical form (data keys sorted).
pub fn batch_key(entries: &[CrudEntry]) -> Vec<u8> {
    let mut hash = Sha256::new();
    for e in entries {
        let mut data: Vec<(&String, &Value)> = e.data.iter().collect();
        data.sort_by(|a, b| a.0.cmp(b.0));
        let canonical = serde_json::json!([
            e.op.as_str(),
            e.table,
            e.id,
            e.op_id,
            e.tx_id,
            data.iter()
                .map(|(k, v)| serde_json::json!([k, canonical(v)]))
                .collect::<Vec<_>>(),
        ]);
        hash.update(canonical.to_string().as_bytes());
        hash.update(b"\n");
    }
    hash.finalize().to_vec()
}

/// `value` with object keys sorted, whatever the map implementation.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            Value::Array(
                pairs
                    .into_iter()
                    .map(|(k, v)| serde_json::json!([k, canonical(v)]))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Parses, checks and applies one batch for `user`, all or nothing.
pub async fn apply_batch(
    pool: &deadpool_postgres::Pool,
    catalog: &Catalog,
    user: Uuid,
    body: &[u8],
) -> Result<Outcome, UploadError> {
    let entries = entry::parse_batch(body)?;
    if entries.is_empty() {
        return Ok(Outcome {
            applied: 0,
            already_applied: false,
        });
    }
    let mut writes = entries
        .iter()
        .enumerate()
        .map(|(index, e)| convert::check(catalog, index, e))
        .collect::<Result<Vec<_>, _>>()?;

    let mut client = pool.get().await.map_err(UploadError::Pool)?;
    let tx = client.transaction().await.map_err(UploadError::Database)?;
    let key = batch_key(&entries);
    let first_op = entries.iter().filter_map(|e| e.op_id).min();
    let last_op = entries.iter().filter_map(|e| e.op_id).max();
    let count = i32::try_from(entries.len()).unwrap_or(i32::MAX);
    let recorded = tx
        .execute(
            "INSERT INTO applied_uploads (user_id, batch_sha256, first_op_id, last_op_id, entries)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[&user, &key, &first_op, &last_op, &count],
        )
        .await
        .map_err(UploadError::Database)?;
    if recorded == 0 {
        tracing::info!(user_id = %user, entries = entries.len(), "upload retried: already applied");
        return Ok(Outcome {
            applied: 0,
            already_applied: true,
        });
    }
    for write in &mut writes {
        authorize::authorize(&tx, user, write).await?;
        merge_policy::apply(&tx, write)
            .await
            .map_err(|e| UploadError::database(write.index, e))?;
    }
    // No constraint is deferred in this schema, so a failed commit is the database's failure.
    tx.commit().await.map_err(UploadError::Database)?;
    tracing::info!(user_id = %user, entries = writes.len(), "upload applied");
    Ok(Outcome {
        applied: writes.len(),
        already_applied: false,
    })
}

/// Removes idempotency records older than 30 days.
pub async fn prune_applied(client: &tokio_postgres::Client) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM applied_uploads WHERE applied_at < now() - interval '30 days'",
            &[],
        )
        .await
}
