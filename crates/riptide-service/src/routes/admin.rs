//! The sync-rules admin API (docs/protocol.md §9.2), behind `api.tokens`:
//!
//! - `POST /api/sync-rules/v1/deploy`: body `{"content": "<yaml>"}` or the raw YAML. Validates
//!   first (400 with every located problem), refuses with 422 `PSYNC_S4105` when the config file
//!   supplies the rules, then answers `{"data":{"slot_name", "id", "state"}}`.
//! - `POST /api/sync-rules/v1/validate`: `{"data":{"valid", "errors":[{message,line,column}]}}`.
//! - `GET /api/sync-rules/v1/current`: `{"data":{"current":{id,slot_name,content,state}|null,
//!   "next":…|null}}`.
//! - `POST /api/compact/v1/run`: compacts the active deployment now (body optional:
//!   `{"buckets": [names], "min_superseded": n}`, default every bucket with a superseded op) and
//!   answers what was done (see [`crate::compactor`]).
//!
//! Auth: `Authorization: Bearer|Token <one of api.tokens>`, compared in constant time. With no
//! tokens configured the admin API is disabled (403). Tokens are never logged.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use riptide_protocol::ErrorCode;
use riptide_storage::{Deployment, DeploymentState};
use serde::Serialize;
use serde_json::json;

