//! Reading a request body with a size limit: 413 `payload_too_large` when the declared
//! `Content-Length` or the bytes actually sent go past it, before more than `limit` bytes are
//! held in memory.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};

use crate::error::ApiError;

/// The body of a request, at most `limit` bytes.
pub async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = ApiError::PayloadTooLarge { limit };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large);
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large)
}
