//! Every limit the process applies to what clients send, with its default in one place.
//!
//! They keep one client (or a flood of them) from taking the memory, the CPU or the accounts of
//! others: small bodies on the auth routes, length caps on credentials, a bounded number of
//! password hashes at once (argon2id takes 19 MiB and tens of milliseconds each), a sign-up
//! rate, sign-in lockouts per (username, address) and a bounded table of the counters.
//! [`Limits::default`] is what `Config::from_env` uses; tests lower them.

use std::time::Duration;

/// The largest body of `POST /api/sync` (an upload batch).
pub const UPLOAD_BODY_BYTES: usize = 1024 * 1024;

/// See the module docs; every field has a default in [`Limits::default`].
#[derive(Debug, Clone)]
pub struct Limits {
    /// Body of `POST /api/auth/*` (`{"username","password"}`): 4 KiB.
    pub auth_body_bytes: usize,
    /// Body of `POST /api/sync`: 1 MiB ([`UPLOAD_BODY_BYTES`]).
    pub upload_body_bytes: usize,
    /// Body of any other `/api` route (none reads one today): 4 KiB.
    pub other_body_bytes: usize,
    /// Longest password, in bytes: 256 (longer ones are refused, not truncated).
    pub max_password_bytes: usize,
    /// Password hashes (sign-up) and checks (sign-in) running at once, each on its own
    /// thread: the machine's cores, at most 8. Each takes 19 MiB.
    pub concurrent_hashes: usize,
    /// How long a request waits for a hashing slot before 503 `busy`: 5 s.
    pub hash_wait: Duration,
    /// Requests waiting for a hashing slot at most; more get 503 `busy` at once: 64.
    pub hash_queue: usize,
    /// Failed sign-ins for one username from one address before that pair waits out
    /// [`Limits::login_window`]: 5.
    pub failures_per_user_and_ip: u32,
    /// Failed sign-ins from one address, all usernames together: 50.
    pub failures_per_ip: u32,
    /// The sign-in counting window: 15 minutes.
    pub login_window: Duration,
    /// Sign-up attempts from one address per [`Limits::signup_window`]: 10.
    pub signups_per_ip: u32,
    /// The sign-up counting window: 1 hour.
    pub signup_window: Duration,
    /// Counters kept at most (least recently used ones are evicted beyond): 100,000, about
    /// 10 MiB.
    pub tracked_keys: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Limits {
            auth_body_bytes: 4 * 1024,
            upload_body_bytes: UPLOAD_BODY_BYTES,
            other_body_bytes: 4 * 1024,
            max_password_bytes: 256,
            concurrent_hashes: cores.clamp(1, 8),
            hash_wait: Duration::from_secs(5),
            hash_queue: 64,
            failures_per_user_and_ip: 5,
            failures_per_ip: 50,
            login_window: Duration::from_secs(15 * 60),
            signups_per_ip: 10,
            signup_window: Duration::from_secs(60 * 60),
            tracked_keys: 100_000,
        }
    }
}
