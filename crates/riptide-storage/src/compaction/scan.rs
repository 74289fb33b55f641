//! Which ops of one bucket compaction rewrites ([protocol](../../../../docs/protocol.md) §3.6).
//! Pure: both [`crate::MemoryStorage`] and [`crate::PgStorage`] feed it a bucket's ops, newest
//! first, so their compaction cannot drift.
//!
//! - **MOVE**: a PUT or REMOVE followed later in the bucket by another PUT or REMOVE of the same
//!   row (`object_type`, `object_id`, `subkey`) becomes a MOVE: same op id, same checksum, no
//!   type, id, subkey or data. Scanning newest first, an op is superseded when its row was seen.
//! - **CLEAR**: the bucket's leading run of REMOVE, MOVE and CLEAR ops (counting the ops that
//!   become MOVE) becomes one CLEAR whose op id is the run's highest and whose checksum is the
//!   run's wrapping sum. Ops of the run are not rewritten as MOVE first.
//!
//! Bucket checksums at every checkpoint at or after the newest op scanned stay the same: a MOVE
//! keeps its op's id and checksum, and a CLEAR sums what it replaces at the highest op id it
//! replaces.

use std::collections::HashSet;

use riptide_protocol::{Checksum, OpId, OpType, OplogEntry};

/// Bytes one tracked row key costs beyond its text (hash set entry, string header).
const KEY_OVERHEAD: usize = 64;

/// The state of a scan of one bucket, newest op first.
#[derive(Debug)]
pub(crate) struct BucketScan {
    /// Rows (length-prefixed `type`, `id`, `subkey`) with a PUT or REMOVE newer than the op
    /// being visited.
    seen: HashSet<String>,
    key_bytes: usize,
    key_memory: usize,
    /// The highest op id of the run of non-PUT ops below the lowest PUT seen so far: if the
    /// scan ends here, the bucket's leading run.
    run_top: Option<OpId>,
    /// Ops in that run.
    run_len: u64,
}

impl BucketScan {
    /// `key_memory`: bytes the set of seen rows may use; beyond it, rows not seen yet are not
    /// tracked (their older ops stay as they are: less compaction, never a wrong MOVE).
    pub fn new(key_memory: usize) -> BucketScan {
        BucketScan {
            seen: HashSet::new(),
            key_bytes: 0,
            key_memory,
            run_top: None,
            run_len: 0,
        }
    }

    /// Visits the next op (op ids strictly decreasing). Returns whether it becomes a MOVE.
    /// `row`: `(object_type, object_id, subkey)` of a PUT or REMOVE.
    pub fn visit(&mut self, op_id: OpId, op: OpType, row: Option<(&str, &str, &str)>) -> bool {
        let mut becomes_move = false;
        if matches!(op, OpType::Put | OpType::Remove)
            && let Some((object_type, object_id, subkey)) = row
        {
            let key = format!(
                "{}:{object_type}{}:{object_id}{subkey}",
                object_type.len(),
                object_id.len()
            );
            if self.seen.contains(&key) {
                becomes_move = true;
            } else if self.key_bytes < self.key_memory {
                self.key_bytes += key.len() + KEY_OVERHEAD;
                self.seen.insert(key);
            }
        }
        if op == OpType::Put && !becomes_move {
            self.run_top = None;
            self.run_len = 0;
        } else {
            self.run_top.get_or_insert(op_id);
            self.run_len += 1;
        }
        becomes_move
    }

    /// After the last (oldest) op: the op id through which the bucket's leading run becomes one
    /// CLEAR, when that run has two ops or more (one op alone gains nothing).
    pub fn clear_through(&self) -> Option<OpId> {
        self.run_top.filter(|_| self.run_len >= 2)
    }
}

/// The bytes a MOVE no longer stores of an op: its type, id, subkey and data.
pub(crate) fn move_bytes(op: &OplogEntry) -> u64 {
    [&op.object_type, &op.object_id, &op.subkey, &op.data]
        .into_iter()
        .map(|f| f.as_ref().map_or(0, |s| s.len() as u64))
        .sum()
}

