//! Server-side sessions. The cookie holds a random 256-bit token; the database holds only its
//! SHA-256, so a leaked `sessions` table does not sign anyone in.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::User;

/// How long a session lasts.
pub const SESSION_DAYS: i32 = 30;

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Starts a session for `user`; returns the cookie token.
pub async fn create(
    client: &tokio_postgres::Client,
    user: Uuid,
) -> Result<String, tokio_postgres::Error> {
    let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    client
        .execute(
            "INSERT INTO sessions (token_sha256, user_id, expires_at)
             VALUES ($1, $2, now() + make_interval(days => $3))",
            &[&token_hash(&token), &user, &SESSION_DAYS],
        )
        .await?;
    Ok(token)
}

/// The user of a live session.
pub async fn find(
    client: &tokio_postgres::Client,
    token: &str,
) -> Result<Option<User>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT u.id, u.username FROM sessions s JOIN users u ON u.id = s.user_id
              WHERE s.token_sha256 = $1 AND s.expires_at > now()",
            &[&token_hash(token)],
        )
        .await?;
    Ok(row.map(|r| User {
        id: r.get(0),
        username: r.get(1),
    }))
}

/// Ends a session (and removes expired ones).
pub async fn delete(
    client: &tokio_postgres::Client,
    token: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM sessions WHERE token_sha256 = $1 OR expires_at < now()",
            &[&token_hash(token)],
        )
        .await?;
    Ok(())
}
