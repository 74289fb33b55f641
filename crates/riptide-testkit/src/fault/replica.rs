//! A client's local state, kept as the official client keeps it (per-bucket op logs, each
//! bucket's checksum checked against the checkpoint's at `checkpoint_complete`, local tables
//! the union of the rows of all buckets), and the oracle it is compared with: the sync rules
//! written as plain SQL over the source database.
//!
//! A checkpoint's per-bucket `count` is not checked, as the official client does not check it
//! (it drives progress only, docs/protocol.md §3.5): compaction lowers it below the number of
//! ops a connected client received (§3.6), while the checksum stays the sum of those ops.
//!
//! A replica survives reconnects: [`Replica::request`] asks for its buckets from where it
//! left them (`after` = the last complete checkpoint), as a reconnecting SDK does, so a fault
//! test also checks that clients resuming from an old position converge.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// Output table → row id → row (nulls dropped, booleans as 0/1).
pub type Tables = BTreeMap<String, BTreeMap<String, Map<String, Value>>>;

/// `(object_type, object_id, subkey)`.
type OpKey = (String, String, String);

/// A checkpoint's checksum of one bucket.
type Expected = u32;

/// The checkpoint being downloaded: its buckets and its op id.
#[derive(Debug, Clone)]
struct Target {
    buckets: BTreeMap<String, Expected>,
    op_id: i64,
}

#[derive(Debug, Default, Clone)]
struct Bucket {
    rows: BTreeMap<OpKey, Value>,
    checksum: u32,
    /// The last complete checkpoint's op id (what a reconnect sends as `after`).
    after: i64,
}

/// What a line did to the replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Nothing to report.
    Line,
    /// A checkpoint completed and every bucket's checksum matched.
    Complete,
}

/// Why a line could not be applied: the stream broke the protocol's promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    #[error("{0} before a checkpoint")]
    NoCheckpoint(&'static str),
    #[error("data for bucket {0} outside the checkpoint")]
    BucketOutsideCheckpoint(String),
    #[error("checksum mismatch in bucket {bucket}: local {local}, checkpoint {expected}")]
    Checksum {
        bucket: String,
        local: u32,
        expected: u32,
    },
    #[error("malformed line: {0}")]
    Malformed(String),
    #[error("{table}/{id} differs between buckets")]
    Conflict { table: String, id: String },
}

/// One client's local database.
#[derive(Debug, Default, Clone)]
pub struct Replica {
    buckets: BTreeMap<String, Bucket>,
    /// The buckets as of the last complete checkpoint: a reconnect starts from them (the
    /// server sends every op after that checkpoint again).
    validated: BTreeMap<String, Bucket>,
    /// The checkpoint being downloaded: bucket → checksum, and its op id.
    target: Option<Target>,
    target_write_checkpoint: Option<i64>,
    /// The greatest write checkpoint of a completed checkpoint.
    acknowledged: i64,
    completed: u64,
}

fn num(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        v => v.as_i64(),
    }
}

fn checksums(list: &Value) -> Result<Vec<(String, Expected)>, ReplicaError> {
    let malformed = || ReplicaError::Malformed(format!("bucket list {list}"));
    list.as_array()
        .ok_or_else(malformed)?
        .iter()
        .map(|b| {
            let name = b["bucket"].as_str().ok_or_else(malformed)?.to_owned();
            // Printed signed (i32) or unsigned (u32); both wrap to the same u32.
            let sum = num(&b["checksum"]).ok_or_else(malformed)? as u32;
            Ok((name, sum))
        })
        .collect()
}

/// A row as compared: nulls dropped, booleans as 0/1.
pub fn normalise(v: Value) -> Map<String, Value> {
    let Value::Object(m) = v else {
        return Map::new();
    };
    m.into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            Value::Bool(b) => (k, json!(i64::from(b))),
            v => (k, v),
        })
        .collect()
}

impl Replica {
    pub fn new() -> Replica {
        Replica::default()
    }

    /// The body of a sync request resuming from this replica's state.
    pub fn request(&self, client_id: &str) -> Value {
        let buckets: Vec<Value> = self
            .buckets
            .iter()
            .filter(|(_, b)| b.after > 0)
            .map(|(name, b)| json!({"name": name, "after": b.after.to_string()}))
            .collect();
        json!({"client_id": client_id, "raw_data": true, "buckets": buckets})
    }

