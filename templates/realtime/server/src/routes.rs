//! The HTTP API (CONTRACT.md): `/api/...` plus the built UI.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::auth::{CurrentUser, accounts, csrf};
use crate::error::ApiError;
use crate::state::AppState;
use crate::upload;
use crate::{request_body, static_files, token};

/// The app's router: the API, and the UI from `web/dist` when it is built.
pub fn router(state: AppState) -> Router {
    let dist = state.config().app_root.join("web").join("dist");
    let api = Router::new()
        .route("/auth/signup", post(accounts::signup))
        .route("/auth/login", post(accounts::login))
        .route("/auth/logout", post(accounts::logout))
        .route("/auth/me", get(accounts::me))
        .route("/users/by-username/{username}", get(accounts::by_username))
        .route("/powersync/token", get(powersync_token))
        .route("/sync", post(sync))
        .route("/health", get(health))
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn(csrf::check))
        // What any extractor may read; the routes that take a body read it with their own
        // limit (`Limits`).
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config().limits.other_body_bytes,
        ))
        .with_state(state);
    let router = Router::new()
        .nest("/api", api)
        .layer(tower_http::trace::TraceLayer::new_for_http());
    static_files::with_ui(router, &dist)
}

async fn health() -> Json<Value> {
    Json(json!({ "ok": true }))
}

/// `GET /api/powersync/token`.
async fn powersync_token(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<token::IssuedToken>, ApiError> {
    let config = state.config();
    let issued =
        token::issue(&config.signing_key, &config.audience, user.id).map_err(ApiError::internal)?;
    Ok(Json(issued))
}

/// `POST /api/sync`.
async fn sync(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    request: Request<Body>,
) -> Result<Json<upload::Outcome>, ApiError> {
    let (parts, body) = request.into_parts();
    let limit = state.config().limits.upload_body_bytes;
    let body = request_body::read(&parts.headers, body, limit).await?;
    let mut result = upload::apply_batch(state.pool(), &state.catalog(), user.id, &body).await;
    if matches!(
        result,
        Err(upload::UploadError::UnknownTable { .. } | upload::UploadError::UnknownColumn { .. })
    ) {
        // A migration may have added it since the catalog was read: look again, once.
        match state.reload_catalog().await {
            Ok(Some(fresh)) => {
                result = upload::apply_batch(state.pool(), &fresh, user.id, &body).await;
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "cannot reload the schema catalog"),
        }
    }
    let outcome = result.inspect_err(|err| {
        // The code only: messages can quote uploaded values, which are never logged.
        let (status, code) = err.status_and_code();
        if status.is_client_error() {
            tracing::info!(user_id = %user.id, code, "upload refused");
        }
    })?;
    Ok(Json(outcome))
}
