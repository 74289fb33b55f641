//! The knobs of the streaming applier: chunk size, idle commits, catalog checks, group commit,
//! the snapshot's commit size, the stream's idle deadline and the streaming of large
//! in-progress transactions.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Row changes per storage `save`.
    pub chunk_rows: usize,
    /// Approximate bytes of row changes per storage `save` (whichever limit comes first): a
    /// transaction's rows are held in memory one chunk at a time.
    pub chunk_bytes: usize,
    /// Rows the initial snapshot copies per storage commit: a snapshot interrupted by a crash
    /// resumes after its last commit (`snapshot/`).
    pub snapshot_commit_rows: usize,
    /// Silence on the replication stream after which a heartbeat message is written to the
    /// source (it comes back through the stream when the stream is alive).
    pub idle_heartbeat: Duration,
    /// Silence after which the stream is taken for dead and reopened.
    pub idle_deadline: Duration,
    /// How long irrelevant transactions may go unacknowledged before an empty commit
    /// records their position (bounds the WAL the slot retains).
    pub idle_commit_interval: Duration,
    /// How often the catalog is compared with the tracked tables (new, dropped, renamed
    /// and unpublished tables; see `tables.rs`).
    pub catalog_check_interval: Duration,
    /// Most source transactions one storage commit may hold (group commit; 1 turns it off).
    pub group_max_transactions: u64,
    /// How long a group may keep its first transaction waiting for the storage commit.
    pub group_max_age: Duration,
    /// Stream large in-progress transactions (pgoutput protocol 2, Postgres 14+), applying
    /// them to storage while they run (`stream/streamed.rs`); `None`: protocol 1. The value
    /// is the walsender session's `logical_decoding_work_mem` in kB: the decoded size past
    /// which Postgres streams a transaction.
    pub stream_in_progress_kb: Option<u32>,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            chunk_rows: 10_000,
            chunk_bytes: 16 * 1024 * 1024,
            snapshot_commit_rows: 20_000,
            idle_heartbeat: Duration::from_secs(10),
            idle_deadline: Duration::from_secs(30),
            idle_commit_interval: Duration::from_secs(1),
            catalog_check_interval: Duration::from_secs(1),
            group_max_transactions: 1_000,
            group_max_age: Duration::from_millis(20),
            stream_in_progress_kb: Some(8 * 1024),
        }
    }
}
