//! Client authentication: JWTs verified against inline JWKS keys and remote JWKS documents
//! (docs/protocol.md §6). Tokens are never logged.

mod es512;
mod fetch;
mod header;
mod jwks;
mod keystore;

pub use fetch::{FETCH_TIMEOUT, MAX_JWKS_BYTES};
pub use header::{AuthenticatedUser, token_from_header};
pub use jwks::{JwksError, KeySpec, VerifyKey, parse_key_set};
pub use keystore::{
    AuthConfig, DEFAULT_JWKS_REFRESH_INTERVAL, KeyStore, KeyStoreError, SUPABASE_AUDIENCE,
    SupabaseAuth, VerifiedToken, supabase_jwks_uri,
};

use riptide_protocol::ErrorCode;

/// Why a token was rejected. Each variant maps to one PowerSync error code; messages never
/// contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header, or not `Token <jwt>` / `Bearer <jwt>` (`PSYNC_S2106`).
    #[error("Authentication required")]
    MissingToken,
    /// The token is not a well-formed JWT, or uses `alg: none` or an unknown algorithm.
    #[error("Invalid token: {0}")]
    Malformed(String),
    /// No configured key fits the token's `kid` and algorithm.
    #[error(
        "Could not find an appropriate key in the keystore. The key is missing or no key matched the token KID"
    )]
    NoKey,
    /// The key with the token's `kid` is for another algorithm.
    #[error("Unexpected token algorithm {0}")]
    UnexpectedAlgorithm(String),
    /// The signature does not verify with any candidate key (`PSYNC_S2102`).
    #[error("JWT signature could not be verified")]
    BadSignature,
    /// `exp` is in the past, beyond the clock tolerance (`PSYNC_S2103`).
    #[error("JWT has expired")]
    Expired,
    /// `exp - iat` is longer than allowed (`PSYNC_S2104`).
    #[error("Token must expire in a maximum of {max} seconds, got {got} seconds")]
    LifetimeTooLong { max: u64, got: u64 },
    /// `aud` is missing (`PSYNC_S2105`).
    #[error("JWT payload is missing a required claim \"aud\"")]
    MissingAudience,
    /// `aud` does not match an allowed audience (`PSYNC_S2105`).
    #[error("Unexpected \"aud\" claim value")]
    BadAudience,
    /// A required claim (`sub`, `iat`, `exp`) is missing or has the wrong type.
    #[error("JWT payload is missing a required claim \"{0}\"")]
    MissingClaim(&'static str),
    /// A claim has an unusable value (e.g. `parameters` not an object, `nbf` or `iat` in the
    /// future, `exp` before `iat`, an empty `sub`).
    #[error("Invalid claim \"{0}\"")]
    InvalidClaim(&'static str),
}

impl AuthError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::MissingToken => ErrorCode::S2106,
            AuthError::BadSignature => ErrorCode::S2102,
            AuthError::Expired => ErrorCode::S2103,
            AuthError::LifetimeTooLong { .. } => ErrorCode::S2104,
            AuthError::MissingAudience | AuthError::BadAudience => ErrorCode::S2105,
            AuthError::Malformed(_)
            | AuthError::NoKey
            | AuthError::UnexpectedAlgorithm(_)
            | AuthError::MissingClaim(_)
            | AuthError::InvalidClaim(_) => ErrorCode::S2101,
        }
    }
}

#[cfg(test)]
mod tests;
