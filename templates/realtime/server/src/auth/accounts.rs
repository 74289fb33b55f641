//! The account routes: sign up, sign in, sign out, who am I, find a user by username.

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::rate_limit::Key;
use super::{CurrentUser, User, client_ip, cookies, sessions};
use crate::error::ApiError;
use crate::request_body;
use crate::state::AppState;

/// The longest username (the `users.username` check: `^[a-z0-9_]{3,32}$`).
pub const MAX_USERNAME_BYTES: usize = 32;

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
    (3..=MAX_USERNAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

const USERNAME_RULE: &str = "username: 3 to 32 characters among a-z, 0-9 and _";

/// A sign-up or sign-in request: its credentials (the body read within the auth limit, the
/// lengths capped) and the client's address.
struct AuthRequest {
    headers: HeaderMap,
    creds: Credentials,
    client: IpAddr,
}

async fn auth_request(
    state: &AppState,
    peer: Option<&ConnectInfo<SocketAddr>>,
    request: Request,
) -> Result<AuthRequest, ApiError> {
    let config = state.config();
    let (parts, body) = request.into_parts();
    let body = request_body::read(&parts.headers, body, config.limits.auth_body_bytes).await?;
    let creds = parse_credentials(&body)?;
    if creds.username.len() > MAX_USERNAME_BYTES {
        return Err(ApiError::InvalidRequest(USERNAME_RULE.into()));
    }
    if creds.password.len() > config.limits.max_password_bytes {
        return Err(ApiError::InvalidRequest(format!(
            "password: at most {} bytes",
            config.limits.max_password_bytes
        )));
    }
    let client = config
        .trusted_proxies
        .client(client_ip::peer(peer), &parts.headers);
    Ok(AuthRequest {
        headers: parts.headers,
        creds,
        client,
    })
}

fn rate_limited(wait: std::time::Duration) -> ApiError {
    ApiError::RateLimited {
        retry_after_secs: wait.as_secs().max(1),
    }
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

/// `POST /api/auth/signup`.
pub async fn signup(
    State(state): State<AppState>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    request: Request,
) -> Result<Response, ApiError> {
    let AuthRequest {
        headers,
        creds,
        client,
    } = auth_request(&state, peer.as_ref().map(|e| &e.0), request).await?;
    if !valid_username(&creds.username) {
        return Err(ApiError::InvalidRequest(USERNAME_RULE.into()));
    }
    if creds.password.chars().count() < 8 {
        return Err(ApiError::InvalidRequest(
            "password: at least 8 characters".into(),
        ));
    }
    state
        .limiter()
        .take(&[Key::signup(client)])
        .map_err(rate_limited)?;
    let hash = state.hasher().hash(creds.password).await?;
    let db = state.pool().get().await.map_err(ApiError::internal)?;
    let id = Uuid::new_v4();
    let inserted = db
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
    drop(db);
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
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    request: Request,
) -> Result<Response, ApiError> {
    let AuthRequest {
        headers,
        creds,
        client,
    } = auth_request(&state, peer.as_ref().map(|e| &e.0), request).await?;
    let keys = Key::login(&creds.username, client);
    // Counted before the check, so that concurrent guesses cannot pass the limit together.
    state.limiter().take(&keys).map_err(rate_limited)?;
    let checked = check_password(&state, &creds).await;
    let give_back = || keys.iter().for_each(|k| state.limiter().give_back(k));
    match checked {
        Ok(Some(id)) => {
            state.limiter().reset(&keys[0]);
            state.limiter().give_back(&keys[1]);
            let user = User {
                id,
                username: creds.username,
            };
            signed_in(&state, &headers, user, StatusCode::OK).await
        }
        Ok(None) => {
            tracing::info!("sign-in refused");
            Err(ApiError::InvalidCredentials)
        }
        Err(err) => {
            // Busy or broken: not the client's failure.
            give_back();
            Err(err)
        }
    }
}

/// The user's id when the password is theirs (an unknown username takes as long).
async fn check_password(state: &AppState, creds: &Credentials) -> Result<Option<Uuid>, ApiError> {
    let db = state.pool().get().await.map_err(ApiError::internal)?;
    let row = db
        .query_opt(
            "SELECT id, password_hash FROM users WHERE username = $1",
            &[&creds.username],
        )
        .await
        .map_err(ApiError::internal)?;
    drop(db);
    let (id, hash) = match row {
        Some(r) => (Some(r.get::<_, Uuid>(0)), r.get::<_, String>(1)),
        None => (None, state.dummy_hash().to_owned()),
    };
    let ok = state.hasher().verify(creds.password.clone(), hash).await?;
    Ok(id.filter(|_| ok))
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
