//! PowerSync error codes and the error body every non-stream endpoint answers with:
//! `{"error":{"name":…,"code":"PSYNC_S2101","status":401,"description":…}}`.

use serde::{Deserialize, Serialize};

/// The PowerSync service error codes Riptide emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Row or configuration problem during replication.
    S1002,
    /// Validation error in a request body.
    S2001,
    /// Route not found.
    S2002,
    /// Service not ready (starting or restarting).
    S2003,
    /// Unsupported media type.
    S2004,
    /// Generic authorization error.
    S2101,
    /// Token signature could not be verified.
    S2102,
    /// Token has expired.
    S2103,
    /// Token lifetime too long.
    S2104,
    /// Audience mismatch or missing.
    S2105,
    /// No token supplied.
    S2106,
    /// Too many concurrent connections.
    S2304,
    /// No active sync rules.
    S2302,
    /// Too many buckets or parameter query results.
    S2305,
    /// No active sync rules (admin API: nothing to reprocess).
    S4104,
    /// Sync rules come from the config file and cannot be deployed through the API.
    S4105,
    /// A deployment is still processing (admin API: cannot reprocess now).
    S4106,
    /// Internal error.
    S1001,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::S1001 => "PSYNC_S1001",
            ErrorCode::S1002 => "PSYNC_S1002",
            ErrorCode::S2001 => "PSYNC_S2001",
            ErrorCode::S2002 => "PSYNC_S2002",
            ErrorCode::S2003 => "PSYNC_S2003",
            ErrorCode::S2004 => "PSYNC_S2004",
            ErrorCode::S2101 => "PSYNC_S2101",
            ErrorCode::S2102 => "PSYNC_S2102",
            ErrorCode::S2103 => "PSYNC_S2103",
            ErrorCode::S2104 => "PSYNC_S2104",
            ErrorCode::S2105 => "PSYNC_S2105",
            ErrorCode::S2106 => "PSYNC_S2106",
            ErrorCode::S2302 => "PSYNC_S2302",
            ErrorCode::S2304 => "PSYNC_S2304",
            ErrorCode::S2305 => "PSYNC_S2305",
            ErrorCode::S4104 => "PSYNC_S4104",
            ErrorCode::S4105 => "PSYNC_S4105",
            ErrorCode::S4106 => "PSYNC_S4106",
        }
    }

    /// HTTP status the official service uses for this code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::S2101
            | ErrorCode::S2102
            | ErrorCode::S2103
            | ErrorCode::S2104
            | ErrorCode::S2105
            | ErrorCode::S2106 => 401,
            ErrorCode::S2001 => 400,
            ErrorCode::S2002 => 404,
            ErrorCode::S2004 => 415,
            ErrorCode::S2003 => 503,
            ErrorCode::S2304 => 429,
            ErrorCode::S4104 | ErrorCode::S4105 => 422,
            ErrorCode::S4106 => 409,
            ErrorCode::S2305 | ErrorCode::S2302 | ErrorCode::S1001 | ErrorCode::S1002 => 500,
        }
    }

    /// The error's class name in the body (`name`).
    pub fn name(self) -> &'static str {
        match self.status() {
            401 => "AuthorizationError",
            400 => "ValidationError",
            404 => "RouteNotFound",
            _ => "ServiceError",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"error": ErrorDetails}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetails,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetails {
    pub name: String,
    pub code: String,
    pub status: u16,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetails {
                name: code.name().to_owned(),
                code: code.as_str().to_owned(),
                status: code.status(),
                description: description.into(),
                details: None,
            },
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.error.details = Some(details.into());
        self
    }
}
