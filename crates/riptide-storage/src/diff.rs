//! The one place that turns "what a source row produced before" and "what it produces now" into
//! PUT/REMOVE ops, the new stored row state and the changed parameter lookups. Pure: both
//! [`crate::MemoryStorage`] and [`crate::PgStorage`] call it, so their semantics cannot drift.
//!
//! Stored per source row ([`RowState`]): the row bytes, and for each bucket row it produced the
//! bucket, output table and id plus a 16-byte fingerprint of the PUT (the first 16 bytes of the
//! same SHA-256 the PUT checksum is taken from), and its parameter-lookup rows. A PUT is written
//! only when a bucket row is new or its data changed, so replaying identical data does not grow
//! buckets; a bucket row produced before but not now gets a REMOVE.

use std::collections::{BTreeMap, HashSet};

use riptide_protocol::{Checksum, OpType};

use crate::{BucketRow, ParameterRow, RowChange, StorageError};

/// Namespace for the UUIDv5 in subkeys (the official service's namespace; any stable value works).
const SUBKEY_NAMESPACE: uuid::Uuid = uuid::Uuid::from_bytes([
    0xa3, 0x96, 0xdd, 0x91, 0x09, 0xfc, 0x40, 0x17, 0xa2, 0x8d, 0x3d, 0xf7, 0x22, 0xf6, 0x51, 0xe9,
]);

/// The subkey of a source row: `<source_table>/<uuid v5 of the key bytes>`. PUT and REMOVE ops
/// of the same source row carry the same subkey.
pub(crate) fn subkey(source_table: &str, key: &[u8]) -> String {
    format!(
        "{source_table}/{}",
        uuid::Uuid::new_v5(&SUBKEY_NAMESPACE, key).hyphenated()
    )
}

/// One bucket row a source row produced, as remembered for the next diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredBucketRow {
    pub bucket: String,
    pub table: String,
    pub id: String,
    /// First 16 bytes of SHA-256(`put.<table>.<id>.<data>`).
    pub fingerprint: [u8; 16],
}

/// What storage remembers about one source row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowState {
    pub row: Vec<u8>,
    pub buckets: Vec<StoredBucketRow>,
    pub parameters: Vec<ParameterRow>,
}

/// An op to write, without its op id (allocated by the caller in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DiffOp {
    pub bucket: String,
    pub op: OpType,
    pub table: String,
    pub id: String,
    pub checksum: Checksum,
    /// The output row JSON for PUT; `None` for REMOVE.
    pub data: Option<String>,
    /// The op supersedes an earlier op of the same row in the bucket (a changed PUT, or a
    /// REMOVE), which compaction can then turn into a MOVE: counted per bucket to find the
    /// buckets worth compacting.
    pub supersedes: bool,
}

/// The result of diffing one row change.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RowDiff {
    /// REMOVEs first, then PUTs in the order the bucket rows were given.
    pub ops: Vec<DiffOp>,
    /// The state to store now; `None` when the row no longer exists.
    pub new_state: Option<RowState>,
    /// Lookup keys whose results for this row changed (sorted, deduplicated).
    pub changed_lookups: Vec<Vec<u8>>,
}

impl RowDiff {
    /// Whether the stored parameter rows of this source row must be replaced.
    pub fn parameters_changed(&self) -> bool {
        !self.changed_lookups.is_empty()
    }
}

/// Digest of a PUT: the checksum (first 4 bytes, little-endian) and the fingerprint (first 16).
fn put_digest(table: &str, id: &str, data: &str) -> (Checksum, [u8; 16]) {
    let digest = Checksum::put_digest(table, id, data);
    let mut fingerprint = [0u8; 16];
    fingerprint.copy_from_slice(&digest[..16]);
    (Checksum::from_digest(&digest), fingerprint)
}

