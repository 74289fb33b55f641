//! The account routes: sign up, sign in, sign out, who am I, find a user by username.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::rate_limit::Key;
use super::{CurrentUser, User, cookies, password, sessions};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

fn parse_credentials(body: &Bytes) -> Result<Credentials, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    serde_json::from_value(value).map_err(|_| {
        ApiError::InvalidRequest(
            "the body must be {\"username\": \"…\", \"password\": \"…\"}".into(),
        )
    })
}

fn valid_username(name: &str) -> bool {
    (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Signs the user in: a new session and its cookie.
async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    user: User,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let client = state.pool().get().await.map_err(ApiError::internal)?;
    let token = sessions::create(&client, user.id)
        .await
        .map_err(ApiError::internal)?;
    let mut response = (status, Json(json!({ "user": user }))).into_response();
    if let Some(cookie) = cookies::session_cookie(token, cookies::is_https(headers)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)
}

/// `POST /api/auth/signup`.
pub async fn signup(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let creds = parse_credentials(&body)?;
    if !valid_username(&creds.username) {
        return Err(ApiError::InvalidRequest(
            "username: 3 to 32 characters among a-z, 0-9 and _".into(),
        ));
    }
    if creds.password.chars().count() < 8 {
        return Err(ApiError::InvalidRequest(
            "password: at least 8 characters".into(),
        ));
    }
    let pw = creds.password;
    let hash = blocking(move || password::hash(&pw))
        .await?
        .map_err(ApiError::internal)?;
    let client = state.pool().get().await.map_err(ApiError::internal)?;
    let id = Uuid::new_v4();
    let inserted = client
        .execute(
            "INSERT INTO users (id, username, password_hash) VALUES ($1, $2, $3)",
            &[&id, &creds.username, &hash],
        )
        .await;
    match inserted {
        Ok(_) => {}
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            return Err(ApiError::UsernameTaken);
        }
        Err(e) => return Err(ApiError::internal(e)),
    }
    drop(client);
    tracing::info!(user_id = %id, "account created");
    let user = User {
        id,
        username: creds.username,
    };
    signed_in(&state, &headers, user, StatusCode::CREATED).await
}

/// `POST /api/auth/login`.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let creds = parse_credentials(&body)?;
    let user_key = Key::User(creds.username.to_lowercase());
    let mut keys = vec![user_key.clone()];
    // Behind a proxy every client has the proxy's address: an address limit there would let one
    // attacker lock everybody out, so it applies to direct connections only.
    let proxied = headers.contains_key("x-forwarded-for") || headers.contains_key("forwarded");
    if let Some(axum::Extension(ConnectInfo(addr))) = peer
        && !proxied
    {
        keys.push(Key::Ip(addr.ip()));
    }
    if let Err(wait) = state.limiter().check(&keys) {
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs().max(1),
        });
    }
    let client = state.pool().get().await.map_err(ApiError::internal)?;
    let row = client
        .query_opt(
            "SELECT id, password_hash FROM users WHERE username = $1",
            &[&creds.username],
        )
        .await
        .map_err(ApiError::internal)?;
    drop(client);
    let (id, hash) = match row {
        Some(r) => (Some(r.get::<_, Uuid>(0)), r.get::<_, String>(1)),
        None => (None, state.dummy_hash().to_owned()),
    };
    let pw = creds.password;
    let ok = blocking(move || password::verify(&pw, &hash)).await?;
    match (id, ok) {
        (Some(id), true) => {
            state.limiter().reset(&user_key);
            let user = User {
                id,
                username: creds.username,
            };
            signed_in(&state, &headers, user, StatusCode::OK).await
        }
        _ => {
            state.limiter().record_failure(&keys);
            tracing::info!("sign-in refused");
            Err(ApiError::InvalidCredentials)
        }
    }
}

/// `POST /api/auth/logout`.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = cookies::session_token(&headers) {
        let client = state.pool().get().await.map_err(ApiError::internal)?;
        sessions::delete(&client, &token)
            .await
            .map_err(ApiError::internal)?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(cookie) = cookies::clear_cookie(cookies::is_https(&headers)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `GET /api/auth/me`.
pub async fn me(CurrentUser(user): CurrentUser) -> Json<serde_json::Value> {
    Json(json!({ "user": user }))
}

/// `GET /api/users/by-username/{username}`.
pub async fn by_username(
    State(state): State<AppState>,
    _signed_in: CurrentUser,
    Path(username): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let client = state.pool().get().await.map_err(ApiError::internal)?;
    let row = client
        .query_opt(
            "SELECT id, username FROM users WHERE username = $1",
            &[&username],
        )
        .await
        .map_err(ApiError::internal)?
        .ok_or(ApiError::UserNotFound)?;
    Ok(Json(
        json!({ "user": User { id: row.get(0), username: row.get(1) } }),
    ))
}