    /// The greatest write checkpoint a completed checkpoint acknowledged.
    pub fn acknowledged(&self) -> i64 {
        self.acknowledged
    }

    /// Checkpoints completed so far.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// A new connection: a checkpoint in progress is abandoned, with the ops it brought (the
    /// server sends them again).
    pub fn reconnected(&mut self) {
        self.buckets = self.validated.clone();
        self.target = None;
        self.target_write_checkpoint = None;
    }

    /// Applies one sync line.
    pub fn apply(&mut self, line: &Value) -> Result<Applied, ReplicaError> {
        if let Some(c) = line.get("checkpoint") {
            let buckets: BTreeMap<_, _> = checksums(&c["buckets"])?.into_iter().collect();
            self.buckets.retain(|b, _| buckets.contains_key(b));
            let op_id = num(&c["last_op_id"]).unwrap_or_default();
            self.target = Some(Target { buckets, op_id });
            self.target_write_checkpoint = c.get("write_checkpoint").and_then(num);
        } else if let Some(d) = line.get("checkpoint_diff") {
            let target = self
                .target
                .as_mut()
                .ok_or(ReplicaError::NoCheckpoint("checkpoint_diff"))?;
            target.buckets.extend(checksums(&d["updated_buckets"])?);
            for b in d["removed_buckets"].as_array().into_iter().flatten() {
                let b = b.as_str().unwrap_or_default();
                target.buckets.remove(b);
                self.buckets.remove(b);
            }
            target.op_id = num(&d["last_op_id"]).unwrap_or(target.op_id);
            self.target_write_checkpoint = d.get("write_checkpoint").and_then(num);
        } else if let Some(d) = line.get("data") {
            self.apply_data(d)?;
        } else if line.get("checkpoint_complete").is_some() {
            self.complete()?;
            return Ok(Applied::Complete);
        }
        Ok(Applied::Line)
    }

    fn apply_data(&mut self, d: &Value) -> Result<(), ReplicaError> {
        let name = d["bucket"]
            .as_str()
            .ok_or_else(|| ReplicaError::Malformed(d.to_string()))?;
        if !self
            .target
            .as_ref()
            .is_some_and(|t| t.buckets.contains_key(name))
        {
            return Err(ReplicaError::BucketOutsideCheckpoint(name.to_owned()));
        }
        let bucket = self.buckets.entry(name.to_owned()).or_default();
        for op in d["data"].as_array().into_iter().flatten() {
            let sum = num(&op["checksum"]).unwrap_or_default() as u32;
            let key = || -> OpKey {
                let s = |k: &str| op[k].as_str().unwrap_or_default().to_owned();
                (s("object_type"), s("object_id"), s("subkey"))
            };
            match op["op"].as_str().unwrap_or_default() {
                "PUT" => {
                    let data = match &op["data"] {
                        Value::String(s) => serde_json::from_str(s)
                            .map_err(|_| ReplicaError::Malformed(format!("op data {s}")))?,
                        v => v.clone(),
                    };
                    bucket.rows.insert(key(), data);
                }
                "REMOVE" => {
                    bucket.rows.remove(&key());
                }
                "MOVE" => {}
                "CLEAR" => {
                    bucket.rows.clear();
                    bucket.checksum = 0;
                }
                other => return Err(ReplicaError::Malformed(format!("op {other}"))),
            }
            bucket.checksum = bucket.checksum.wrapping_add(sum);
        }
        Ok(())
    }

    fn complete(&mut self) -> Result<(), ReplicaError> {
        let target = self
            .target
            .as_ref()
            .ok_or(ReplicaError::NoCheckpoint("checkpoint_complete"))?;
        for (name, &expected) in &target.buckets {
            let local = self.buckets.get(name).map_or(0, |b| b.checksum);
            if local != expected {
                // The client drops the bucket and downloads it again (protocol §3.5).
                self.buckets.remove(name);
                self.validated.remove(name);
                return Err(ReplicaError::Checksum {
                    bucket: name.clone(),
                    local,
                    expected,
                });
            }
        }
        for name in target.buckets.keys() {
            self.buckets.entry(name.clone()).or_default().after = target.op_id;
        }
        self.validated = self.buckets.clone();
        if let Some(wc) = self.target_write_checkpoint {
            self.acknowledged = self.acknowledged.max(wc);
        }
        self.completed += 1;
        Ok(())
    }

