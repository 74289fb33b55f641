//! The one error type of the HTTP routes. Every variant maps to a PowerSync error code, an HTTP
//! status and the body `{"error":{"name","code","status","description"}}`. Internal errors reach
//! the client as generic text; their cause is logged in full where the response is built.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use riptide_protocol::{ErrorBody, ErrorCode};

use crate::auth::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Authentication failed; the variant carries the precise code.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The request body or query is invalid (`PSYNC_S2001`).
    #[error("{0}")]
    Validation(String),
    /// No sync rules deployment is active (`PSYNC_S2302`).
    #[error("No sync rules available")]
    NoSyncRules,
    /// The service is not ready yet (`PSYNC_S2003`).
    #[error("service not ready")]
    NotReady,
    /// Too many concurrent sync streams (`PSYNC_S2304`).
    #[error("Maximum active concurrent connections limit has been reached")]
    TooManyConnections,
    /// Too many concurrent sync streams of this user (`PSYNC_S2304`).
    #[error("Maximum active concurrent connections per user limit ({limit}) has been reached")]
    TooManyUserConnections { limit: usize },
    /// The request body is larger than `max_request_bytes` (`PSYNC_S2001`, HTTP 413).
    #[error("Request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// Unknown route (`PSYNC_S2002`).
    #[error("route not found")]
    NotFound,
    /// Storage failed.
    #[error("storage error")]
    Storage(#[source] riptide_storage::StorageError),
    /// The source database failed.
    #[error("source database error")]
    Source(#[source] crate::source::SourceError),
    /// `GET /write-checkpoint.json` saw no checkpoint reach the source's position in time
    /// (`PSYNC_S1001`).
    #[error("Timeout while waiting for checkpoint")]
    CheckpointTimeout,
}

impl ApiError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Auth(e) => e.code(),
            ApiError::Validation(_) => ErrorCode::S2001,
            ApiError::NoSyncRules => ErrorCode::S2302,
            ApiError::NotReady => ErrorCode::S2003,
            ApiError::TooManyConnections | ApiError::TooManyUserConnections { .. } => {
                ErrorCode::S2304
            }
            ApiError::PayloadTooLarge { .. } => ErrorCode::S2001,
            ApiError::NotFound => ErrorCode::S2002,
            ApiError::Storage(_) | ApiError::Source(_) | ApiError::CheckpointTimeout => {
                ErrorCode::S1001
            }
        }
    }

    /// The HTTP status: the code's, except 413 for an oversized body.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::PayloadTooLarge { .. } => 413,
            other => other.code().status(),
        }
    }

    /// The error body the client sees.
    pub fn body(&self) -> ErrorBody {
        let description = match self {
            ApiError::Storage(_) | ApiError::Source(_) => "Internal server error".to_owned(),
            other => other.to_string(),
        };
        let mut body = ErrorBody::new(self.code(), description);
        body.error.status = self.status();
        body
    }
}

impl From<riptide_storage::StorageError> for ApiError {
    fn from(e: riptide_storage::StorageError) -> Self {
        ApiError::Storage(e)
    }
}

impl From<crate::source::SourceError> for ApiError {
    fn from(e: crate::source::SourceError) -> Self {
        ApiError::Source(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        match &self {
            ApiError::Storage(_) | ApiError::Source(_) => {
                tracing::error!(error = %error_chain(&self), code = %code, "request failed");
            }
            ApiError::Auth(_) => {
                tracing::debug!(error = %self, code = %code, "request unauthorized")
            }
            _ => tracing::debug!(error = %self, code = %code, "request rejected"),
        }
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body())).into_response()
    }
}

/// `error: cause: cause…`, for logs.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}