/// What compacting one in-memory op log did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LogCompaction {
    pub moved: u64,
    /// Ops deleted, minus the CLEAR written for them.
    pub removed: u64,
    /// The bytes MOVEs dropped plus the estimated size of the rows a CLEAR replaced (less its
    /// own).
    pub bytes: u64,
}

/// Fixed cost of one stored op row in the estimate (op id, checksum, bucket and row header).
const ROW_OVERHEAD: u64 = 48;

/// Compacts an op log (in op-id order) in place, considering only ops up to `through`. Ops the
/// CLEAR replaces are not rewritten as MOVE first (as in Postgres, where that would cost a row
/// version each).
pub(crate) fn compact_log(
    ops: &mut Vec<OplogEntry>,
    through: OpId,
    key_memory: usize,
) -> LogCompaction {
    let mut out = LogCompaction::default();
    let mut scan = BucketScan::new(key_memory);
    let end = ops.partition_point(|o| o.op_id <= through);
    let mut moves = Vec::new();
    for (i, op) in ops[..end].iter().enumerate().rev() {
        let row = match (&op.object_type, &op.object_id, &op.subkey) {
            (Some(t), Some(i), Some(s)) => Some((t.as_str(), i.as_str(), s.as_str())),
            _ => None,
        };
        if scan.visit(op.op_id, op.op, row) {
            moves.push(i);
        }
    }
    let top = scan.clear_through();
    for i in moves {
        let op = &mut ops[i];
        if top.is_some_and(|top| op.op_id <= top) {
            continue;
        }
        out.moved += 1;
        out.bytes += move_bytes(op);
        op.op = OpType::Move;
        op.object_type = None;
        op.object_id = None;
        op.subkey = None;
        op.data = None;
    }
    if let Some(top) = top {
        let n = ops.partition_point(|o| o.op_id <= top);
        let replaced: Vec<OplogEntry> = ops.drain(..n).collect();
        let checksum: Checksum = replaced.iter().map(|o| o.checksum).sum();
        out.removed += replaced.len() as u64 - 1;
        out.bytes += replaced
            .iter()
            .map(|o| ROW_OVERHEAD + move_bytes(o))
            .sum::<u64>()
            - ROW_OVERHEAD;
        ops.insert(
            0,
            OplogEntry {
                op_id: top,
                op: OpType::Clear,
                object_type: None,
                object_id: None,
                checksum,
                subkey: None,
                data: None,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(op_id: i64, op: OpType, id: &str) -> OplogEntry {
        let data = (op == OpType::Put).then(|| format!(r#"{{"v":{op_id}}}"#));
        let checksum = match &data {
            Some(d) => Checksum::of_put("t", id, d),
            None => Checksum::of_remove(id),
        };
        OplogEntry {
            op_id: OpId(op_id),
            op,
            object_type: Some("t".into()),
            object_id: Some(id.into()),
            checksum,
            subkey: Some(format!("s/{id}")),
            data,
        }
    }

    fn kinds(ops: &[OplogEntry]) -> Vec<(i64, OpType)> {
        ops.iter().map(|o| (o.op_id.0, o.op)).collect()
    }

    fn sum_through(ops: &[OplogEntry], cp: i64) -> Checksum {
        ops.iter()
            .filter(|o| o.op_id.0 <= cp)
            .map(|o| o.checksum)
            .sum()
    }

    #[test]
    fn superseded_ops_move_and_the_leading_run_clears() {
        use OpType::*;
        let mut log = vec![
            op(1, Put, "a"),
            op(2, Put, "b"),
            op(3, Put, "a"),
            op(4, Remove, "b"),
            op(5, Put, "c"),
            op(6, Put, "a"),
        ];
        let before: Vec<Checksum> = (0..=6).map(|cp| sum_through(&log, cp)).collect();
        let out = compact_log(&mut log, OpId(6), usize::MAX);
        // 1 (a), 3 (a) and 2 (b) are superseded; 4 (REMOVE b) is the newest of b and stays, but
        // 1..=4 is then a leading run of superseded ops and a REMOVE, so one CLEAR at 4 replaces
        // it (the superseded ops in it are not rewritten as MOVE first).
        assert_eq!(kinds(&log), vec![(4, Clear), (5, Put), (6, Put)]);
        assert_eq!(out.moved, 0);
        assert_eq!(out.removed, 3);
        assert!(out.bytes > 0);
        for cp in 4..=6 {
            assert_eq!(
                sum_through(&log, cp),
                before[cp as usize],
                "checkpoint {cp}"
            );
        }
        assert_eq!(log[0].checksum, before[4]);
    }

    #[test]
    fn ops_after_the_bound_are_left_alone_and_still_supersede_nothing() {
        use OpType::*;
        let mut log = vec![op(1, Put, "a"), op(2, Put, "b"), op(3, Put, "a")];
        // Compacting up to 2 does not know op 3: nothing is superseded there.
        let out = compact_log(&mut log, OpId(2), usize::MAX);
        assert_eq!(out, LogCompaction::default());
        assert_eq!(kinds(&log), vec![(1, Put), (2, Put), (3, Put)]);
        let out = compact_log(&mut log, OpId(3), usize::MAX);
        assert_eq!(out.moved, 1);
        assert_eq!(kinds(&log), vec![(1, Move), (2, Put), (3, Put)]);
    }

    #[test]
    fn a_lone_leading_op_is_not_replaced() {
        use OpType::*;
        let mut log = vec![op(1, Put, "a"), op(2, Put, "a")];
        let out = compact_log(&mut log, OpId(2), usize::MAX);
        assert_eq!(kinds(&log), vec![(1, Move), (2, Put)]);
        assert_eq!((out.moved, out.removed), (1, 0));
        // Compacting again changes nothing.
        assert_eq!(
            compact_log(&mut log, OpId(2), usize::MAX),
            LogCompaction::default()
        );
    }

    #[test]
    fn an_earlier_clear_joins_the_next_one() {
        use OpType::*;
        let mut log = vec![op(1, Put, "a"), op(2, Remove, "a"), op(3, Put, "b")];
        compact_log(&mut log, OpId(3), usize::MAX);
        assert_eq!(kinds(&log), vec![(2, Clear), (3, Put)]);
        let first = log[0].checksum;
        log.push(op(4, Remove, "b"));
        log.push(op(5, Put, "c"));
        let total = sum_through(&log, 5);
        compact_log(&mut log, OpId(5), usize::MAX);
        assert_eq!(kinds(&log), vec![(4, Clear), (5, Put)]);
        assert_eq!(sum_through(&log, 5), total);
        assert_ne!(log[0].checksum, first);
    }

    #[test]
    fn rows_differ_by_type_id_and_subkey() {
        use OpType::*;
        let mut a = op(1, Put, "x");
        a.object_type = Some("t1".into());
        let mut b = op(2, Put, "x");
        b.object_type = Some("t2".into());
        // Same type and id, another source row.
        let mut c = op(3, Put, "x");
        c.object_type = Some("t2".into());
        c.subkey = Some("other".into());
        // A key that a plain concatenation would confuse with `b`.
        let mut d = op(4, Put, "x");
        d.object_type = Some("t".into());
        d.object_id = Some("2x".into());
        let mut log = vec![a, b, c, d];
        let out = compact_log(&mut log, OpId(4), usize::MAX);
        assert_eq!(out, LogCompaction::default());
    }

    #[test]
    fn past_the_key_memory_older_ops_of_new_rows_stay() {
        use OpType::*;
        let mut log = vec![op(1, Put, "a"), op(2, Put, "b"), op(3, Put, "a")];
        log.push(op(4, Put, "b"));
        // Room for one key only: "b" (newest) is tracked, "a" is not.
        let out = compact_log(&mut log, OpId(4), 1);
        assert_eq!(out.moved, 1);
        assert_eq!(kinds(&log), vec![(1, Put), (2, Move), (3, Put), (4, Put)]);
    }
}
