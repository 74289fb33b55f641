use std::fmt;
use std::num::Wrapping;
use std::ops::{Add, AddAssign};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A PowerSync checksum: wrapping u32 arithmetic. A bucket's checksum at a checkpoint is the
/// wrapping sum of the checksums of its ops up to that checkpoint.
///
/// Serialized as an unsigned integer (the official client accepts u32 and i32 forms alike);
/// [`Checksum::as_signed`] gives the signed form the official service prints for buckets.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Checksum(pub Wrapping<u32>);

impl Checksum {
    pub const ZERO: Checksum = Checksum(Wrapping(0));

    pub fn from_u32(v: u32) -> Self {
        Checksum(Wrapping(v))
    }

    pub fn value(self) -> u32 {
        self.0.0
    }

    /// The same bits read as i32, the form the official service emits for bucket checksums.
    pub fn as_signed(self) -> i32 {
        self.0.0 as i32
    }

    /// Checksum of a PUT: the first four bytes, little-endian, of
    /// SHA-256(`put.<object_type>.<object_id>.<data>`), as the official service computes it.
    pub fn of_put(object_type: &str, object_id: &str, data: &str) -> Self {
        Self::from_digest(&Self::put_digest(object_type, object_id, data))
    }

    /// The whole SHA-256 digest a PUT's checksum is taken from (storage also keeps a prefix
    /// of it as a fingerprint of the row's data).
    pub fn put_digest(object_type: &str, object_id: &str, data: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"put.");
        h.update(object_type.as_bytes());
        h.update(b".");
        h.update(object_id.as_bytes());
        h.update(b".");
        h.update(data.as_bytes());
        h.finalize().into()
    }

    /// Checksum of a REMOVE: SHA-256(`delete.<subkey>`), first four bytes little-endian.
    pub fn of_remove(subkey: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"delete.");
        h.update(subkey.as_bytes());
        Self::from_digest(&h.finalize().into())
    }

    /// The checksum a SHA-256 digest stands for: its first four bytes, little-endian.
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        let mut b = [0u8; 4];
        b.copy_from_slice(&digest[..4]);
        Checksum(Wrapping(u32::from_le_bytes(b)))
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({:#010x})", self.value())
    }
}

impl Add for Checksum {
    type Output = Checksum;
    fn add(self, rhs: Checksum) -> Checksum {
        Checksum(self.0 + rhs.0)
    }
}

impl AddAssign for Checksum {
    fn add_assign(&mut self, rhs: Checksum) {
        self.0 += rhs.0;
    }
}

impl std::iter::Sum for Checksum {
    fn sum<I: Iterator<Item = Checksum>>(iter: I) -> Checksum {
        iter.fold(Checksum::ZERO, Add::add)
    }
}

impl Serialize for Checksum {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.value())
    }
}

impl<'de> Deserialize<'de> for Checksum {
    /// Accepts what the official client accepts: u32, negative i32 (bit-cast) and whole doubles.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Checksum;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a checksum as a u32 or i32 integer")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Checksum, E> {
                u32::try_from(v)
                    .map(Checksum::from_u32)
                    .map_err(|_| E::custom("checksum out of range"))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Checksum, E> {
                if let Ok(u) = u32::try_from(v) {
                    return Ok(Checksum::from_u32(u));
                }
                i32::try_from(v)
                    .map(|i| Checksum::from_u32(i as u32))
                    .map_err(|_| E::custom("checksum out of range"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Checksum, E> {
                if v.fract() != 0.0 || !v.is_finite() {
                    return Err(E::custom("checksum must be a whole number"));
                }
                self.visit_i64(v as i64)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Op checksums and the final bucket checksum from the recorded official-service trace
    /// (`tests/official-trace.ndjson`, a copy of the recording).
    #[test]
    fn matches_official_trace() {
        let sum = Checksum::of_put(
            "lists",
            "3df74906-cfa9-4516-b908-7e136e4eb65b",
            r#"{"id":"3df74906-cfa9-4516-b908-7e136e4eb65b","name":"Groceries","created_at":"2026-11-25 08:18:58.314239Z"}"#,
        );
        assert_eq!(sum.value(), 2444787765);
        let ops: [u32; 5] = [2444787765, 3452280601, 764369534, 1868308445, 684001768];
        let bucket: Checksum = ops.iter().copied().map(Checksum::from_u32).sum();
        assert_eq!(bucket.as_signed(), 623813521);
    }

    #[test]
    fn accepts_signed_and_unsigned_forms() {
        assert_eq!(
            serde_json::from_str::<Checksum>("-1").unwrap().value(),
            u32::MAX
        );
        assert_eq!(
            serde_json::from_str::<Checksum>("4294967295")
                .unwrap()
                .value(),
            u32::MAX
        );
        assert_eq!(
            serde_json::from_str::<Checksum>("12.0").unwrap().value(),
            12
        );
        assert!(serde_json::from_str::<Checksum>("4294967296").is_err());
        assert!(serde_json::from_str::<Checksum>("1.5").is_err());
    }

    proptest! {
        #[test]
        fn sum_is_order_independent(mut xs in proptest::collection::vec(any::<u32>(), 0..50)) {
            let a: Checksum = xs.iter().copied().map(Checksum::from_u32).sum();
            xs.reverse();
            let b: Checksum = xs.iter().copied().map(Checksum::from_u32).sum();
            prop_assert_eq!(a, b);
            let wide: u64 = xs.iter().map(|&x| u64::from(x)).sum();
            prop_assert_eq!(a.value(), (wide & 0xffff_ffff) as u32);
        }
    }
}
