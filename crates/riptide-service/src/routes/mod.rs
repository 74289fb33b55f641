//! HTTP routes.

pub mod admin;
pub mod admin_v1;
pub mod body_limit;
pub mod legacy_checkpoint;
pub mod probes;
pub mod sync_stream;
pub mod websocket;
pub mod write_checkpoint;

use axum::Json;
use serde::Serialize;

/// Non-stream responses are wrapped as `{"data": …}`.
#[derive(Debug, Serialize)]
pub struct Data<T> {
    pub data: T,
}

pub fn data<T: Serialize>(data: T) -> Json<Data<T>> {
    Json(Data { data })
}
