//! Sign-in and sign-up rate limits, counted per client address (see [`super::client_ip`]).
//!
//! - **Sign-in lockout per (username, address)**: after `failures_per_user_and_ip` failed
//!   sign-ins for one username from one address within `login_window`, that pair gets 429 until
//!   the window has passed — even with the right password. The same username from any other
//!   address is not affected, so an attacker cannot lock a victim out of their account: a
//!   global per-account lock (what this replaced) let anyone do that with five wrong passwords.
//!   A successful sign-in clears the pair's count.
//! - **Sign-in failures per address** (`failures_per_ip`, all usernames together) stop one
//!   address from spraying a password over many usernames.
//! - **Sign-ups per address** (`signups_per_ip` per `signup_window`): every well-formed attempt
//!   counts (it costs a password hash), taken names included.
//!
//! Guessing one account's password from many addresses is slowed by the per-address limits and
//! the bounded hashing (`concurrent_hashes`), and made hopeless by the password length; the
//! cost of the alternative (locking the account) is paid by its owner. IPv6 addresses count per
//! /64, the block one client usually holds.
//!
//! An attempt is counted *before* its password is checked, so concurrent attempts cannot slip
//! past a limit; a successful sign-in gives its count back. The counters live in memory, in a
//! least-recently-used table of at most `tracked_keys` entries (a restart forgets them, which
//! is fine for one process). Evicting a counter forgets it: an attacker would need as many
//! fresh addresses as the table holds to flush their own.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::limits::Limits;

/// Which counter an attempt counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// Failed sign-ins for a (lowercased) username from one address.
    UserAtIp(String, IpAddr),
    /// Failed sign-ins from one address.
    Ip(IpAddr),
    /// Sign-up attempts from one address.
    Signup(IpAddr),
}

impl Key {
    /// Sign-in keys of `username` from `client`.
    pub fn login(username: &str, client: IpAddr) -> [Key; 2] {
        let ip = block(client);
        [Key::UserAtIp(username.to_lowercase(), ip), Key::Ip(ip)]
    }

    /// The sign-up key of `client`.
    pub fn signup(client: IpAddr) -> Key {
        Key::Signup(block(client))
    }
}

/// The address as counted: IPv4 as is (also when IPv4-mapped), IPv6 by its /64.
fn block(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

/// The counters (see the module docs).
#[derive(Debug)]
pub struct AuthLimiter {
    windows: Mutex<LruCache<Key, Window>>,
    failures_per_user_and_ip: u32,
    failures_per_ip: u32,
    login_window: Duration,
    signups_per_ip: u32,
    signup_window: Duration,
}

impl AuthLimiter {
    pub fn new(limits: &Limits) -> AuthLimiter {
        let capacity = NonZeroUsize::new(limits.tracked_keys).unwrap_or(NonZeroUsize::MIN);
        AuthLimiter {
            windows: Mutex::new(LruCache::new(capacity)),
            failures_per_user_and_ip: limits.failures_per_user_and_ip,
            failures_per_ip: limits.failures_per_ip,
            login_window: limits.login_window,
            signups_per_ip: limits.signups_per_ip,
            signup_window: limits.signup_window,
        }
    }

    fn rule(&self, key: &Key) -> (u32, Duration) {
        match key {
            Key::UserAtIp(..) => (self.failures_per_user_and_ip, self.login_window),
            Key::Ip(_) => (self.failures_per_ip, self.login_window),
            Key::Signup(_) => (self.signups_per_ip, self.signup_window),
        }
    }

    /// Counts an attempt against every key, unless one of them is at its limit: then nothing
    /// is counted and `Err(retry_after)` says when the latest of them frees up.
    pub fn take(&self, keys: &[Key]) -> Result<(), Duration> {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait: Option<Duration> = None;
        for key in keys {
            let (limit, window) = self.rule(key);
            if let Some(w) = windows.peek(key) {
                let age = now.duration_since(w.started);
                if age < window && w.count >= limit {
                    let left = window - age;
                    wait = Some(wait.map_or(left, |d| d.max(left)));
                }
            }
        }
        if let Some(wait) = wait {
            return Err(wait);
        }
        for key in keys {
            let (_, window) = self.rule(key);
            let fresh = Window {
                started: now,
                count: 0,
            };
            let w = windows.get_or_insert_mut(key.clone(), || fresh);
            if now.duration_since(w.started) >= window {
                *w = fresh;
            }
            w.count = w.count.saturating_add(1);
        }
        Ok(())
    }

    /// Gives back an attempt counted by [`AuthLimiter::take`] (it succeeded).
    pub fn give_back(&self, key: &Key) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = windows.peek_mut(key) {
            w.count = w.count.saturating_sub(1);
        }
    }

    /// Clears a key's count (after a successful sign-in).
    pub fn reset(&self, key: &Key) {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop(key);
    }

    /// How many counters are kept (at most `tracked_keys`).
    pub fn tracked(&self) -> usize {
        self.windows.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn limiter(tracked_keys: usize) -> AuthLimiter {
        AuthLimiter::new(&Limits {
            tracked_keys,
            ..Limits::default()
        })
    }

    const HOME: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9));

    #[test]
    fn a_pair_is_locked_and_other_addresses_are_not() {
        let limiter = limiter(100);
        let attacker = Key::login("alice", ATTACKER);
        for _ in 0..5 {
            assert!(limiter.take(&attacker).is_ok());
        }
        let wait = limiter.take(&attacker).err();
        assert!(wait.is_some_and(|w| w <= Duration::from_secs(15 * 60)));
        assert!(limiter.take(&Key::login("Alice", HOME)).is_ok());
        assert!(limiter.take(&Key::login("bob", ATTACKER)).is_ok());
        limiter.reset(&attacker[0]);
        assert!(limiter.take(&attacker).is_ok());
    }

    #[test]
    fn a_refused_attempt_counts_nothing_and_give_back_undoes_one() {
        let limiter = AuthLimiter::new(&Limits {
            failures_per_ip: 2,
            ..Limits::default()
        });
        assert!(limiter.take(&Key::login("a", ATTACKER)).is_ok());
        assert!(limiter.take(&Key::login("b", ATTACKER)).is_ok());
        assert!(limiter.take(&Key::login("c", ATTACKER)).is_err());
        assert!(
            limiter
                .windows
                .lock()
                .unwrap()
                .peek(&Key::UserAtIp("c".into(), ATTACKER))
                .is_none()
        );
        limiter.give_back(&Key::Ip(ATTACKER));
        assert!(limiter.take(&Key::login("c", ATTACKER)).is_ok());
    }

    #[test]
    fn the_table_is_bounded() {
        let limiter = limiter(10);
        for i in 0..1000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(i));
            assert!(limiter.take(&[Key::signup(ip)]).is_ok());
        }
        assert_eq!(limiter.tracked(), 10);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(Key::signup(a), Key::signup(b));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(Key::signup(mapped), Key::signup(HOME));
        assert_ne!(Key::signup(a), Key::signup(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }
}
