use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A position in the op log of one sync-rules deployment. Op ids are one strictly increasing
/// sequence; checkpoint ids are values of the same sequence. On the wire an op id is always a
/// base-10 string of an `i64` (the official client rejects JSON numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct OpId(pub i64);

impl OpId {
    pub const ZERO: OpId = OpId(0);

    pub fn next(self) -> OpId {
        OpId(self.0 + 1)
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("op id must be a non-negative decimal integer string, got {0:?}")]
pub struct OpIdParseError(pub String);

impl FromStr for OpId {
    type Err = OpIdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(OpIdParseError(s.to_owned()));
        }
        s.parse::<i64>()
            .map(OpId)
            .map_err(|_| OpIdParseError(s.to_owned()))
    }
}

impl Serialize for OpId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OpId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Accepts the wire form (a digit string) and, leniently, a non-negative integer.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = OpId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an op id as a decimal string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OpId, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<OpId, E> {
                i64::try_from(v)
                    .map(OpId)
                    .map_err(|_| E::custom("op id out of range"))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<OpId, E> {
                if v < 0 {
                    return Err(E::custom("op id must not be negative"));
                }
                Ok(OpId(v))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_a_digit_string() {
        assert_eq!(serde_json::to_string(&OpId(1042)).unwrap(), "\"1042\"");
        assert_eq!(serde_json::from_str::<OpId>("\"7\"").unwrap(), OpId(7));
        assert_eq!(serde_json::from_str::<OpId>("7").unwrap(), OpId(7));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "\"\"",
            "\"-1\"",
            "\"1e3\"",
            "\"99999999999999999999\"",
            "-4",
            "null",
        ] {
            assert!(serde_json::from_str::<OpId>(bad).is_err(), "{bad}");
        }
    }
}
