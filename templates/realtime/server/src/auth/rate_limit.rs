//! The sign-in rate limit: after [`MAX_FAILURES_PER_USER`] failed sign-ins for one username (or
//! [`MAX_FAILURES_PER_IP`] from one address) within [`WINDOW`], further attempts get 429 until
//! the window has passed — even with the right password. A successful sign-in clears the
//! username's count. The address limit applies to direct connections only (behind a proxy all
//! clients share its address). Kept in memory: a restart forgets it, which is fine for one
//! process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(15 * 60);
pub const MAX_FAILURES_PER_USER: u32 = 5;
pub const MAX_FAILURES_PER_IP: u32 = 50;
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Which counter a sign-in attempt counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    User(String),
    Ip(std::net::IpAddr),
}

impl Key {
    fn limit(&self) -> u32 {
        match self {
            Key::User(_) => MAX_FAILURES_PER_USER,
            Key::Ip(_) => MAX_FAILURES_PER_IP,
        }
    }
}

/// Failed sign-in counters.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    windows: Mutex<HashMap<Key, Window>>,
}

impl LoginLimiter {
    /// `Err(retry_after)` when any of `keys` is over its limit.
    pub fn check(&self, keys: &[Key]) -> Result<(), Duration> {
        let now = Instant::now();
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = None;
        for key in keys {
            if let Some(w) = windows.get(key) {
                let age = now.duration_since(w.started);
                if age < WINDOW && w.failures >= key.limit() {
                    let left = WINDOW - age;
                    wait = Some(wait.map_or(left, |d: Duration| d.max(left)));
                }
            }
        }
        wait.map_or(Ok(()), Err)
    }

    /// Counts a failed attempt against every key.
    pub fn record_failure(&self, keys: &[Key]) {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > MAX_TRACKED {
            windows.retain(|_, w| now.duration_since(w.started) < WINDOW);
        }
        for key in keys {
            let w = windows.entry(key.clone()).or_insert(Window {
                started: now,
                failures: 0,
            });
            if now.duration_since(w.started) >= WINDOW {
                *w = Window {
                    started: now,
                    failures: 0,
                };
            }
            w.failures = w.failures.saturating_add(1);
        }
    }

    /// Clears a key's failures (after a successful sign-in).
    pub fn reset(&self, key: &Key) {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_reset_clears() {
        let limiter = LoginLimiter::default();
        let alice = [Key::User("alice".into())];
        for _ in 0..MAX_FAILURES_PER_USER {
            assert!(limiter.check(&alice).is_ok());
            limiter.record_failure(&alice);
        }
        let wait = limiter.check(&alice).err();
        assert!(wait.is_some_and(|w| w <= WINDOW));
        assert!(limiter.check(&[Key::User("bob".into())]).is_ok());
        limiter.reset(&alice[0]);
        assert!(limiter.check(&alice).is_ok());
    }
}