/// Diffs the previous state of a source row (if any) against its new state.
///
/// `subkey` is the row's subkey (see [`subkey`]); the REMOVE checksum depends on it.
pub(crate) fn diff_row(prev: Option<&RowState>, change: RowChange, subkey: &str) -> RowDiff {
    let (row, new_buckets, new_parameters) = match change {
        RowChange::Upsert {
            row,
            buckets,
            parameters,
        } => (Some(row), buckets, parameters),
        RowChange::Delete => (None, Vec::new(), Vec::new()),
    };

    // The same (bucket, table, id) twice from one row: the last one wins.
    let deduped: Vec<BucketRow> = if new_buckets.len() <= 1 {
        new_buckets
    } else {
        let mut seen = HashSet::new();
        let mut deduped = Vec::with_capacity(new_buckets.len());
        for b in new_buckets.into_iter().rev() {
            if seen.insert((b.bucket.clone(), b.table.clone(), b.id.clone())) {
                deduped.push(b);
            }
        }
        deduped.reverse();
        deduped
    };

    let prev_buckets: &[StoredBucketRow] = prev.map(|p| p.buckets.as_slice()).unwrap_or(&[]);
    let mut ops = Vec::new();

    // REMOVE for every bucket row produced before and not any more.
    let mut remove_checksum = None;
    for old in prev_buckets {
        let still = deduped
            .iter()
            .any(|b| b.bucket == old.bucket && b.table == old.table && b.id == old.id);
        if !still {
            ops.push(DiffOp {
                bucket: old.bucket.clone(),
                op: OpType::Remove,
                table: old.table.clone(),
                id: old.id.clone(),
                checksum: *remove_checksum.get_or_insert_with(|| Checksum::of_remove(subkey)),
                data: None,
                supersedes: true,
            });
        }
    }

    // PUT for every bucket row that is new or whose data changed.
    let mut stored = Vec::with_capacity(deduped.len());
    for b in deduped {
        let (checksum, fingerprint) = put_digest(&b.table, &b.id, &b.data);
        let before = prev_buckets
            .iter()
            .find(|old| old.bucket == b.bucket && old.table == b.table && old.id == b.id);
        let unchanged = before.is_some_and(|old| old.fingerprint == fingerprint);
        if !unchanged {
            ops.push(DiffOp {
                bucket: b.bucket.clone(),
                op: OpType::Put,
                table: b.table.clone(),
                id: b.id.clone(),
                checksum,
                data: Some(b.data),
                supersedes: before.is_some(),
            });
        }
        stored.push(StoredBucketRow {
            bucket: b.bucket,
            table: b.table,
            id: b.id,
            fingerprint,
        });
    }

    let prev_parameters: &[ParameterRow] = prev.map(|p| p.parameters.as_slice()).unwrap_or(&[]);
    let changed_lookups = changed_lookups(prev_parameters, &new_parameters);

    RowDiff {
        ops,
        new_state: row.map(|row| RowState {
            row,
            buckets: stored,
            parameters: new_parameters,
        }),
        changed_lookups,
    }
}

/// Lookup keys whose multiset of results differs between `old` and `new`.
fn changed_lookups(old: &[ParameterRow], new: &[ParameterRow]) -> Vec<Vec<u8>> {
    fn group(rows: &[ParameterRow]) -> BTreeMap<&[u8], Vec<&[u8]>> {
        let mut m: BTreeMap<&[u8], Vec<&[u8]>> = BTreeMap::new();
        for r in rows {
            m.entry(r.lookup.as_slice())
                .or_default()
                .push(r.result.as_slice());
        }
        for v in m.values_mut() {
            v.sort_unstable();
        }
        m
    }
    let (old, new) = (group(old), group(new));
    let mut changed: Vec<Vec<u8>> = Vec::new();
    for (k, v) in &old {
        if new.get(k) != Some(v) {
            changed.push(k.to_vec());
        }
    }
    for k in new.keys() {
        if !old.contains_key(k) {
            changed.push(k.to_vec());
        }
    }
    changed.sort_unstable();
    changed.dedup();
    changed
}

// --- compact binary encoding of the remembered bucket rows and parameter rows ---
//
// Both lists are stored as bytea in Postgres. Format: u32 LE count, then per entry
// length-prefixed (u32 LE) fields; bucket rows end with the 16-byte fingerprint.

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Lengths come from Rust strings/vectors held in memory; > 4 GiB fields cannot occur here.
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

pub(crate) fn encode_buckets(rows: &[StoredBucketRow]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + rows.len() * 64);
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    for r in rows {
        put_bytes(&mut out, r.bucket.as_bytes());
        put_bytes(&mut out, r.table.as_bytes());
        put_bytes(&mut out, r.id.as_bytes());
        out.extend_from_slice(&r.fingerprint);
    }
    out
}

