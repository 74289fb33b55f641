//! The `Authorization` header and the axum extractor for an authenticated user.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::{AuthError, VerifiedToken};
use crate::error::ApiError;
use crate::state::AppState;

/// The JWT from `Authorization: Token <jwt>` or `Authorization: Bearer <jwt>` (one space, a
/// non-empty token without whitespace).
pub fn token_from_header(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(AuthError::MissingToken)?
        .to_str()
        .map_err(|_| AuthError::MissingToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::MissingToken)?;
    if !(scheme == "Token" || scheme == "Bearer")
        || token.is_empty()
        || token.chars().any(char::is_whitespace)
    {
        return Err(AuthError::MissingToken);
    }
    Ok(token)
}

/// A request whose token verified. Extracting it answers 401 with the matching code otherwise.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser(pub VerifiedToken);

impl FromRequestParts<AppState> for AuthenticatedUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let verified = match token_from_header(&parts.headers) {
            Ok(token) => state.keystore().verify(token).await,
            Err(e) => Err(e),
        };
        match verified {
            Ok(v) => Ok(AuthenticatedUser(v)),
            Err(e) => {
                state.metrics().auth_failure(e.code());
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn accepts_token_and_bearer() {
        assert_eq!(token_from_header(&headers("Token a.b.c")).unwrap(), "a.b.c");
        assert_eq!(
            token_from_header(&headers("Bearer a.b.c")).unwrap(),
            "a.b.c"
        );
    }

    #[test]
    fn rejects_other_forms() {
        for bad in [
            "Basic a.b.c",
            "Token",
            "Token  a.b.c",
            "token a.b.c",
            "Bearer a b",
            "Token ",
        ] {
            assert_eq!(
                token_from_header(&headers(bad)),
                Err(AuthError::MissingToken),
                "{bad}"
            );
        }
        assert_eq!(
            token_from_header(&HeaderMap::new()),
            Err(AuthError::MissingToken)
        );
    }
}
