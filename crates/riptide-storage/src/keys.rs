//! Keys of any length in bounded index rows. A Postgres btree index row holds at most about
//! 2,700 bytes, and bucket names, row keys and parameter-lookup keys come from source data, so
//! they can be longer: written as they are, one such key would make storage refuse the whole
//! source transaction, again at every retry.
//!
//! Storage therefore indexes a *stored form*: a key up to [`MAX_STORED_KEY`] bytes is stored as
//! it is; a longer one (or one that could be mistaken for a stored form) becomes a marker and
//! its SHA-256 digest. Stored forms are made on the way in and mapped back on the way out, so
//! callers only ever see full keys: every read names the keys it wants (bucket names from the
//! rules, row keys from the replicator, lookups from the request), and events and row states
//! carry the full values. A row's subkey is taken from its stored key, the same on PUT, REMOVE
//! and truncate.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

/// Keys up to this many bytes are stored as they are.
pub const MAX_STORED_KEY: usize = 1_024;
/// Bytes of a long bucket name kept in front of its digest, so it stays recognisable.
const NAME_PREFIX: usize = 128;
/// Separates a long bucket name's prefix from its digest. Bucket names are JSON-escaped, so
/// none contains a raw control character; one that does is stored hashed too.
const NAME_MARK: char = '\u{1}';
/// First byte of a long row or lookup key's stored form; a short key starting with it is
/// stored hashed too.
const KEY_MARK: u8 = 0xff;

/// The stored form of a bucket name.
pub fn bucket(name: &str) -> Cow<'_, str> {
    if name.len() <= MAX_STORED_KEY && !name.contains(NAME_MARK) {
        return Cow::Borrowed(name);
    }
    let mut cut = NAME_PREFIX.min(name.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!(
        "{}{NAME_MARK}{:x}",
        &name[..cut],
        Sha256::digest(name.as_bytes())
    ))
}

/// The stored form of a row key or a parameter-lookup key.
pub fn row_key(key: &[u8]) -> Cow<'_, [u8]> {
    if key.len() <= MAX_STORED_KEY && key.first() != Some(&KEY_MARK) {
        return Cow::Borrowed(key);
    }
    let mut out = Vec::with_capacity(33);
    out.push(KEY_MARK);
    out.extend_from_slice(&Sha256::digest(key));
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_stored_as_they_are() {
        assert!(matches!(bucket("1#global[]"), Cow::Borrowed(_)));
        assert!(matches!(row_key(b"\x01abc"), Cow::Borrowed(_)));
        let edge = "x".repeat(MAX_STORED_KEY);
        assert_eq!(bucket(&edge), edge.as_str());
    }

    #[test]
    fn long_keys_are_bounded_distinct_and_stable() {
        let a = format!("1#b[\"{}\"]", "é".repeat(2_000));
        let b = format!("1#b[\"{}x\"]", "é".repeat(2_000));
        let (sa, sb) = (bucket(&a), bucket(&b));
        assert!(sa.len() <= NAME_PREFIX + 1 + 64);
        assert!(sa.starts_with("1#b[\""));
        assert_ne!(sa, sb);
        assert_eq!(sa, bucket(&a));
        let k = vec![7u8; 5_000];
        assert_eq!(row_key(&k).len(), 33);
        assert_ne!(row_key(&k), row_key(&[7u8; 4_999][..]));
    }

    #[test]
    fn nothing_short_looks_like_a_stored_form() {
        // A short value shaped like a stored form is hashed, so it cannot meet a long key.
        let long = "n".repeat(MAX_STORED_KEY + 1);
        let stored = bucket(&long).into_owned();
        assert_ne!(bucket(&stored), stored.as_str());
        let long_key = vec![1u8; MAX_STORED_KEY + 1];
        let stored_key = row_key(&long_key).into_owned();
        assert_ne!(row_key(&stored_key), stored_key.as_slice());
    }
}
