//! `GET /probes/{startup,liveness,readiness}` and `GET /`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::state::AppState;

pub async fn root() -> impl IntoResponse {
    Json(json!({
        "service": "riptide",
        "description": "PowerSync-compatible sync service",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// The process is up and serving HTTP.
pub async fn startup() -> impl IntoResponse {
    Json(json!({ "started": true }))
}

/// The process is alive.
pub async fn liveness(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({ "alive": true, "open_streams": state.open_streams() }))
}

/// Ready to serve sync streams: a sync-rules deployment is active. 400 otherwise.
pub async fn readiness(State(state): State<AppState>) -> impl IntoResponse {
    let active = state.active_rules();
    let ready = active.is_some();
    let body = Json(json!({
        "ready": ready,
        "deployment": active.map(|a| a.deployment),
        "open_streams": state.open_streams(),
    }));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, body)
}
