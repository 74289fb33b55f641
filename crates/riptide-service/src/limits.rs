//! Per-connection and per-process limits (docs/protocol.md §10.1).

/// Limits on sync streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Buckets one connection may sync; more ends the stream (`PSYNC_S2305`).
    pub max_buckets_per_connection: usize,
    /// Parameter-query results one connection may produce before de-duplication; more ends the
    /// stream (`PSYNC_S2305`).
    pub max_parameter_query_results: usize,
    /// Sync streams open at once in this process; more are answered 429 (`PSYNC_S2304`).
    pub max_concurrent_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_buckets_per_connection: 1000,
            max_parameter_query_results: 1000,
            max_concurrent_connections: 10_000,
        }
    }
}
