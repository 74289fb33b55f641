//! Live replication counters for metrics and the dashboard, and the replicator's health: the
//! error it keeps failing on (until a storage commit succeeds again), how many times it
//! failed, and lost slots. `riptide serve` reports them in the readiness probe, `/metrics`
//! and the dashboard, so a transaction storage refuses is never a silent retry loop.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use riptide_protocol::Lsn;

/// Counters updated by the replicator as it works; cheap to read at any time.
#[derive(Debug, Default)]
pub struct ReplicationStatus {
    last_received_lsn: AtomicU64,
    last_committed_lsn: AtomicU64,
    transactions: AtomicU64,
    rows: AtomicU64,
    snapshot_rows: AtomicU64,
    /// Milliseconds since the Unix epoch of the last storage commit (0: none yet).
    last_commit_ms: AtomicU64,
    /// Table the snapshot is copying (`None` when no snapshot runs).
    snapshot_table: Mutex<Option<String>>,
    /// Storage commits (any, empty ones too).
    commits: AtomicU64,
    /// Runs of the replicator that ended in an error.
    failures: AtomicU64,
    /// Replication slots found missing or invalidated.
    slot_invalidations: AtomicU64,
    /// The error replication keeps failing on, since no commit succeeded after it.
    problem: Mutex<Option<Problem>>,
}

/// Why replication is not healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The error and its causes, `: `-separated (first lines only).
    pub error: String,
    /// When the first of the failures in a row happened.
    pub since: SystemTime,
    /// Failures in a row.
    pub failures: u64,
}

/// A consistent-enough copy of [`ReplicationStatus`] for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSnapshot {
    pub last_received_lsn: Lsn,
    pub last_committed_lsn: Lsn,
    pub transactions: u64,
    pub rows: u64,
    pub snapshot_table: Option<String>,
    pub snapshot_rows: u64,
    pub last_commit: Option<SystemTime>,
    /// `None`: healthy.
    pub problem: Option<Problem>,
    pub failures: u64,
    pub slot_invalidations: u64,
}

impl ReplicationStatus {
    pub fn last_received_lsn(&self) -> Lsn {
        Lsn(self.last_received_lsn.load(Ordering::Relaxed))
    }

    pub fn last_committed_lsn(&self) -> Lsn {
        Lsn(self.last_committed_lsn.load(Ordering::Relaxed))
    }

    /// Source transactions committed to storage.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// Row changes (snapshot and stream) written to storage.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Rows copied of the table the snapshot is on.
    pub fn snapshot_rows(&self) -> u64 {
        self.snapshot_rows.load(Ordering::Relaxed)
    }

    pub fn snapshot_table(&self) -> Option<String> {
        self.snapshot_table
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    pub fn last_commit(&self) -> Option<SystemTime> {
        match self.last_commit_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + std::time::Duration::from_millis(ms)),
        }
    }

    pub fn snapshot(&self) -> StatusSnapshot {
        StatusSnapshot {
            last_received_lsn: self.last_received_lsn(),
            last_committed_lsn: self.last_committed_lsn(),
            transactions: self.transactions(),
            rows: self.rows(),
            snapshot_table: self.snapshot_table(),
            snapshot_rows: self.snapshot_rows(),
            last_commit: self.last_commit(),
            problem: self.problem(),
            failures: self.failures.load(Ordering::Relaxed),
            slot_invalidations: self.slot_invalidations.load(Ordering::Relaxed),
        }
    }

    /// Storage commits so far (a run that committed made progress).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Why replication is not healthy, if it is not.
    pub fn problem(&self) -> Option<Problem> {
        match self.problem.lock() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A run of the replicator failed with `error` (kept until a commit succeeds).
    pub fn failed(&self, error: &dyn std::error::Error) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        // The first line of each cause: a database error's DETAIL lines may quote row values,
        // which the probes and the dashboard must not show.
        let first_line =
            |e: &dyn std::error::Error| e.to_string().lines().next().unwrap_or_default().to_owned();
        let mut text = first_line(error);
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&first_line(cause));
            source = cause.source();
        }
        let mut problem = match self.problem.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        *problem = Some(match problem.take() {
            Some(p) => Problem {
                error: text,
                since: p.since,
                failures: p.failures + 1,
            },
            None => Problem {
                error: text,
                since: SystemTime::now(),
                failures: 1,
            },
        });
    }

    /// The deployment's slot was found missing or invalidated.
    pub fn slot_invalidated(&self) {
        self.slot_invalidations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn received(&self, lsn: Lsn) {
        self.last_received_lsn.fetch_max(lsn.0, Ordering::Relaxed);
    }

    pub(crate) fn committed(&self, lsn: Lsn, transactions: u64) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut problem) = self.problem.lock() {
            *problem = None;
        }
        self.last_committed_lsn.fetch_max(lsn.0, Ordering::Relaxed);
        self.transactions.fetch_add(transactions, Ordering::Relaxed);
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        self.last_commit_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn add_rows(&self, rows: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
    }

    pub(crate) fn snapshot_table_started(&self, table: Option<&str>) {
        if let Ok(mut t) = self.snapshot_table.lock() {
            *t = table.map(str::to_owned);
        }
        self.snapshot_rows.store(0, Ordering::Relaxed);
    }

    pub(crate) fn snapshot_progress(&self, rows: u64) {
        self.snapshot_rows.fetch_add(rows, Ordering::Relaxed);
    }
}
