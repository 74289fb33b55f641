//! Compaction of bucket op logs: superseded PUT/REMOVE ops become MOVE, a bucket's leading run
//! of REMOVE/MOVE/CLEAR becomes one CLEAR ([protocol](../../../../docs/protocol.md) §3.6, the
//! rules in [`scan`]). A bucket's checksum at every checkpoint at or after the one compaction
//! ran at stays the same, and a client resuming from any older position still converges.
//!
//! Storage runs it a bucket at a time, in transactions of bounded size
//! ([`crate::BucketStorage::compact_bucket`]), never holding the deployment row the replicator
//! locks. It finds buckets worth compacting through a per-bucket counter of superseded ops kept
//! at write time ([`crate::BucketStorage::compaction_candidates`]). [`compact_deployment`] is the
//! loop over them that the background compactor and `riptide compact` share.
//!
//! Readers: a stream serving a checkpoint older than a bucket's last compaction may have read
//! some of the bucket's ops rewritten; it must not complete that checkpoint
//! ([`crate::BucketStorage::compaction_points`]; the service's session does this).
//!
//! Parameter lookups need no compaction: storage keeps only their current state (a source row's
//! entries are replaced in the transaction that changes them), so there are no superseded
//! versions to remove.

pub(crate) mod scan;

use std::ops::AddAssign;

use crate::{BucketStorage, DeploymentId, Result};

/// How much one compaction may do at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactLimits {
    /// Most ops one storage transaction rewrites or deletes (default 2,000), so locks are
    /// short.
    pub ops_per_transaction: usize,
    /// Ops read per query while scanning a bucket (default 10,000).
    pub scan_page: usize,
    /// Memory for the rows seen while scanning one bucket (default 64 MiB). Beyond it, rows not
    /// seen yet are not tracked: less is compacted, never anything wrong.
    pub key_memory: usize,
}

impl Default for CompactLimits {
    fn default() -> Self {
        CompactLimits {
            ops_per_transaction: 2_000,
            scan_page: 10_000,
            key_memory: 64 * 1024 * 1024,
        }
    }
}

/// What compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Buckets in which something was rewritten.
    pub buckets: u64,
    /// PUT/REMOVE ops turned into MOVE.
    pub ops_moved: u64,
    /// Ops deleted by CLEARs, less the CLEARs written: how much the op count went down.
    pub ops_removed: u64,
    /// Bytes of op rows no longer stored: the type, id, subkey and data of MOVEd ops and the
    /// rows CLEARs replaced (less the CLEARs), as storage measures them. Postgres makes the
    /// space reusable at its next vacuum.
    pub bytes_reclaimed: u64,
    /// Buckets left (partly) for a later run because an open replication transaction was
    /// writing them; their superseded counters stay.
    pub buckets_busy: u64,
}

impl AddAssign for CompactStats {
    fn add_assign(&mut self, o: CompactStats) {
        self.buckets += o.buckets;
        self.ops_moved += o.ops_moved;
        self.ops_removed += o.ops_removed;
        self.bytes_reclaimed += o.bytes_reclaimed;
        self.buckets_busy += o.buckets_busy;
    }
}

/// A bucket and how many of its ops superseded an earlier op since it was last compacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionCandidate {
    pub bucket: String,
    pub superseded: i64,
}

/// Which buckets [`compact_deployment`] compacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactOptions {
    /// Buckets with at least this many superseded ops since their last compaction. 0 means
    /// every bucket.
    pub min_superseded: i64,
    /// Only these buckets (full names); empty: every bucket that qualifies.
    pub buckets: Vec<String>,
    pub limits: CompactLimits,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            min_superseded: 1,
            buckets: Vec::new(),
            limits: CompactLimits::default(),
        }
    }
}

/// Buckets listed per [`BucketStorage::compaction_candidates`] call.
const CANDIDATE_PAGE: usize = 100;

/// Compacts the buckets of deployment `id` that `options` selects, one at a time, up to the
/// deployment's checkpoint when each bucket starts. Returns the sum of what was done.
pub async fn compact_deployment(
    storage: &dyn BucketStorage,
    id: DeploymentId,
    options: &CompactOptions,
) -> Result<CompactStats> {
    let mut total = CompactStats::default();
    if !options.buckets.is_empty() {
        for bucket in &options.buckets {
            total += storage.compact_bucket(id, bucket, &options.limits).await?;
        }
        return Ok(total);
    }
    let mut after: Option<String> = None;
    loop {
        let page = storage
            .compaction_candidates(id, options.min_superseded, after.as_deref(), CANDIDATE_PAGE)
            .await?;
        for c in &page {
            total += storage
                .compact_bucket(id, &c.bucket, &options.limits)
                .await?;
        }
        match page.last() {
            Some(last) if page.len() == CANDIDATE_PAGE => after = Some(last.bucket.clone()),
            _ => return Ok(total),
        }
    }
}
