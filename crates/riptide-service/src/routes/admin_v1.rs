//! PowerSync's admin API v1 (docs/protocol.md §9.2), behind `api.tokens` like the sync-rules
//! admin routes, backed by an [`InstanceAdmin`]:
//!
//! - `POST /api/admin/v1/diagnostics`, body `{"sync_rules_content"?: bool}`: the source
//!   connection, the active and the deploying deployment (slot, snapshot done, last LSN and
//!   checkpoint time, replication lag in bytes, tables, errors).
//! - `POST /api/admin/v1/validate`, body `{"sync_rules": "<yaml>"}`: the rules against the
//!   source database, as a `SyncRulesStatus`.
//! - `POST /api/admin/v1/schema`, body `{}`: tables and columns of the source database.
//! - `POST /api/admin/v1/execute-sql`, body `{"sql": {"query", "args": [...]}}`: only with
//!   `debug_api: true` on the connection; read-only, row-limited, under a statement timeout.
//! - `POST /api/admin/v1/reprocess` (`{"connections":[{id,tag,slot_name}]}`) and
//!   `POST /api/sync-rules/v1/reprocess` (`{"slot_name"}`): the active rules again on a new slot;
//!   409 `PSYNC_S4106` while a deploy is processing, 422 `PSYNC_S4104` with no active rules.
//!
//! Answers are wrapped as `{"data": …}`; bodies that are not the expected JSON object answer 400
//! `PSYNC_S2001`. Extra keys are accepted (as upstream).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::admin::{AdminError, check_admin_token};
use super::data;
use crate::instance_admin::{InstanceAdmin, SqlArg};
use crate::state::AppState;

/// Checks the admin token and returns the instance admin.
fn authorize<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
) -> Result<&'a dyn InstanceAdmin, AdminError> {
    check_admin_token(state, headers)?;
    state
        .instance_admin
        .as_deref()
        .ok_or(AdminError::Unavailable)
}

/// The JSON object of a request body; an empty body counts as `{}`.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, AdminError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| AdminError::BadRequest(format!("invalid request body: {e}")))
}

#[derive(Debug, Deserialize)]
struct DiagnosticsRequest {
    #[serde(default)]
    sync_rules_content: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ValidateRequest {
    sync_rules: String,
}

#[derive(Debug, Deserialize)]
struct ExecuteSqlRequest {
    sql: SqlRequest,
}

#[derive(Debug, Deserialize)]
struct SqlRequest {
    query: String,
    #[serde(default)]
    args: Vec<SqlArg>,
}

/// An object, whatever it holds (`{}` requests).
#[derive(Debug, Deserialize)]
struct EmptyRequest {}

/// `POST /api/admin/v1/diagnostics`.
pub async fn diagnostics(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let admin = authorize(&state, &headers)?;
    let request: DiagnosticsRequest = body(&bytes)?;
    let diagnostics = admin
        .diagnostics(request.sync_rules_content.unwrap_or(false))
        .await?;
    Ok(data(diagnostics).into_response())
}

/// `POST /api/admin/v1/validate`.
pub async fn validate(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let admin = authorize(&state, &headers)?;
    let request: ValidateRequest = body(&bytes)?;
    Ok(data(admin.validate(&request.sync_rules).await?).into_response())
}

/// `POST /api/admin/v1/schema`.
pub async fn schema(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let admin = authorize(&state, &headers)?;
    let _: EmptyRequest = body(&bytes)?;
    Ok(data(admin.schema().await?).into_response())
}

/// `POST /api/admin/v1/execute-sql`.
pub async fn execute_sql(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let admin = authorize(&state, &headers)?;
    let request: ExecuteSqlRequest = body(&bytes)?;
    tracing::info!("admin execute-sql request");
    let outcome = admin
        .execute_sql(&request.sql.query, &request.sql.args)
        .await;
    Ok(data(outcome).into_response())
}

/// `POST /api/admin/v1/reprocess`.
pub async fn reprocess(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let admin = authorize(&state, &headers)?;
    let _: EmptyRequest = body(&bytes)?;
    let connection = admin.reprocess().await?;
    tracing::info!(slot = %connection.slot_name, "reprocessing the active sync rules (admin API)");
    Ok(data(json!({ "connections": [connection] })).into_response())
}

/// `POST /api/sync-rules/v1/reprocess`.
pub async fn reprocess_sync_rules(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    let admin = authorize(&state, &headers)?;
    let _: EmptyRequest = body(&bytes)?;
    let connection = admin.reprocess().await?;
    tracing::info!(slot = %connection.slot_name, "reprocessing the active sync rules (admin API)");
    Ok(data(json!({ "slot_name": connection.slot_name })).into_response())
}
