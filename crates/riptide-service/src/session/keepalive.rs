//! `token_expires_in` lines: every ~20 s (jitter ±10 %, not at connect), a warning 20 s before
//! `exp`, and `{"token_expires_in":0}` at `exp`, after which the stream ends.

use std::time::{Duration, SystemTime};

use rand::Rng;
use riptide_protocol::SyncLine;

use super::framing::{LineSender, SendError};
use crate::auth::VerifiedToken;

/// How long before `exp` the warning line is sent.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(20);

/// Runs until the token expired (the `0` line was sent: `Ok`) or the client is gone.
pub async fn run(
    token: &VerifiedToken,
    interval: Duration,
    tx: &LineSender,
) -> Result<(), SendError> {
    let mut warned = false;
    loop {
        let expires_in = token.expires_in(SystemTime::now());
        if expires_in <= 0 {
            tx.send(&SyncLine::TokenExpiresIn(0)).await?;
            return Ok(());
        }
        let to_exp = Duration::from_secs(u64::try_from(expires_in).unwrap_or(0));
        let mut wait = jittered(interval);
        if !warned && to_exp > EXPIRY_WARNING {
            wait = wait.min(to_exp - EXPIRY_WARNING);
        }
        wait = wait.min(to_exp);
        tokio::time::sleep(wait).await;
        let expires_in = token.expires_in(SystemTime::now());
        if expires_in <= 0 {
            tx.send(&SyncLine::TokenExpiresIn(0)).await?;
            return Ok(());
        }
        if Duration::from_secs(u64::try_from(expires_in).unwrap_or(0)) <= EXPIRY_WARNING {
            warned = true;
        }
        tx.send(&SyncLine::TokenExpiresIn(expires_in)).await?;
    }
}

fn jittered(interval: Duration) -> Duration {
    let f: f64 = rand::thread_rng().gen_range(0.9..=1.1);
    interval.mul_f64(f)
}