pub(crate) fn encode_parameters(rows: &[ParameterRow]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + rows.len() * 32);
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    for r in rows {
        put_bytes(&mut out, &r.lookup);
        put_bytes(&mut out, &r.result);
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StorageError> {
        if self.0.len() < n {
            return Err(StorageError::Corrupt("truncated stored row state".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, StorageError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes(&mut self) -> Result<&'a [u8], StorageError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, StorageError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec())
            .map_err(|_| StorageError::Corrupt("stored row state is not UTF-8".into()))
    }

    fn finish(self) -> Result<(), StorageError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(StorageError::Corrupt(
                "trailing bytes in stored row state".into(),
            ))
        }
    }

    /// A count, bounded by the remaining bytes so corrupt input cannot make us allocate a lot.
    fn count(&mut self, min_entry: usize) -> Result<usize, StorageError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_entry) > self.0.len() {
            return Err(StorageError::Corrupt(
                "stored row state count too large".into(),
            ));
        }
        Ok(n)
    }
}

pub(crate) fn decode_buckets(b: &[u8]) -> Result<Vec<StoredBucketRow>, StorageError> {
    let mut r = Reader(b);
    let n = r.count(12 + 16)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let bucket = r.string()?;
        let table = r.string()?;
        let id = r.string()?;
        let mut fingerprint = [0u8; 16];
        fingerprint.copy_from_slice(r.take(16)?);
        out.push(StoredBucketRow {
            bucket,
            table,
            id,
            fingerprint,
        });
    }
    r.finish()?;
    Ok(out)
}

