//! The lines of a sync stream (`StreamingSyncLine` in the official service). Each line is an
//! object with exactly one top-level key; serde's externally tagged enums give that form.

use serde::{Deserialize, Serialize, Serializer};

use crate::{Checksum, OpId};

/// One line of the sync stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncLine {
    Checkpoint(Checkpoint),
    CheckpointDiff(CheckpointDiff),
    Data(DataLine),
    CheckpointComplete(CheckpointComplete),
    PartialCheckpointComplete(PartialCheckpointComplete),
    TokenExpiresIn(i64),
}

impl SyncLine {
    /// The NDJSON form: the JSON object followed by `\n`, appended to `out`.
    pub fn write_ndjson(&self, out: &mut Vec<u8>) {
        // Serializing these plain structs into a Vec cannot fail.
        serde_json::to_writer(&mut *out, self).expect("sync lines serialize to JSON");
        out.push(b'\n');
    }

    /// The BSON form: one document holding this line.
    pub fn to_bson(&self) -> Result<Vec<u8>, bson::error::Error> {
        bson::serialize_to_vec(self)
    }
}

/// The full bucket set of a checkpoint. Always the first checkpoint-type line of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub last_op_id: OpId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_checkpoint: Option<OpId>,
    pub buckets: Vec<BucketChecksum>,
    #[serde(default)]
    pub streams: Vec<StreamDescription>,
}

/// Changes relative to the previous checkpoint on the same stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointDiff {
    pub last_op_id: OpId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_checkpoint: Option<OpId>,
    pub updated_buckets: Vec<BucketChecksum>,
    pub removed_buckets: Vec<String>,
}

/// A bucket's checksum and op count at a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketChecksum {
    pub bucket: String,
    /// Printed as a signed 32-bit integer, as the official service does.
    #[serde(serialize_with = "signed_checksum")]
    pub checksum: Checksum,
    pub count: i64,
    pub priority: u8,
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionRef>,
}

fn signed_checksum<S: Serializer>(c: &Checksum, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i32(c.as_signed())
}

/// Why a bucket is part of the checkpoint: a default stream (index into `Checkpoint::streams`)
/// or an explicit subscription (index into the request's subscriptions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionRef {
    Default(usize),
    Sub(usize),
}

/// A stream (or classic bucket definition) the connection is subscribed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDescription {
    pub name: String,
    pub is_default: bool,
    #[serde(default)]
    pub errors: Vec<StreamError>,
}

/// A problem with one subscription of a stream: `{"subscription": "default" | <index>,
/// "message": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamError {
    pub subscription: ErrorSubscription,
    pub message: String,
}

/// Which subscription a [`StreamError`] is about: the stream's default subscription (`"default"`)
/// or an index into the request's `streams.subscriptions`.
///
/// The index is written as a 32-bit integer: the Rust core reads it from JSON as an unsigned
/// number and from BSON only as an `int32` (an `int64` fails the whole line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSubscription {
    Default,
    Sub(u32),
}

impl Serialize for ErrorSubscription {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            ErrorSubscription::Default => s.serialize_str("default"),
            ErrorSubscription::Sub(i) => s.serialize_i32(i32::try_from(i).unwrap_or(i32::MAX)),
        }
    }
}

impl<'de> Deserialize<'de> for ErrorSubscription {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Cause;
        impl serde::de::Visitor<'_> for Cause {
            type Value = ErrorSubscription;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"default\" or a subscription index")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "default" => Ok(ErrorSubscription::Default),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(ErrorSubscription::Sub)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(ErrorSubscription::Sub)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
        }
        d.deserialize_any(Cause)
    }
}

/// A chunk of one bucket's ops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataLine {
    pub bucket: String,
    pub after: OpId,
    pub has_more: bool,
    pub data: Vec<OplogEntry>,
    pub next_after: OpId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OpType {
    Put,
    Remove,
    Move,
    Clear,
}

/// One op of a bucket. `data` is the output row as a JSON *string* (the client requires it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OplogEntry {
    pub op_id: OpId,
    pub op: OpType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    pub checksum: Checksum,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subkey: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointComplete {
    pub last_op_id: OpId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialCheckpointComplete {
    pub last_op_id: OpId,
    pub priority: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = include_str!("../tests/official-trace.ndjson");

    /// Every line of the recorded official trace parses into our types and serializes back to
    /// the same JSON value (field order aside).
    #[test]
    fn official_trace_round_trips() {
        for line in TRACE.lines() {
            let parsed: SyncLine = serde_json::from_str(line).unwrap();
            let mut out = Vec::new();
            parsed.write_ndjson(&mut out);
            let ours: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let theirs: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(ours, theirs, "line {line}");
        }
    }

    #[test]
    fn checksums_of_trace_ops_match_their_formula() {
        for line in TRACE.lines() {
            if let SyncLine::Data(d) = serde_json::from_str(line).unwrap() {
                for op in d.data {
                    let expect = Checksum::of_put(
                        op.object_type.as_deref().unwrap(),
                        op.object_id.as_deref().unwrap(),
                        op.data.as_deref().unwrap(),
                    );
                    assert_eq!(op.checksum, expect);
                }
            }
        }
    }

    /// Stream errors as the Rust core reads them: the index an `int32` in BSON, `"default"`
    /// as a string.
    #[test]
    fn stream_errors_in_json_and_bson() {
        let line = SyncLine::Checkpoint(Checkpoint {
            last_op_id: OpId(1),
            write_checkpoint: None,
            buckets: Vec::new(),
            streams: vec![StreamDescription {
                name: "s".into(),
                is_default: true,
                errors: vec![
                    StreamError {
                        subscription: ErrorSubscription::Default,
                        message: "a".into(),
                    },
                    StreamError {
                        subscription: ErrorSubscription::Sub(1),
                        message: "b".into(),
                    },
                ],
            }],
        });
        let mut out = Vec::new();
        line.write_ndjson(&mut out);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            json["checkpoint"]["streams"][0]["errors"],
            serde_json::json!([{"subscription": "default", "message": "a"}, {"subscription": 1, "message": "b"}])
        );
        let doc: bson::Document = bson::deserialize_from_slice(&line.to_bson().unwrap()).unwrap();
        let errors = doc
            .get_document("checkpoint")
            .unwrap()
            .get_array("streams")
            .unwrap()[0]
            .as_document()
            .unwrap()
            .get_array("errors")
            .unwrap();
        assert_eq!(
            errors[1].as_document().unwrap().get("subscription"),
            Some(&bson::Bson::Int32(1))
        );
        let back: SyncLine = bson::deserialize_from_slice(&line.to_bson().unwrap()).unwrap();
        assert_eq!(back, line);
    }

    #[test]
    fn token_line_and_bson() {
        let line = SyncLine::TokenExpiresIn(20);
        let mut out = Vec::new();
        line.write_ndjson(&mut out);
        assert_eq!(out, b"{\"token_expires_in\":20}\n");
        let doc = line.to_bson().unwrap();
        let back: SyncLine = bson::deserialize_from_slice(&doc).unwrap();
        assert_eq!(back, line);
    }
}
