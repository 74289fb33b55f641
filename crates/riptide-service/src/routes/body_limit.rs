//! Request bodies are bounded by [`Limits::max_request_bytes`](crate::Limits) (axum's
//! `DefaultBodyLimit`, set on the router). A body beyond it fails to buffer in the route's
//! extractor with a plain-text 413; this middleware gives that answer the PowerSync error body
//! and counts it.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::metrics::Rejected;
use crate::state::AppState;

pub async fn powersync_413(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    state.metrics().rejected(Rejected::BodyTooLarge);
    ApiError::PayloadTooLarge {
        limit: state.limits().max_request_bytes,
    }
    .into_response()
}