    /// Local tables: the union of the rows of every bucket.
    pub fn tables(&self) -> Result<Tables, ReplicaError> {
        let mut out = Tables::new();
        for ((table, id, _), data) in self.buckets.values().flat_map(|b| &b.rows) {
            let row = normalise(data.clone());
            let t = out.entry(table.clone()).or_default();
            if t.get(id).is_some_and(|prev| prev != &row) {
                return Err(ReplicaError::Conflict {
                    table: table.clone(),
                    id: id.clone(),
                });
            }
            t.insert(id.clone(), row);
        }
        Ok(out)
    }
}

/// The sync rules as plain SQL: per output table, a query over the source database whose `$1`
/// is the user id and whose rows (with an `id` column) are what the rules grant that user.
#[derive(Debug, Clone, Default)]
pub struct Oracle {
    pub queries: Vec<(String, String)>,
}

impl Oracle {
    pub fn new<T: Into<String>, Q: Into<String>>(
        queries: impl IntoIterator<Item = (T, Q)>,
    ) -> Self {
        Oracle {
            queries: queries
                .into_iter()
                .map(|(t, q)| (t.into(), q.into()))
                .collect(),
        }
    }

    /// What the rules grant `user` now.
    pub async fn tables(
        &self,
        db: &tokio_postgres::Client,
        user: &str,
    ) -> Result<Tables, tokio_postgres::Error> {
        let mut out = Tables::new();
        for (table, sql) in &self.queries {
            let sql = format!("SELECT row_to_json(q)::text FROM ({sql}) q");
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = if sql.contains("$1") {
                vec![&user]
            } else {
                vec![]
            };
            let rows = db.query(&sql, &params).await?;
            let mut t = BTreeMap::new();
            for r in rows {
                let text: &str = r.try_get(0)?;
                let row = normalise(serde_json::from_str(text).unwrap_or(Value::Null));
                let id = match row.get("id") {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                };
                t.insert(id, row);
            }
            if !t.is_empty() {
                out.insert(table.clone(), t);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_checks_and_resumes() {
        let mut r = Replica::new();
        let lines = [
            json!({"checkpoint": {"last_op_id": "2", "write_checkpoint": "5", "buckets": [
                {"bucket": "b", "checksum": 3, "count": 2}]}}),
            json!({"data": {"bucket": "b", "data": [
                {"op_id": "1", "op": "PUT", "object_type": "t", "object_id": "1", "subkey": "s1",
                 "checksum": 1, "data": "{\"id\":\"1\",\"x\":null,\"f\":true}"},
                {"op_id": "2", "op": "PUT", "object_type": "t", "object_id": "2", "subkey": "s2",
                 "checksum": 2, "data": "{\"id\":\"2\"}"}]}}),
            json!({"checkpoint_complete": {"last_op_id": "2"}}),
        ];
        for l in &lines[..2] {
            assert_eq!(r.apply(l), Ok(Applied::Line));
        }
        assert_eq!(r.apply(&lines[2]), Ok(Applied::Complete));
        assert_eq!(r.acknowledged(), 5);
        let t = r.tables().expect("tables");
        assert_eq!(t["t"]["1"], normalise(json!({"id": "1", "f": 1})));
        assert_eq!(
            r.request("c")["buckets"],
            json!([{"name": "b", "after": "2"}])
        );

        r.reconnected();
        r.apply(&json!({"checkpoint": {"last_op_id": "3", "buckets": [
            {"bucket": "b", "checksum": 9, "count": 3}]}}))
            .expect("checkpoint");
        assert!(matches!(
            r.apply(&json!({"checkpoint_complete": {"last_op_id": "3"}})),
            Err(ReplicaError::Checksum { .. })
        ));
        assert!(
            r.request("c")["buckets"]
                .as_array()
                .expect("list")
                .is_empty()
        );
    }
}