use super::data;
use crate::auth::token_from_header;
use crate::error::error_chain;
use crate::instance_admin::InstanceAdminError;
use crate::rules_admin::{RuleProblem, RulesAdmin, RulesAdminError};
use crate::state::AppState;

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("the admin API is disabled: configure api.tokens to enable it")]
    Disabled,
    #[error("an admin token is required: Authorization: Bearer <one of api.tokens>")]
    MissingToken,
    #[error("the admin token is not one of api.tokens")]
    WrongToken,
    #[error("this service has no sync rules administration")]
    Unavailable,
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Rules(#[from] RulesAdminError),
    #[error("compaction failed")]
    Compaction(#[source] riptide_storage::StorageError),
    #[error(transparent)]
    Instance(#[from] InstanceAdminError),
}

impl AdminError {
    fn code(&self) -> ErrorCode {
        match self {
            AdminError::Disabled | AdminError::WrongToken => ErrorCode::S2101,
            AdminError::MissingToken => ErrorCode::S2106,
            AdminError::Unavailable => ErrorCode::S2002,
            AdminError::BadRequest(_) | AdminError::Rules(RulesAdminError::Invalid(_)) => {
                ErrorCode::S2001
            }
            AdminError::Rules(RulesAdminError::ManagedByConfig) => ErrorCode::S4105,
            AdminError::Rules(RulesAdminError::Storage(_) | RulesAdminError::Failed(_))
            | AdminError::Compaction(_)
            | AdminError::Instance(
                InstanceAdminError::Storage(_) | InstanceAdminError::Failed(_),
            ) => ErrorCode::S1001,
            AdminError::Instance(InstanceAdminError::Busy) => ErrorCode::S4106,
            AdminError::Instance(InstanceAdminError::NoActiveRules) => ErrorCode::S4104,
            AdminError::Rules(RulesAdminError::NotHolder(_))
            | AdminError::Instance(InstanceAdminError::NotHolder(_)) => ErrorCode::S1001,
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status = match self {
            // Disabled is not a credentials problem: no token can help.
            AdminError::Disabled => StatusCode::FORBIDDEN,
            // Another process can do it: not an internal error of this one.
            AdminError::Rules(RulesAdminError::NotHolder(_))
            | AdminError::Instance(InstanceAdminError::NotHolder(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        };
        let description = match &self {
            AdminError::Rules(RulesAdminError::Storage(_))
            | AdminError::Compaction(_)
            | AdminError::Instance(InstanceAdminError::Storage(_)) => {
                tracing::error!(error = %error_chain(&self), "sync rules admin request failed");
                "Internal server error".to_owned()
            }
            AdminError::Rules(RulesAdminError::Failed(_))
            | AdminError::Instance(InstanceAdminError::Failed(_)) => {
                tracing::error!(error = %self, "sync rules admin request failed");
                "Internal server error".to_owned()
            }
            AdminError::Rules(RulesAdminError::Invalid(problems)) => {
                let list: Vec<String> = problems.iter().map(describe).collect();
                format!("invalid sync rules: {}", list.join("; "))
            }
            other => {
                tracing::debug!(error = %other, code = %code, "admin request rejected");
                other.to_string()
            }
        };
        let mut body = json!({ "error": {
            "name": code.name(),
            "code": code.as_str(),
            "status": status.as_u16(),
            "description": description,
        }});
        if let AdminError::Rules(RulesAdminError::Invalid(problems)) = &self {
            body["error"]["errors"] = json!(problems);
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn describe(p: &RuleProblem) -> String {
    match (p.line, p.column) {
        (Some(l), Some(c)) => format!("{} (line {l}, column {c})", p.message),
        _ => p.message.clone(),
    }
}

/// Checks the admin token and returns the rules admin.
fn authorize<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
) -> Result<&'a dyn RulesAdmin, AdminError> {
    check_admin_token(state, headers)?;
    state.rules_admin.as_deref().ok_or(AdminError::Unavailable)
}

/// Checks `Authorization` against `api.tokens` (also for the admin API v1).
pub(crate) fn check_admin_token(state: &AppState, headers: &HeaderMap) -> Result<(), AdminError> {
    let tokens = &state.inner.options.api_tokens;
    if tokens.is_empty() {
        return Err(AdminError::Disabled);
    }
    let token = token_from_header(headers).map_err(|_| AdminError::MissingToken)?;
    if !tokens.accepts(token) {
        return Err(AdminError::WrongToken);
    }
    Ok(())
}

/// The YAML of a request body: `{"content": "…"}` as JSON, or the body itself.
fn rules_content(headers: &HeaderMap, body: &Bytes) -> Result<String, AdminError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| AdminError::BadRequest("the request body is not UTF-8".into()))?;
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    // A JSON object body counts as `{"content": …}` even without the content type (curl -d).
    let looks_json = text.trim_start().starts_with('{');
    if json_type || looks_json {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => {
                return match map.get("content") {
                    Some(serde_json::Value::String(s)) => Ok(s.clone()),
                    _ => Err(AdminError::BadRequest(
                        "the JSON body needs `content`: the sync rules YAML as a string".into(),
                    )),
                };
            }
            _ if json_type => {
                return Err(AdminError::BadRequest(
                    "the JSON body must be an object `{\"content\": \"<sync rules yaml>\"}`".into(),
                ));
            }
            // YAML flow mappings start with `{` too.
            _ => {}
        }
    }
    if text.trim().is_empty() {
        return Err(AdminError::BadRequest(
            "the request body is empty: send the sync rules YAML".into(),
        ));
    }
    Ok(text.to_owned())
}

#[derive(Debug, Serialize)]
pub struct DeploymentView {
    pub id: i64,
    pub slot_name: String,
    pub content: String,
    pub state: &'static str,
}

impl From<Deployment> for DeploymentView {
    fn from(d: Deployment) -> Self {
        DeploymentView {
            id: d.id,
            slot_name: d.slot_name,
            content: d.content,
            state: state_name(d.state),
        }
    }
}

fn state_name(s: DeploymentState) -> &'static str {
    s.as_str()
}

/// `POST /api/sync-rules/v1/deploy`.
pub async fn deploy(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    let admin = authorize(&state, &headers)?;
    if admin.managed_by_config() {
        return Err(RulesAdminError::ManagedByConfig.into());
    }
    let content = rules_content(&headers, &body)?;
    let problems = admin.validate(&content).await?;
    if !problems.is_empty() {
        return Err(RulesAdminError::Invalid(problems).into());
    }
    let d = admin.deploy(&content).await?;
    tracing::info!(deployment = d.id, slot = %d.slot_name, "sync rules deployed through the admin API");
    Ok(data(json!({
        "slot_name": d.slot_name,
        "id": d.id,
        "state": state_name(d.state),
    }))
    .into_response())
}

/// `POST /api/sync-rules/v1/validate`.
pub async fn validate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    let admin = authorize(&state, &headers)?;
    let content = rules_content(&headers, &body)?;
    let problems = admin.validate(&content).await?;
    let definitions: Vec<String> = riptide_rules::SyncRules::parse(&content)
        .map(|r| r.definitions().into_iter().map(|(name, _)| name).collect())
        .unwrap_or_default();
    Ok(data(json!({
        "valid": problems.is_empty(),
        "errors": problems,
        "bucket_definitions": definitions,
    }))
    .into_response())
}

/// `GET /api/sync-rules/v1/current`.
pub async fn current(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AdminError> {
    let admin = authorize(&state, &headers)?;
    let current = admin.current().await?;
    Ok(data(json!({
        "current": current.current.map(DeploymentView::from),
        "next": current.next.map(DeploymentView::from),
        "managed_by_config": admin.managed_by_config(),
    }))
    .into_response())
}

/// The optional body of `POST /api/compact/v1/run`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CompactRequest {
    /// Only these buckets (full names).
    #[serde(default)]
    buckets: Vec<String>,
    /// Buckets with at least this many superseded ops (default 1; 0: every bucket).
    min_superseded: Option<i64>,
}

/// `POST /api/compact/v1/run`: compacts the active deployment now.
pub async fn compact(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    check_admin_token(&state, &headers)?;
    let request: CompactRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CompactRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AdminError::BadRequest(format!("invalid compaction request: {e}")))?
    };
    let options = riptide_storage::CompactOptions {
        min_superseded: request.min_superseded.unwrap_or(1).max(0),
        buckets: request.buckets,
        ..riptide_storage::CompactOptions::default()
    };
    // Through the lease holder's fenced storage when a server runs this service; the service
    // alone (tests, embedding) has no lease and compacts its own storage.
    let storage = match &state.instance_admin {
        Some(admin) => admin.compaction_storage().map_err(AdminError::Instance)?,
        None => state.inner.storage.clone(),
    };
    let started = std::time::Instant::now();
    let done = crate::compactor::compact_active(storage.as_ref(), state.metrics(), &options)
        .await
        .map_err(AdminError::Compaction)?;
    let (deployment, stats) = match done {
        Some((id, stats)) => (Some(id), stats),
        None => (None, riptide_storage::CompactStats::default()),
    };
    Ok(data(json!({
        "deployment": deployment,
        "buckets": stats.buckets,
        "ops_moved": stats.ops_moved,
        "ops_removed": stats.ops_removed,
        "bytes_reclaimed": stats.bytes_reclaimed,
        "buckets_busy": stats.buckets_busy,
        "ms": started.elapsed().as_millis() as u64,
    }))
    .into_response())
}
