//! What a stream knows of the commits after its last checkpoint, from the checkpoint bus alone.
//!
//! After a stream has read a checkpoint from storage (or served one from memory), each commit
//! announced on the bus either leaves its buckets alone, or carries its ops
//! ([`CheckpointEvent::ops`]): as long as the events arrive without a gap
//! ([`CheckpointEvent::previous`] is the checkpoint followed so far), the stream knows every op
//! of its buckets up to the newest event, and its next checkpoint needs no storage read. A gap
//! (a lagging receiver, a lost or foreign event), a large commit, or too many ops make it
//! unknown until the next storage read.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use riptide_protocol::OplogEntry;
use riptide_storage::{CheckpointEvent, CommitOps, StorageCheckpoint};

/// Ops of the stream's buckets followed in memory at most; beyond, read storage.
pub const FOLLOW_OPS_MAX: usize = 512;
/// Bytes ([`riptide_storage::op_bytes`]) of those ops at most: a checkpoint served from
/// memory copies them into its lines, so large rows go through storage pages (bounded by
/// bytes) instead.
pub const FOLLOW_BYTES_MAX: usize = 4 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct Follow {
    /// Every op of the stream's buckets up to this checkpoint is known: the base (a storage
    /// read or a served checkpoint) plus `commits`. `None`: unknown.
    through: Option<StorageCheckpoint>,
    /// Commits after the base that touched the stream's buckets, in order.
    commits: Vec<Arc<CommitOps>>,
    ops: usize,
    bytes: usize,
}

impl Follow {
    /// The stream's state is exact at `checkpoint`; follow from there.
    pub fn rebase(&mut self, checkpoint: StorageCheckpoint) {
        self.through = Some(checkpoint);
        self.commits.clear();
        self.ops = 0;
        self.bytes = 0;
    }

    /// Forget: the next checkpoint is read from storage.
    pub fn reset(&mut self) {
        self.through = None;
        self.commits.clear();
        self.ops = 0;
        self.bytes = 0;
    }

    /// An event of the stream's deployment, in bus order. `touches`: it changed one of the
    /// stream's buckets.
    pub fn on_event(&mut self, event: &CheckpointEvent, touches: bool) {
        let Some(through) = self.through else {
            return;
        };
        if event.checkpoint <= through {
            // Already part of the base (storage was read after this commit).
            return;
        }
        if event.previous != through.op_id {
            self.reset();
            return;
        }
        if touches {
            let bytes = event.ops.as_ref().map_or(0, |ops| {
                ops.buckets
                    .values()
                    .flatten()
                    .map(riptide_storage::op_bytes)
                    .sum::<usize>()
            });
            match &event.ops {
                Some(ops)
                    if self.ops + ops.len() <= FOLLOW_OPS_MAX
                        && self.bytes + bytes <= FOLLOW_BYTES_MAX =>
                {
                    self.ops += ops.len();
                    self.bytes += bytes;
                    self.commits.push(ops.clone());
                }
                _ => {
                    self.reset();
                    return;
                }
            }
        }
        self.through = Some(event.checkpoint);
    }

    /// The newest checkpoint up to which every op of the stream's buckets is known.
    pub fn known(&self) -> Option<StorageCheckpoint> {
        self.through
    }

    /// Whether any op of the stream's buckets was followed since the base.
    pub fn has_ops(&self) -> bool {
        self.ops > 0
    }

