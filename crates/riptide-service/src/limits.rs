//! Per-connection and per-process limits (docs/protocol.md §10.1, docs/security.md).
//!
//! Every limit on what the network can make the service hold or do has a default here, a
//! config key (listed in docs/security.md) and an error or metric when it bites.

use std::time::Duration;

/// Limits on connections, requests and sync streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Buckets one connection may sync; more ends the stream (`PSYNC_S2305`).
    pub max_buckets_per_connection: usize,
    /// Parameter-query results one connection may produce before de-duplication; more ends the
    /// stream (`PSYNC_S2305`).
    pub max_parameter_query_results: usize,
    /// Sync streams open at once in this process; more are answered 429 (`PSYNC_S2304`).
    pub max_concurrent_connections: usize,
    /// Sync streams one user (`sub`) may have open at once; more are answered 429
    /// (`PSYNC_S2304`).
    pub max_connections_per_user: usize,
    /// TCP connections open at once, authenticated or not (WebSocket connections count from
    /// accept, before their SETUP). Connections beyond are closed at accept.
    pub max_open_connections: usize,
    /// Time a client has to send a request's headers (slowloris); the connection is closed
    /// after it. hyper also runs it while a keep-alive connection waits for its next request,
    /// so it is the idle limit of keep-alive connections too.
    pub header_read_timeout: Duration,
    /// Time a WebSocket connection has from its upgrade to a SETUP that authenticates.
    pub setup_timeout: Duration,
    /// A connection whose writes make no progress at all for this long (the peer reads
    /// nothing) is closed (`write_stall.rs`); a slow reader is never cut.
    pub write_stall_timeout: Duration,
    /// Upper bound on the RSocket `lifetime_ms` a client may declare in SETUP: a connection
    /// that sends nothing for its lifetime is closed.
    pub max_keepalive_lifetime: Duration,
    /// Largest request body (`POST` routes) and RSocket request payload; larger bodies are
    /// answered 413, larger WebSocket messages close the connection.
    pub max_request_bytes: usize,
    /// Bytes of op data one storage page may hold (besides its 1,000-op bound): bounds the
    /// memory a stream holds while sending data.
    pub max_data_page_bytes: usize,
    /// Longest `client_id` accepted in write-checkpoint and sync requests.
    pub max_client_id_bytes: usize,
    /// Write-checkpoint counters (one per client id) kept per user; older ones are deleted.
    pub max_write_checkpoint_clients_per_user: usize,
    /// Write-checkpoint counters unused for longer are deleted (when that user next creates
    /// one).
    pub write_checkpoint_retention: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_buckets_per_connection: 1000,
            max_parameter_query_results: 1000,
            max_concurrent_connections: 10_000,
            max_connections_per_user: 100,
            max_open_connections: 20_000,
            header_read_timeout: Duration::from_secs(10),
            setup_timeout: Duration::from_secs(10),
            write_stall_timeout: Duration::from_secs(60),
            max_keepalive_lifetime: Duration::from_secs(300),
            max_request_bytes: 4 * 1024 * 1024,
            max_data_page_bytes: 4 * 1024 * 1024,
            max_client_id_bytes: 256,
            max_write_checkpoint_clients_per_user: 100,
            write_checkpoint_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}
