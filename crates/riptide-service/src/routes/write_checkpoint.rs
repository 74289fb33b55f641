//! Write checkpoints (docs/protocol.md §4): `GET /write-checkpoint2.json` and
//! `POST /sync/checkpoint-request`. Both read the source WAL position, store the write
//! checkpoint with it, then emit a logical message on the source so replication passes that
//! position even when the upload changed nothing replicated. Streams of the same user/client are
//! told right away; they report the id once a checkpoint's LSN covers it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use riptide_protocol::OpId;
use serde::{Deserialize, Serialize};

use super::sync_stream::check_client_id;
use super::{Data, data};
use crate::auth::AuthenticatedUser;
use crate::error::ApiError;
use crate::state::AppState;
use crate::write_checkpoints::WriteCheckpointNotice;

#[derive(Debug, Deserialize)]
pub struct WriteCheckpointQuery {
    #[serde(default)]
    client_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct WriteCheckpointResponse {
    write_checkpoint: OpId,
}

pub async fn write_checkpoint2(
    State(state): State<AppState>,
    AuthenticatedUser(user): AuthenticatedUser,
    query: Result<Query<WriteCheckpointQuery>, QueryRejection>,
) -> Result<Json<Data<WriteCheckpointResponse>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::Validation(e.body_text()))?;
    let client_id = query.client_id.unwrap_or_default();
    check_client_id(&state, Some(&client_id))?;
    let inner = &state.inner;
    let lsn = inner.source.current_lsn().await?;
    let id = inner
        .storage
        .create_write_checkpoint(&user.user_id, &client_id, lsn)
        .await?;
    prune(&state, &user.user_id).await?;
    inner.source.emit_ping().await?;
    inner.metrics.write_checkpoint_created();
    tracing::debug!(user_id = %user.user_id, client_id = %client_id, %lsn, write_checkpoint = %id, "write checkpoint created");
    inner.write_checkpoints.notify(WriteCheckpointNotice {
        user_id: user.user_id,
        client_id,
        id,
    });
    Ok(data(WriteCheckpointResponse {
        write_checkpoint: id,
    }))
}

#[derive(Debug, Serialize)]
pub struct CheckpointRequestResponse {
    checkpoint_request_id: OpId,
}

/// A validated `POST /sync/checkpoint-request` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRequest {
    pub client_id: String,
    pub checkpoint_request_id: OpId,
}

impl CheckpointRequest {
    /// `{"client_id": string, "checkpoint_request_id": string | number}`, the id a positive
    /// 64-bit integer.
    pub fn parse(body: &[u8]) -> Result<CheckpointRequest, ApiError> {
        let invalid = |m: &str| ApiError::Validation(m.to_owned());
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| invalid("body must be a JSON object"))?;
        let obj = value
            .as_object()
            .ok_or_else(|| invalid("body must be a JSON object"))?;
        let client_id = obj
            .get("client_id")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| invalid("client_id must be a string"))?
            .to_owned();
        let id = match obj.get("checkpoint_request_id") {
            Some(serde_json::Value::String(s)) => s.parse::<OpId>().ok().map(|o| o.0),
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            _ => None,
        };
        let id = id
            .filter(|&i| i > 0)
            .ok_or_else(|| invalid("checkpoint_request_id must be a positive 64-bit integer"))?;
        Ok(CheckpointRequest {
            client_id,
            checkpoint_request_id: OpId(id),
        })
    }
}

pub async fn checkpoint_request(
    State(state): State<AppState>,
    AuthenticatedUser(user): AuthenticatedUser,
    body: Bytes,
) -> Result<Json<Data<CheckpointRequestResponse>>, ApiError> {
    let request = CheckpointRequest::parse(&body)?;
    check_client_id(&state, Some(&request.client_id))?;
    let inner = &state.inner;
    let lsn = inner.source.current_lsn().await?;
    let id = inner
        .storage
        .request_checkpoint(
            &user.user_id,
            &request.client_id,
            request.checkpoint_request_id,
            lsn,
        )
        .await?;
    prune(&state, &user.user_id).await?;
    inner.source.emit_ping().await?;
    inner.metrics.write_checkpoint_created();
    inner.write_checkpoints.notify(WriteCheckpointNotice {
        user_id: user.user_id,
        client_id: request.client_id,
        id,
    });
    Ok(data(CheckpointRequestResponse {
        checkpoint_request_id: id,
    }))
}

/// Keeps the user's write-checkpoint counters within `max_write_checkpoint_clients_per_user`
/// and `write_checkpoint_retention` (the one just used is the newest, so it stays).
async fn prune(state: &AppState, user_id: &str) -> Result<(), ApiError> {
    let limits = state.limits();
    let pruned = state
        .inner
        .storage
        .prune_write_checkpoints(
            user_id,
            limits.max_write_checkpoint_clients_per_user.max(1),
            limits.write_checkpoint_retention,
        )
        .await?;
    state.metrics().write_checkpoints_pruned(pruned);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_checkpoint_requests() {
        let ok = |b: &str| CheckpointRequest::parse(b.as_bytes()).unwrap();
        assert_eq!(
            ok(r#"{"client_id":"c","checkpoint_request_id":"17"}"#).checkpoint_request_id,
            OpId(17)
        );
        assert_eq!(
            ok(r#"{"client_id":"c","checkpoint_request_id":17}"#).checkpoint_request_id,
            OpId(17)
        );
        for bad in [
            r#"{"client_id":"c","checkpoint_request_id":0}"#,
            r#"{"client_id":"c","checkpoint_request_id":-3}"#,
            r#"{"client_id":"c","checkpoint_request_id":"x"}"#,
            r#"{"client_id":"c","checkpoint_request_id":1.5}"#,
            r#"{"client_id":"c","checkpoint_request_id":"99999999999999999999"}"#,
            r#"{"client_id":1,"checkpoint_request_id":"1"}"#,
            r#"{"checkpoint_request_id":"1"}"#,
            r#"[]"#,
            "",
            "{",
        ] {
            let err = CheckpointRequest::parse(bad.as_bytes()).unwrap_err();
            assert_eq!(err.code(), riptide_protocol::ErrorCode::S2001, "{bad}");
        }
    }
}
