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
///
/// The body also says how replication is doing when it runs in this process: `healthy`, and
/// while it keeps failing, the `error`, since when (`failing_since`, Unix seconds) and how
/// many runs failed in all. A service whose replication fails still serves what storage holds
/// (the status stays 200): clients keep working with data that is not current, and monitoring
/// reads `replication.healthy` or the `riptide_replication_healthy` gauge.
pub async fn readiness(State(state): State<AppState>) -> impl IntoResponse {
    let active = state.active_rules();
    let ready = active.is_some();
    let replication = state.metrics().replication().map(|r| {
        json!({
            "healthy": r.error.is_none(),
            "error": r.error,
            "failing_since": r.failing_since.and_then(|t| {
                t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs())
            }),
            "failures": r.failures,
            "slot_invalidations": r.slot_invalidations,
        })
    });
    let body = Json(json!({
        "ready": ready,
        "deployment": active.map(|a| a.deployment),
        "open_streams": state.open_streams(),
        "replication": replication,
    }));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, body)
}
