//! Accounts and sessions: argon2 password hashes (a bounded number at once), an HttpOnly
//! SameSite=Lax session cookie whose token is stored only as a SHA-256 hash, CSRF checks on
//! state-changing requests, and rate limits on sign-ins and sign-ups per client address.

pub mod accounts;
pub mod client_ip;
pub mod cookies;
pub mod csrf;
pub mod password;
pub mod rate_limit;
pub mod sessions;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Serialize;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: Uuid,
    pub username: String,
}

/// The signed-in user of a request (401 `unauthenticated` otherwise).
#[derive(Debug, Clone)]
pub struct CurrentUser(pub User);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = cookies::session_token(&parts.headers).ok_or(ApiError::Unauthenticated)?;
        let client = state.pool().get().await.map_err(ApiError::internal)?;
        sessions::find(&client, &token)
            .await
            .map_err(ApiError::internal)?
            .map(CurrentUser)
            .ok_or(ApiError::Unauthenticated)
    }
}
