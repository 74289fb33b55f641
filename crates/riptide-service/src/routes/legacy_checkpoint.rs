//! `GET /write-checkpoint.json`: the write checkpoint of older SDKs (docs/protocol.md §4.2).
//! Query parameters (`client_id`) are accepted and unused, as upstream.
//!
//! The answer is a checkpoint id, not a write-checkpoint counter: the route reads the source's
//! WAL position, emits a logical message so replication passes it, and waits (up to 50 s, as
//! the official service) until the active deployment has committed a checkpoint at or past that
//! position; `{"data":{"checkpoint":"<op id>"}}`. It waits on the checkpoint bus and re-reads
//! storage at least every 200 ms, so a missed event costs at most that.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use riptide_protocol::OpId;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::{Data, data};
use crate::auth::AuthenticatedUser;
use crate::error::ApiError;
use crate::state::AppState;

/// How long the route waits for replication to pass the source's position.
const WAIT: Duration = Duration::from_secs(50);
/// The longest wait between two reads of storage.
const RECHECK: Duration = Duration::from_millis(200);

#[derive(Debug, Serialize)]
pub struct LegacyCheckpointResponse {
    checkpoint: OpId,
}

pub async fn write_checkpoint(
    State(state): State<AppState>,
    AuthenticatedUser(user): AuthenticatedUser,
) -> Result<Json<Data<LegacyCheckpointResponse>>, ApiError> {
    let inner = &state.inner;
    // Subscribed before the ping, so the checkpoint it causes cannot be missed.
    let mut events = inner.events.subscribe();
    let head = inner.source.current_lsn_and_ping().await?;
    let deadline = Instant::now() + WAIT;
    loop {
        let active = state.active_rules().ok_or(ApiError::NoSyncRules)?;
        let deployment = inner.storage.deployment(active.deployment).await?;
        if let Some(cp) = deployment.checkpoint
            && cp.lsn >= head
        {
            tracing::debug!(user_id = %user.user_id, lsn = %head, checkpoint = %cp.op_id, "legacy write checkpoint");
            return Ok(data(LegacyCheckpointResponse {
                checkpoint: cp.op_id,
            }));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ApiError::CheckpointTimeout);
        }
        // Any event (or a lagged receiver) is a reason to look again.
        let wait = RECHECK.min(deadline - now);
        if let Ok(Err(RecvError::Closed)) = tokio::time::timeout(wait, events.recv()).await {
            tokio::time::sleep(wait).await;
        }
    }
}