pub(crate) fn decode_parameters(b: &[u8]) -> Result<Vec<ParameterRow>, StorageError> {
    let mut r = Reader(b);
    let n = r.count(8)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let lookup = r.bytes()?.to_vec();
        let result = r.bytes()?.to_vec();
        out.push(ParameterRow { lookup, result });
    }
    r.finish()?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn br(bucket: &str, id: &str, data: &str) -> BucketRow {
        BucketRow {
            bucket: bucket.into(),
            table: "lists".into(),
            id: id.into(),
            data: data.into(),
        }
    }

    fn upsert(buckets: Vec<BucketRow>, parameters: Vec<ParameterRow>) -> RowChange {
        RowChange::Upsert {
            row: b"row".to_vec(),
            buckets,
            parameters,
        }
    }

    fn pr(lookup: &[u8], result: &[u8]) -> ParameterRow {
        ParameterRow {
            lookup: lookup.to_vec(),
            result: result.to_vec(),
        }
    }

    #[test]
    fn put_digest_checksum_matches_protocol() {
        let (c, _) = put_digest("lists", "1", r#"{"id":"1"}"#);
        assert_eq!(c, Checksum::of_put("lists", "1", r#"{"id":"1"}"#));
    }

    #[test]
    fn subkey_is_stable_and_per_row() {
        assert_eq!(subkey("public.t", b"k1"), subkey("public.t", b"k1"));
        assert_ne!(subkey("public.t", b"k1"), subkey("public.t", b"k2"));
        assert!(subkey("public.t", b"k1").starts_with("public.t/"));
    }

    #[test]
    fn insert_puts_each_bucket_row() {
        let d = diff_row(
            None,
            upsert(vec![br("a", "1", "{}"), br("b", "1", "{}")], vec![]),
            "sk",
        );
        assert_eq!(d.ops.len(), 2);
        assert!(d.ops.iter().all(|o| o.op == OpType::Put));
        assert_eq!(d.ops[0].checksum, Checksum::of_put("lists", "1", "{}"));
        assert_eq!(d.new_state.unwrap().buckets.len(), 2);
    }

    #[test]
    fn identical_replay_writes_nothing() {
        let first = diff_row(None, upsert(vec![br("a", "1", "{}")], vec![]), "sk");
        let again = diff_row(
            first.new_state.as_ref(),
            upsert(vec![br("a", "1", "{}")], vec![]),
            "sk",
        );
        assert!(again.ops.is_empty());
        assert!(again.changed_lookups.is_empty());
    }

    #[test]
    fn changed_data_puts_again() {
        let first = diff_row(None, upsert(vec![br("a", "1", "{}")], vec![]), "sk");
        let next = diff_row(
            first.new_state.as_ref(),
            upsert(vec![br("a", "1", r#"{"x":1}"#)], vec![]),
            "sk",
        );
        assert_eq!(next.ops.len(), 1);
        assert_eq!(next.ops[0].op, OpType::Put);
        assert!(!first.ops[0].supersedes, "a new row supersedes nothing");
        assert!(next.ops[0].supersedes, "a changed row supersedes its PUT");
    }

    #[test]
    fn move_between_buckets_removes_and_puts() {
        let first = diff_row(None, upsert(vec![br("a", "1", "{}")], vec![]), "sk");
        let moved = diff_row(
            first.new_state.as_ref(),
            upsert(vec![br("b", "1", "{}")], vec![]),
            "sk",
        );
        assert_eq!(moved.ops.len(), 2);
        assert_eq!(moved.ops[0].op, OpType::Remove);
        assert_eq!(moved.ops[0].bucket, "a");
        assert_eq!(moved.ops[0].checksum, Checksum::of_remove("sk"));
        assert!(
            moved.ops[0].supersedes,
            "the REMOVE supersedes the PUT in a"
        );
        assert!(
            !moved.ops[1].supersedes,
            "the PUT is the first op of the row in b"
        );
        assert_eq!(moved.ops[0].data, None);
        assert_eq!(moved.ops[1].op, OpType::Put);
        assert_eq!(moved.ops[1].bucket, "b");
    }

    #[test]
    fn delete_removes_everywhere() {
        let first = diff_row(
            None,
            upsert(
                vec![br("a", "1", "{}"), br("b", "1", "{}")],
                vec![pr(b"l", b"r")],
            ),
            "sk",
        );
        let del = diff_row(first.new_state.as_ref(), RowChange::Delete, "sk");
        assert_eq!(del.ops.len(), 2);
        assert!(del.ops.iter().all(|o| o.op == OpType::Remove));
        assert!(del.new_state.is_none());
        assert_eq!(del.changed_lookups, vec![b"l".to_vec()]);
        // Deleting a row never seen writes nothing.
        let none = diff_row(None, RowChange::Delete, "sk");
        assert!(none.ops.is_empty() && none.new_state.is_none());
    }

    #[test]
    fn duplicate_bucket_rows_collapse_to_last() {
        let d = diff_row(
            None,
            upsert(vec![br("a", "1", "{}"), br("a", "1", r#"{"v":2}"#)], vec![]),
            "sk",
        );
        assert_eq!(d.ops.len(), 1);
        assert_eq!(d.ops[0].data.as_deref(), Some(r#"{"v":2}"#));
    }

    #[test]
    fn lookup_changes_are_precise() {
        let first = diff_row(
            None,
            upsert(vec![], vec![pr(b"l1", b"r1"), pr(b"l2", b"r2")]),
            "sk",
        );
        assert_eq!(first.changed_lookups, vec![b"l1".to_vec(), b"l2".to_vec()]);
        let next = diff_row(
            first.new_state.as_ref(),
            upsert(vec![], vec![pr(b"l2", b"r2"), pr(b"l3", b"r3")]),
            "sk",
        );
        assert_eq!(next.changed_lookups, vec![b"l1".to_vec(), b"l3".to_vec()]);
        let same = diff_row(
            next.new_state.as_ref(),
            upsert(vec![], vec![pr(b"l3", b"r3"), pr(b"l2", b"r2")]),
            "sk",
        );
        assert!(same.changed_lookups.is_empty());
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let d = diff_row(
            None,
            upsert(
                vec![br("a", "1", "{}"), br("b", "2", "{}")],
                vec![pr(b"l", b"r"), pr(b"", b"")],
            ),
            "sk",
        );
        let s = d.new_state.unwrap();
        assert_eq!(
            decode_buckets(&encode_buckets(&s.buckets)).unwrap(),
            s.buckets
        );
        assert_eq!(
            decode_parameters(&encode_parameters(&s.parameters)).unwrap(),
            s.parameters
        );
        let enc = encode_buckets(&s.buckets);
        for cut in 0..enc.len() {
            assert!(decode_buckets(&enc[..cut]).is_err());
        }
        assert!(decode_buckets(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_parameters(&[1, 0, 0, 0, 9, 9]).is_err());
        let mut trailing = encode_parameters(&s.parameters);
        trailing.push(0);
        assert!(decode_parameters(&trailing).is_err());
    }
}
