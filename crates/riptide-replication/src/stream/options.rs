//! The knobs of the streaming applier: chunk size, idle commits, catalog checks, group commit.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Row changes per storage `save`.
    pub chunk_rows: usize,
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
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            chunk_rows: 10_000,
            idle_commit_interval: Duration::from_secs(1),
            catalog_check_interval: Duration::from_secs(1),
            group_max_transactions: 1_000,
            group_max_age: Duration::from_millis(20),
        }
    }
}