    /// The followed ops of `buckets`, per bucket in op-id order.
    pub fn ops_of(&self, buckets: &HashSet<String>) -> HashMap<String, Vec<OplogEntry>> {
        let mut out: HashMap<String, Vec<OplogEntry>> = HashMap::new();
        for commit in &self.commits {
            for (bucket, ops) in &commit.buckets {
                if buckets.contains(bucket) {
                    out.entry(bucket.clone())
                        .or_default()
                        .extend(ops.iter().cloned());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use riptide_protocol::{Checksum, Lsn, OpId, OpType};

    use super::*;

    fn put(op_id: i64) -> OplogEntry {
        OplogEntry {
            op_id: OpId(op_id),
            op: OpType::Put,
            object_type: Some("t".into()),
            object_id: Some(format!("r{op_id}")),
            checksum: Checksum::of_put("t", &format!("r{op_id}"), "{}"),
            subkey: Some(format!("s/{op_id}")),
            data: Some("{}".into()),
        }
    }

    fn cp(op_id: i64, lsn: u64) -> StorageCheckpoint {
        StorageCheckpoint {
            op_id: OpId(op_id),
            lsn: Lsn(lsn),
        }
    }

    /// A commit of `ops` (bucket, op id) after `previous`.
    fn event(previous: i64, lsn: u64, ops: &[(&str, i64)], carry: bool) -> CheckpointEvent {
        let last = ops.iter().map(|o| o.1).max().unwrap_or(previous);
        let commit =
            CommitOps::collect(ops.iter().map(|(b, id)| ((*b).to_owned(), put(*id)))).unwrap();
        let mut changed: Vec<String> = ops.iter().map(|o| o.0.to_owned()).collect();
        changed.dedup();
        CheckpointEvent {
            deployment: 1,
            checkpoint: cp(last, lsn),
            previous: OpId(previous),
            changed_buckets: changed,
            changed_lookups: Vec::new(),
            all_lookups_changed: false,
            ops: carry.then(|| Arc::new(commit)),
        }
    }

    fn names(n: &[&str]) -> HashSet<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn contiguous_events_cover_the_range() {
        let mut f = Follow::default();
        f.rebase(cp(10, 100));
        f.on_event(&event(10, 110, &[("a", 11), ("b", 12)], true), true);
        f.on_event(&event(12, 120, &[("c", 13)], true), false);
        f.on_event(&event(13, 130, &[], true), false);
        f.on_event(&event(13, 140, &[("a", 14)], true), true);
        assert_eq!(f.known(), Some(cp(14, 140)));
        let ops = f.ops_of(&names(&["a", "b"]));
        let ids = |b: &str| ops[b].iter().map(|o| o.op_id.0).collect::<Vec<_>>();
        assert_eq!(ids("a"), vec![11, 14]);
        assert_eq!(ids("b"), vec![12]);
        assert!(!ops.contains_key("c"));
    }

    #[test]
    fn events_already_in_the_base_are_skipped() {
        let mut f = Follow::default();
        f.rebase(cp(12, 120));
        // Queued before the storage read that returned 12.
        f.on_event(&event(10, 110, &[("a", 11), ("a", 12)], true), true);
        f.on_event(&event(12, 120, &[], true), false);
        assert_eq!(f.known(), Some(cp(12, 120)));
        assert!(!f.has_ops());
    }

    #[test]
    fn a_gap_makes_it_unknown() {
        let mut f = Follow::default();
        f.rebase(cp(10, 100));
        // The commit of 11..=12 was never seen.
        f.on_event(&event(12, 130, &[("a", 13)], true), true);
        assert_eq!(f.known(), None);
        // And it stays unknown until the next storage read.
        f.on_event(&event(13, 140, &[("a", 14)], true), true);
        assert_eq!(f.known(), None);
        f.rebase(cp(14, 140));
        assert_eq!(f.known(), Some(cp(14, 140)));
    }

    #[test]
    fn a_commit_without_ops_makes_it_unknown_only_if_it_touches_the_stream() {
        let mut f = Follow::default();
        f.rebase(cp(10, 100));
        // A large commit elsewhere: nothing of ours in it.
        f.on_event(&event(10, 110, &[("b", 11)], false), false);
        assert_eq!(f.known(), Some(cp(11, 110)));
        // A large commit of ours.
        f.on_event(&event(11, 120, &[("a", 12)], false), true);
        assert_eq!(f.known(), None);
    }

    #[test]
    fn too_many_ops_make_it_unknown() {
        let mut f = Follow::default();
        f.rebase(cp(0, 1));
        let mut next = 0;
        while next < FOLLOW_OPS_MAX as i64 {
            let ops: Vec<(&str, i64)> = (next + 1..=next + 100).map(|i| ("a", i)).collect();
            f.on_event(&event(next, 10, &ops, true), true);
            next += 100;
        }
        assert_eq!(f.known(), None);
    }
}
