//! CSRF defence for state-changing requests (POST, PUT, PATCH, DELETE):
//!
//! - `Content-Type: application/json` is required (415 otherwise): HTML forms cannot send it,
//!   and a cross-site `fetch` with it needs a CORS preflight, which this server never grants;
//! - an `Origin` header, when present, must name this site (403 otherwise): the request's
//!   `Host`, or `X-Forwarded-Host` as set by a proxy such as the Vite dev server.
//!
//! The session cookie is also SameSite=Lax, so browsers do not send it on cross-site POSTs.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The middleware.
pub async fn check(request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) && let Err(err) = verify(request.headers())
    {
        return err.into_response();
    }
    next.run(request).await
}

fn verify(headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().map_err(|_| ApiError::CrossOrigin)?;
        let origin_host = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'))
            .ok_or(ApiError::CrossOrigin)?;
        let matches = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .is_some_and(|h| h.trim().eq_ignore_ascii_case(origin_host))
        };
        if !(matches("host") || matches("x-forwarded-host")) {
            return Err(ApiError::CrossOrigin);
        }
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::verify;
    use crate::error::ApiError;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_and_content_type() {
        let json = ("content-type", "application/json; charset=utf-8");
        assert!(verify(&headers(&[json, ("host", "app.test")])).is_ok());
        assert!(
            verify(&headers(&[
                json,
                ("host", "app.test"),
                ("origin", "https://app.test")
            ]))
            .is_ok()
        );
        assert!(matches!(
            verify(&headers(&[
                json,
                ("host", "app.test"),
                ("origin", "https://evil.test")
            ])),
            Err(ApiError::CrossOrigin)
        ));
        assert!(matches!(
            verify(&headers(&[json, ("host", "app.test"), ("origin", "null")])),
            Err(ApiError::CrossOrigin)
        ));
        assert!(matches!(
            verify(&headers(&[
                ("content-type", "text/plain"),
                ("host", "app.test")
            ])),
            Err(ApiError::UnsupportedMediaType)
        ));
        assert!(matches!(
            verify(&headers(&[("host", "app.test")])),
            Err(ApiError::UnsupportedMediaType)
        ));
    }
}
