//! The `session` cookie: HttpOnly, SameSite=Lax, Path=/, Secure over https.

use axum::http::{HeaderMap, HeaderValue, header};
use cookie::{Cookie, SameSite};

use super::sessions::SESSION_DAYS;

pub const SESSION_COOKIE: &str = "session";

/// Whether the request reached us over https (directly or through a TLS-terminating proxy).
pub fn is_https(headers: &HeaderMap) -> bool {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o.starts_with("https://"));
    forwarded || origin
}

fn build(value: String, secure: bool, max_age: time::Duration) -> Option<HeaderValue> {
    let cookie = Cookie::build((SESSION_COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(secure)
        .max_age(max_age)
        .build();
    HeaderValue::from_str(&cookie.to_string()).ok()
}

/// `Set-Cookie` for a new session.
pub fn session_cookie(token: String, secure: bool) -> Option<HeaderValue> {
    build(token, secure, time::Duration::days(i64::from(SESSION_DAYS)))
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(secure: bool) -> Option<HeaderValue> {
    build(String::new(), secure, time::Duration::ZERO)
}

/// The session token from the request's `Cookie` headers.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE && !c.value().is_empty())
        .map(|c| c.value().to_owned())
}
