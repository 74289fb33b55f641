//! The fuzz targets' bodies: one function per decoder of outside bytes, each asserting the
//! decoder's contract (never panics; round-trips where an encoder exists; invariants of what
//! it accepts). The libFuzzer binaries in `src/bin/` are one line each around these, so the
//! same bodies replay a corpus or a crash in a plain test (`cargo test`, uninstrumented).

pub mod auth;
pub mod config;
pub mod pg;
pub mod requests;
pub mod rsocket;
pub mod rules;
pub mod storage;
pub mod upload;

/// `data` as UTF-8, or `None` (text decoders are fuzzed with text).
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Splits `data` into the first byte (a selector) and the rest.
pub fn selector(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(b, rest)| (*b, rest))
}
