//! Write-checkpoint history rules shared by both implementations (docs/protocol.md §4.4).
//!
//! Per (user_id, client_id) storage keeps a counter and a short history of `(id, lsn)` pairs.
//! A write checkpoint is reported at a storage checkpoint with LSN `L` as the greatest id whose
//! LSN is `<= L`; so a newer request whose LSN is not replicated yet never hides an older one
//! that is. An entry `(a, la)` can be dropped once some `(b, lb)` with `b > a` and `lb <= la`
//! exists: every `L` that reaches `la` also reaches `lb` and then `b` wins.

use riptide_protocol::{Lsn, OpId};

/// The newest id whose LSN is `<= lsn`.
pub(crate) fn select(history: &[(OpId, Lsn)], lsn: Lsn) -> Option<OpId> {
    history
        .iter()
        .filter(|(_, l)| *l <= lsn)
        .map(|(id, _)| *id)
        .max()
}

/// Adds `(id, lsn)` to `history` (keeping the lower LSN if `id` is already there) and drops
/// the entries it makes unreachable.
pub(crate) fn record(history: &mut Vec<(OpId, Lsn)>, id: OpId, lsn: Lsn) {
    if let Some(existing) = history.iter_mut().find(|(i, _)| *i == id) {
        existing.1 = existing.1.min(lsn);
    } else {
        history.push((id, lsn));
    }
    let snapshot = history.clone();
    history.retain(|(a, la)| !snapshot.iter().any(|(b, lb)| b > a && lb <= la));
    history.sort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_unreplicated_request_does_not_hide_older() {
        let mut h = Vec::new();
        record(&mut h, OpId(1), Lsn(100));
        record(&mut h, OpId(2), Lsn(200));
        assert_eq!(select(&h, Lsn(99)), None);
        assert_eq!(select(&h, Lsn(150)), Some(OpId(1)));
        assert_eq!(select(&h, Lsn(200)), Some(OpId(2)));
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn dominated_entries_are_pruned() {
        let mut h = Vec::new();
        record(&mut h, OpId(1), Lsn(300));
        // A later id at an earlier LSN (client-chosen request ids): id 1 is now unreachable.
        record(&mut h, OpId(5), Lsn(200));
        assert_eq!(h, vec![(OpId(5), Lsn(200))]);
        assert_eq!(select(&h, Lsn(300)), Some(OpId(5)));
        // Re-recording the same id keeps the lower LSN.
        record(&mut h, OpId(5), Lsn(400));
        assert_eq!(h, vec![(OpId(5), Lsn(200))]);
    }
}
