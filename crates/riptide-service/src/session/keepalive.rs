//! `token_expires_in` lines: every ~20 s (jitter ±10 %, not at connect), a warning before
//! `exp`, and `{"token_expires_in":0}` at `exp`, after which the stream ends.
//!
//! The warning goes out when the token has [`EXPIRY_WARNING`] left, or, for a token that had
//! less than twice that when the stream opened, half of what it had then. The official SDKs
//! fetch a new token on a line of 30 s or less and restart the stream with it at once; a stream
//! that ends at `exp` instead is restarted only after the SDK's retry delay (its default:
//! 5 s), and writes wait that long. So a token that is short-lived from the start still gets
//! its warning while it is valid, not only the `0` at `exp`.

use std::time::{Duration, SystemTime};

use rand::Rng;
use riptide_protocol::SyncLine;

use super::framing::{LineSender, SendError};
use crate::auth::VerifiedToken;

/// How long before `exp` the warning line is sent (at most: see [`warning_before`]).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(20);

/// Seconds before `exp` at which the warning goes out, for a token that had `lifetime` seconds
/// left when the stream opened: [`EXPIRY_WARNING`], or half the lifetime when that is less.
/// `None` below 2 s: the line would say 0, which means expired.
fn warning_before(lifetime: i64) -> Option<i64> {
    let half = lifetime / 2;
    (half >= 1).then(|| half.min(EXPIRY_WARNING.as_secs() as i64))
}

/// Runs until the token expired (the `0` line was sent: `Ok`) or the client is gone.
pub async fn run(
    token: &VerifiedToken,
    interval: Duration,
    tx: &LineSender,
) -> Result<(), SendError> {
    let warn_before = warning_before(token.expires_in(SystemTime::now()));
    let mut warned = false;
    loop {
        let expires_in = token.expires_in(SystemTime::now());
        if expires_in <= 0 {
            tx.send(&SyncLine::TokenExpiresIn(0)).await?;
            return Ok(());
        }
        let mut wait = jittered(interval).min(secs(expires_in));
        if let Some(before) = warn_before
            && !warned
        {
            wait = wait.min(secs(expires_in - before));
        }
        tokio::time::sleep(wait).await;
        let expires_in = token.expires_in(SystemTime::now());
        if expires_in <= 0 {
            tx.send(&SyncLine::TokenExpiresIn(0)).await?;
            return Ok(());
        }
        if warn_before.is_some_and(|before| expires_in <= before) {
            warned = true;
        }
        tx.send(&SyncLine::TokenExpiresIn(expires_in)).await?;
    }
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

fn jittered(interval: Duration) -> Duration {
    let f: f64 = rand::thread_rng().gen_range(0.9..=1.1);
    interval.mul_f64(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warning_comes_20_s_before_exp_or_at_half_a_short_lifetime() {
        assert_eq!(warning_before(3600), Some(20));
        assert_eq!(warning_before(40), Some(20));
        assert_eq!(warning_before(30), Some(15));
        assert_eq!(warning_before(5), Some(2));
        assert_eq!(warning_before(2), Some(1));
        assert_eq!(warning_before(1), None);
        assert_eq!(warning_before(0), None);
        assert_eq!(warning_before(-5), None);
    }
}
