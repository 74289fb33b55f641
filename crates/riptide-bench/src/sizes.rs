//! How big each scenario is: the defaults, the smoke test's small sizes (`--short`) and the
//! flags that override them.

use std::time::Duration;

use crate::Args;

/// Sizes of every scenario.
pub struct Sizes {
    /// Rows of the bulk insert (replication, initial sync, `@powersync/node` first sync).
    pub rows: i64,
    /// Runs of each initial-sync transport; the fastest is reported.
    pub repeat: u32,
    pub latency_streams: usize,
    pub latency_rate: u32,
    pub latency_secs: u32,
    pub fanout_streams: usize,
    pub fanout_writes: usize,
    pub fanout_gap: Duration,
    pub idle_streams: usize,
    /// Single-row transactions of the transactions scenario.
    pub transactions: usize,
    /// Rows of the snapshot scenario's table.
    pub snapshot_rows: i64,
    /// Rows of the big-transactions scenario's bulk insert.
    pub big_insert_rows: i64,
    /// Rows of the transaction the big-transactions scenario kills the service during.
    pub crash_rows: i64,
    /// 2 KB rows the big-transactions scenario updates in one statement.
    pub big_update_rows: i64,
    /// Fail on a lost delivery or stream (the smoke test) instead of reporting it.
    pub strict: bool,
}

impl Sizes {
    pub fn new(args: &Args) -> Sizes {
        let mut sizes = if args.short {
            Sizes {
                rows: args.rows.min(2_000),
                repeat: 1,
                latency_streams: 10,
                latency_rate: 20,
                latency_secs: 5,
                fanout_streams: 50,
                fanout_writes: 5,
                fanout_gap: Duration::from_millis(200),
                idle_streams: 200,
                transactions: args.transactions.min(500),
                snapshot_rows: args.snapshot_rows.min(20_000),
                big_insert_rows: args.rows.min(2_000),
                crash_rows: args.crash_rows.min(2_000),
                big_update_rows: args.big_update_rows.min(5_000),
                strict: true,
            }
        } else {
            Sizes {
                rows: args.rows,
                repeat: args.repeat.max(1),
                latency_streams: 100,
                latency_rate: 100,
                latency_secs: 60,
                fanout_streams: 1_000,
                fanout_writes: 20,
                fanout_gap: Duration::from_millis(500),
                idle_streams: 10_000,
                transactions: args.transactions,
                snapshot_rows: args.snapshot_rows,
                big_insert_rows: args.rows,
                crash_rows: args.crash_rows,
                big_update_rows: args.big_update_rows,
                strict: false,
            }
        };
        sizes.latency_streams = args.latency_streams.unwrap_or(sizes.latency_streams).max(1);
        sizes.latency_rate = args.latency_rate.unwrap_or(sizes.latency_rate).max(1);
        sizes.latency_secs = args.latency_secs.unwrap_or(sizes.latency_secs).max(1);
        sizes
    }
}
