//! Password hashing with argon2id (the crate's defaults, PHC string format: 19 MiB and a few
//! tens of milliseconds of one core per hash).
//!
//! [`Hasher`] runs them on its own `concurrent_hashes` threads: on tokio's blocking pool a flood
//! of sign-ins would start one per request on up to 512 threads (10 GiB), and even a bounded
//! number of hashes at once spreads over many pool threads, each keeping its allocator arena
//! (19 MiB) resident. A request that finds `hash_queue` requests already waiting, or gets no
//! answer within `hash_wait`, gets 503 `busy`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;
use crate::limits::Limits;

/// The password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct HashError(String);

fn hash_error(err: impl std::fmt::Display) -> HashError {
    HashError(err.to_string())
}

/// The most memory a stored hash may ask argon2 for (in 1 KiB blocks): 64 MiB.
const MAX_BLOCKS: usize = 64 * 1024;

/// `memory` with at least `blocks` blocks (grown once, then reused).
fn fit(memory: &mut Vec<Block>, blocks: usize) {
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
}

/// Hashes `password` with a fresh salt (argon2id, default parameters, PHC string), with
/// `memory` as argon2's working memory.
pub fn hash_in(password: &str, memory: &mut Vec<Block>) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_buf)
        .map_err(hash_error)?;
    fit(memory, params.block_count());
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let mut out = vec![0u8; len];
    argon
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, &mut memory[..])
        .map_err(hash_error)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(hash_error)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(hash_error)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the stored `hash`, with `memory` as argon2's working memory (a
/// malformed hash, or one asking for more than 64 MiB, never matches).
pub fn verify_in(password: &str, hash: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    if params.block_count() > MAX_BLOCKS {
        return false;
    }
    fit(memory, params.block_count());
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, &mut memory[..])
        .is_ok()
        // `Output`'s comparison takes the same time wherever the bytes differ.
        && Output::new(&out).is_ok_and(|actual| actual == expected)
}

/// Hashes `password` with a fresh salt (fresh working memory).
pub fn hash(password: &str) -> Result<String, HashError> {
    hash_in(password, &mut Vec::new())
}

/// Whether `password` matches the stored `hash` (fresh working memory).
pub fn verify(password: &str, hash: &str) -> bool {
    verify_in(password, hash, &mut Vec::new())
}

/// A hash of a random password, for equal-time refusals of unknown usernames.
pub fn dummy_hash() -> String {
    let random: [u8; 16] = rand::random();
    hash(&format!("{random:?}")).unwrap_or_default()
}

/// A hash to run on a hashing thread, given the thread's argon2 working memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Runs hashes on its own `concurrent_hashes` threads, with at most `hash_queue` waiting.
#[derive(Debug, Clone)]
pub struct Hasher {
    jobs: mpsc::Sender<Job>,
    wait: Duration,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Hasher {
    /// Starts the threads (they end when the last clone of the `Hasher` is dropped).
    pub fn new(limits: &Limits) -> std::io::Result<Hasher> {
        let (jobs, queue) = mpsc::channel::<Job>(limits.hash_queue.max(1));
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..limits.concurrent_hashes.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    // Allocated once per thread and reused: freeing and allocating 19 MiB per
                    // hash leaves glibc's heaps fragmented, and resident memory climbs.
                    let mut memory = Vec::new();
                    loop {
                        // One thread waits on the queue at a time; the others on the lock.
                        let job = queue
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .blocking_recv();
                        match job {
                            Some(job) => job(&mut memory),
                            None => break,
                        }
                    }
                })?;
        }
        Ok(Hasher {
            jobs,
            wait: limits.hash_wait,
            running: Arc::default(),
            peak: Arc::default(),
        })
    }

    /// Runs `f` on a hashing thread: 503 `busy` when the queue is full or the answer takes
    /// longer than `hash_wait` (a job whose requester gave up is skipped).
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (done, answer) = oneshot::channel();
        let running = self.running.clone();
        let peak = self.peak.clone();
        let job: Job = Box::new(move |memory| {
            if done.is_closed() {
                return;
            }
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let out = f(memory);
            running.fetch_sub(1, Ordering::SeqCst);
            let _ = done.send(out);
        });
        self.jobs.try_send(job).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => ApiError::Busy,
            mpsc::error::TrySendError::Closed(_) => {
                ApiError::internal(HashError("the hashing threads have stopped".into()))
            }
        })?;
        tokio::time::timeout(self.wait, answer)
            .await
            .map_err(|_| ApiError::Busy)?
            .map_err(ApiError::internal)
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.run(move |memory| hash_in(&password, memory))
            .await?
            .map_err(ApiError::internal)
    }

    /// Checks a password against a stored hash.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, ApiError> {
        self.run(move |memory| verify_in(&password, &hash, memory))
            .await
    }

    /// The most hashes that ran at once since start.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    use super::*;

    #[test]
    fn hashes_are_standard_phc_strings_both_ways() {
        let mut memory = Vec::new();
        let ours = hash_in("correct horse", &mut memory).unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        let theirs = Argon2::default()
            .hash_password(
                b"correct horse",
                &SaltString::generate(&mut rand::rngs::OsRng),
            )
            .unwrap()
            .to_string();
        assert!(verify_in("correct horse", &theirs, &mut memory));
        assert!(!verify_in("wrong horse", &theirs, &mut memory));
        assert!(!verify_in("correct horse", "not a hash", &mut memory));
        let greedy = theirs.replace("m=19456", "m=1000000");
        assert!(!verify_in("correct horse", &greedy, &mut memory));
        assert_eq!(memory.len(), 19456, "one working memory, reused");
    }
}
