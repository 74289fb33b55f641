//! Service metrics through the `metrics` facade, exported in the Prometheus text format at
//! `GET /metrics` and read back by the dashboard (`GET /dashboard/data.json`), so both show
//! the same numbers.
//!
//! Every [`AppState`](crate::AppState) owns a [`ServiceMetrics`]: a Prometheus recorder and
//! facade handles registered once at start, so the hot path is one atomic add per event with no
//! lookup or allocation. Gauges that mirror state (open streams, replication lag, snapshot
//! progress) and the replication counters (kept by the replicator's
//! [`ReplicationProgress`]) are refreshed when the metrics are rendered.
//! [`ServiceMetrics::install_global`] also routes the process-wide facade (`metrics::counter!`
//! anywhere in the process) into the same recorder.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use riptide_protocol::{ErrorCode, Lsn, SyncLine};
use riptide_storage::CompactStats;

use crate::source::SourceDatabase;

/// Metric names, defined once.
pub mod names {
    /// Gauge: sync streams open now.
    pub const SYNC_STREAMS_OPEN: &str = "riptide_sync_streams_open";
    /// Counter: sync streams accepted.
    pub const SYNC_STREAMS_OPENED: &str = "riptide_sync_streams_opened_total";
    /// Counter: sync streams ended (any reason).
    pub const SYNC_STREAMS_CLOSED: &str = "riptide_sync_streams_closed_total";
    /// Counter, label `code` (`PSYNC_S21xx`): requests rejected by authentication.
    pub const AUTH_FAILURES: &str = "riptide_auth_failures_total";
    /// Counter: sync lines sent to clients.
    pub const SYNC_LINES_SENT: &str = "riptide_sync_lines_sent_total";
    /// Counter: bucket ops sent to clients.
    pub const SYNC_OPS_SENT: &str = "riptide_sync_ops_sent_total";
    /// Counter: bytes of encoded sync lines sent (NDJSON or BSON, before any compression).
    pub const SYNC_BYTES_SENT: &str = "riptide_sync_bytes_sent_total";
    /// Counter: `checkpoint` and `checkpoint_diff` lines sent.
    pub const SYNC_CHECKPOINTS_SENT: &str = "riptide_sync_checkpoints_sent_total";
    /// Counter, label `source` (`memory` / `storage`): checkpoints a stream prepared, from the
    /// ops the checkpoint bus carried or by reading storage.
    pub const SYNC_CHECKPOINTS_PREPARED: &str = "riptide_sync_checkpoints_prepared_total";
    /// Counter: checkpoints a stream abandoned without completing because storage compacted
    /// their buckets past them while their data was read (docs/protocol.md §3.6).
    pub const SYNC_CHECKPOINTS_INVALIDATED: &str = "riptide_sync_checkpoints_invalidated_total";
    /// Counter: compaction runs (background rounds, `riptide compact`, the admin API).
    pub const COMPACTION_RUNS: &str = "riptide_compaction_runs_total";
    /// Counter: buckets compaction rewrote something in.
    pub const COMPACTION_BUCKETS: &str = "riptide_compaction_buckets_total";
    /// Counter: PUT/REMOVE ops compaction turned into MOVE.
    pub const COMPACTION_OPS_MOVED: &str = "riptide_compaction_ops_moved_total";
    /// Counter: ops compaction removed (replaced by CLEARs, less the CLEARs).
    pub const COMPACTION_OPS_REMOVED: &str = "riptide_compaction_ops_removed_total";
    /// Counter: bytes of op rows compaction no longer stores.
    pub const COMPACTION_BYTES_RECLAIMED: &str = "riptide_compaction_bytes_reclaimed_total";
    /// Summary: seconds each compaction run took (`_sum`: the time spent compacting).
    pub const COMPACTION_DURATION: &str = "riptide_compaction_duration_seconds";
    /// Counter: compaction runs that failed.
    pub const COMPACTION_FAILURES: &str = "riptide_compaction_failures_total";
    /// Counter: write checkpoints created (both endpoints).
    pub const WRITE_CHECKPOINTS_CREATED: &str = "riptide_write_checkpoints_created_total";
    /// Counter: source transactions committed to bucket storage.
    pub const REPLICATION_TRANSACTIONS: &str = "riptide_replication_transactions_total";
    /// Counter: row changes (snapshot and stream) written to bucket storage.
    pub const REPLICATION_ROWS: &str = "riptide_replication_rows_total";
    /// Gauge: bytes of WAL between the source's current LSN (sampled every few seconds) and the
    /// last LSN committed to bucket storage.
    pub const REPLICATION_LAG_BYTES: &str = "riptide_replication_lag_bytes";
    /// Gauge: seconds since replication last committed to bucket storage.
    pub const REPLICATION_SECONDS_SINCE_COMMIT: &str =
        "riptide_replication_seconds_since_last_commit";
    /// Gauge: 1 while the initial snapshot copies a table, else 0.
    pub const REPLICATION_SNAPSHOT_RUNNING: &str = "riptide_replication_snapshot_running";
    /// Gauge: rows the snapshot has copied of its current table.
    pub const REPLICATION_SNAPSHOT_ROWS: &str = "riptide_replication_snapshot_table_rows";
    /// Gauge: 1 while replication works, 0 while it keeps failing (the readiness probe and
    /// the dashboard say on what).
    pub const REPLICATION_HEALTHY: &str = "riptide_replication_healthy";
    /// Counter: replicator runs that ended in an error (each is retried).
    pub const REPLICATION_FAILURES: &str = "riptide_replication_failures_total";
    /// Counter: replication slots found missing or invalidated (each starts a new snapshot).
    pub const REPLICATION_SLOT_INVALIDATIONS: &str = "riptide_replication_slot_invalidations_total";
    /// Gauge: seconds since the service started.
    pub const UPTIME_SECONDS: &str = "riptide_uptime_seconds";
    /// Gauge, label `version`: always 1.
    pub const BUILD_INFO: &str = "riptide_build_info";
    /// Gauge: TCP connections open now (HTTP and WebSocket, authenticated or not).
    pub const CONNECTIONS_OPEN: &str = "riptide_connections_open";
    /// Counter, label `reason` (`open_connections` / `user` / `streams`): connections or
    /// streams refused by a cap ([`crate::Limits`]).
    pub const CONNECTIONS_REFUSED: &str = "riptide_connections_refused_total";
    /// Counter, label `reason` (`header` / `setup` / `keepalive`): connections closed because
    /// the client was too slow or silent.
    pub const CONNECTIONS_TIMED_OUT: &str = "riptide_connections_timed_out_total";
    /// Counter, label `reason` (`body_too_large` / `message_too_large` / `too_deep` /
    /// `client_id_too_long`): requests refused by a size or shape limit.
    pub const REQUESTS_REJECTED: &str = "riptide_requests_rejected_total";
    /// Counter, label `result` (`ok` / `error`): fetches of the remote JWKS.
    pub const JWKS_REFRESHES: &str = "riptide_jwks_refreshes_total";
    /// Counter: storage pages of bucket data cut short by the page byte budget.
    pub const DATA_PAGES_BYTE_LIMITED: &str = "riptide_sync_data_pages_byte_limited_total";
    /// Counter: write-checkpoint counters deleted (beyond the per-user count or too old).
    pub const WRITE_CHECKPOINTS_PRUNED: &str = "riptide_write_checkpoint_clients_pruned_total";
}

/// Why a connection or stream was refused ([`names::CONNECTIONS_REFUSED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// `max_open_connections`: closed at accept.
    Total,
    /// `max_connections_per_user`.
    User,
    /// `max_concurrent_connections` (sync streams).
    Streams,
}

impl ConnectionRefusal {
    const ALL: [ConnectionRefusal; 3] = [Self::Total, Self::User, Self::Streams];
    fn label(self) -> &'static str {
        match self {
            Self::Total => "open_connections",
            Self::User => "user",
            Self::Streams => "streams",
        }
    }
}

/// Why a connection was closed for slowness ([`names::CONNECTIONS_TIMED_OUT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedOut {
    /// Headers not received within `header_read_timeout`.
    Header,
    /// No authenticated SETUP within `setup_timeout`.
    Setup,
    /// Nothing received for the RSocket lifetime.
    Keepalive,
    /// The peer read nothing for `write_stall_timeout` while the service had bytes for it.
    WriteStall,
}

impl TimedOut {
    const ALL: [TimedOut; 4] = [Self::Header, Self::Setup, Self::Keepalive, Self::WriteStall];
    fn label(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Setup => "setup",
            Self::Keepalive => "keepalive",
            Self::WriteStall => "write_stall",
        }
    }
}

/// Why a request was refused by a size or shape limit ([`names::REQUESTS_REJECTED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    BodyTooLarge,
    MessageTooLarge,
    TooDeep,
    ClientIdTooLong,
}

impl Rejected {
    const ALL: [Rejected; 4] = [
        Self::BodyTooLarge,
        Self::MessageTooLarge,
        Self::TooDeep,
        Self::ClientIdTooLong,
    ];
    fn label(self) -> &'static str {
        match self {
            Self::BodyTooLarge => "body_too_large",
            Self::MessageTooLarge => "message_too_large",
            Self::TooDeep => "too_deep",
            Self::ClientIdTooLong => "client_id_too_long",
        }
    }
}

/// The series of the limits of docs/security.md.
struct LimitSeries {
    connections_open: Gauge,
    refused: [Counter; ConnectionRefusal::ALL.len()],
    timed_out: [Counter; TimedOut::ALL.len()],
    rejected: [Counter; Rejected::ALL.len()],
    jwks_ok: Counter,
    jwks_error: Counter,
    pages_byte_limited: Counter,
    write_checkpoints_pruned: Counter,
}

impl LimitSeries {
    /// Registers the series; call inside the service's local recorder.
    fn register() -> LimitSeries {
        use names::*;
        metrics::describe_gauge!(CONNECTIONS_OPEN, "TCP connections open now");
        metrics::describe_counter!(
            CONNECTIONS_REFUSED,
            "Connections or streams refused by a cap"
        );
        metrics::describe_counter!(
            CONNECTIONS_TIMED_OUT,
            "Connections closed as too slow or silent"
        );
        metrics::describe_counter!(
            REQUESTS_REJECTED,
            "Requests refused by a size or shape limit"
        );
        metrics::describe_counter!(JWKS_REFRESHES, "Fetches of the remote JWKS");
        metrics::describe_counter!(
            DATA_PAGES_BYTE_LIMITED,
            "Bucket data pages cut short by the byte budget"
        );
        metrics::describe_counter!(
            WRITE_CHECKPOINTS_PRUNED,
            "Write-checkpoint counters deleted"
        );
        LimitSeries {
            connections_open: metrics::gauge!(CONNECTIONS_OPEN),
            refused: ConnectionRefusal::ALL
                .map(|r| metrics::counter!(CONNECTIONS_REFUSED, "reason" => r.label())),
            timed_out: TimedOut::ALL
                .map(|r| metrics::counter!(CONNECTIONS_TIMED_OUT, "reason" => r.label())),
            rejected: Rejected::ALL
                .map(|r| metrics::counter!(REQUESTS_REJECTED, "reason" => r.label())),
            jwks_ok: metrics::counter!(JWKS_REFRESHES, "result" => "ok"),
            jwks_error: metrics::counter!(JWKS_REFRESHES, "result" => "error"),
            pages_byte_limited: metrics::counter!(DATA_PAGES_BYTE_LIMITED),
            write_checkpoints_pruned: metrics::counter!(WRITE_CHECKPOINTS_PRUNED),
        }
    }
}

/// How often [`sample_source_lsn`] reads `pg_current_wal_lsn()` on the source.
pub const SOURCE_LSN_INTERVAL: Duration = Duration::from_secs(5);

/// The authentication error codes counted by [`names::AUTH_FAILURES`].
const AUTH_CODES: [ErrorCode; 6] = [
    ErrorCode::S2101,
    ErrorCode::S2102,
    ErrorCode::S2103,
    ErrorCode::S2104,
    ErrorCode::S2105,
    ErrorCode::S2106,
];

/// Replication counters as the replicator keeps them (in `riptide serve`, an adapter over
/// `riptide_replication::ReplicationStatus`).
pub trait ReplicationProgress: Send + Sync + 'static {
    fn progress(&self) -> ReplicationSnapshot;
}

/// A copy of the replicator's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationSnapshot {
    pub last_received_lsn: Lsn,
    pub last_committed_lsn: Lsn,
    /// Source transactions committed to storage.
    pub transactions: u64,
    /// Row changes written to storage.
    pub rows: u64,
    /// Table the initial snapshot is copying, if one runs.
    pub snapshot_table: Option<String>,
    /// Rows copied of that table.
    pub snapshot_rows: u64,
    pub last_commit: Option<SystemTime>,
    /// The error replication keeps failing on (`None`: healthy).
    pub error: Option<String>,
    /// When the failures in a row began.
    pub failing_since: Option<SystemTime>,
    /// Replicator runs that ended in an error.
    pub failures: u64,
    /// Replication slots found missing or invalidated.
    pub slot_invalidations: u64,
}

/// The service's metrics. See the module docs.
pub struct ServiceMetrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    started: Instant,
    replication: OnceLock<Arc<dyn ReplicationProgress>>,
    node_status: OnceLock<Arc<dyn crate::NodeStatus>>,
    node: crate::node_metrics::NodeSeries,
    /// Last sampled `pg_current_wal_lsn()` of the source (0: not yet).
    source_lsn: AtomicU64,
    streams_open: Gauge,
    streams_opened: Counter,
    streams_closed: Counter,
    auth_failures: [Counter; AUTH_CODES.len()],
    lines_sent: Counter,
    ops_sent: Counter,
    bytes_sent: Counter,
    checkpoints_sent: Counter,
    prepared_from_memory: Counter,
    prepared_from_storage: Counter,
    checkpoints_invalidated: Counter,
    compaction: CompactionCounters,
    write_checkpoints: Counter,
    replication_transactions: Counter,
    replication_rows: Counter,
    lag_bytes: Gauge,
    since_commit: Gauge,
    snapshot_running: Gauge,
    snapshot_rows: Gauge,
    healthy: Gauge,
    failures: Counter,
    slot_invalidations: Counter,
    uptime: Gauge,
    limits: LimitSeries,
    /// Other processes' notifications (`node_notifications.rs`).
    pub(crate) notifications: crate::node_notifications::NotificationSeries,
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ServiceMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceMetrics").finish_non_exhaustive()
    }
}

/// The help text of every series (`# HELP` in `/metrics`), registered on the current recorder.
fn describe_all() {
    use names::*;
    metrics::describe_gauge!(SYNC_STREAMS_OPEN, "Sync streams open now");
    metrics::describe_counter!(SYNC_STREAMS_OPENED, "Sync streams accepted");
    metrics::describe_counter!(SYNC_STREAMS_CLOSED, "Sync streams ended");
    metrics::describe_counter!(AUTH_FAILURES, "Requests rejected by authentication");
    metrics::describe_counter!(SYNC_LINES_SENT, "Sync lines sent");
    metrics::describe_counter!(SYNC_OPS_SENT, "Bucket ops sent");
    metrics::describe_counter!(
        SYNC_BYTES_SENT,
        Unit::Bytes,
        "Bytes of encoded sync lines sent, before compression"
    );
    metrics::describe_counter!(SYNC_CHECKPOINTS_SENT, "Checkpoint lines sent");
    metrics::describe_counter!(
        SYNC_CHECKPOINTS_PREPARED,
        "Checkpoints streams prepared, from the bus's ops (memory) or storage"
    );
    metrics::describe_counter!(
        SYNC_CHECKPOINTS_INVALIDATED,
        "Checkpoints abandoned because compaction rewrote their buckets past them"
    );
    metrics::describe_counter!(COMPACTION_RUNS, "Compaction runs");
    metrics::describe_counter!(COMPACTION_BUCKETS, "Buckets compaction rewrote");
    metrics::describe_counter!(COMPACTION_OPS_MOVED, "Ops compaction turned into MOVE");
    metrics::describe_counter!(
        COMPACTION_OPS_REMOVED,
        "Ops compaction removed (replaced by CLEARs, less the CLEARs)"
    );
    metrics::describe_counter!(
        COMPACTION_BYTES_RECLAIMED,
        Unit::Bytes,
        "Bytes of op rows compaction no longer stores"
    );
    metrics::describe_histogram!(
        COMPACTION_DURATION,
        Unit::Seconds,
        "Seconds each compaction run took"
    );
    metrics::describe_counter!(COMPACTION_FAILURES, "Compaction runs that failed");
    metrics::describe_counter!(WRITE_CHECKPOINTS_CREATED, "Write checkpoints created");
    metrics::describe_counter!(
        REPLICATION_TRANSACTIONS,
        "Source transactions committed to bucket storage"
    );
    metrics::describe_counter!(REPLICATION_ROWS, "Row changes written to bucket storage");
    metrics::describe_gauge!(
        REPLICATION_LAG_BYTES,
        Unit::Bytes,
        "WAL bytes between the source's current LSN and the last committed LSN"
    );
    metrics::describe_gauge!(
        REPLICATION_SECONDS_SINCE_COMMIT,
        Unit::Seconds,
        "Seconds since replication last committed to bucket storage"
    );
    metrics::describe_gauge!(
        REPLICATION_SNAPSHOT_RUNNING,
        "1 while the initial snapshot runs"
    );
    metrics::describe_gauge!(
        REPLICATION_SNAPSHOT_ROWS,
        "Rows the snapshot has copied of its current table"
    );
    metrics::describe_gauge!(
        REPLICATION_HEALTHY,
        "1 while replication works, 0 while it keeps failing"
    );
    metrics::describe_counter!(
        REPLICATION_FAILURES,
        "Replicator runs that ended in an error (each is retried)"
    );
    metrics::describe_counter!(
        REPLICATION_SLOT_INVALIDATIONS,
        "Replication slots found missing or invalidated (each starts a new snapshot)"
    );
    metrics::describe_gauge!(UPTIME_SECONDS, Unit::Seconds, "Seconds since start");
}

impl ServiceMetrics {
    pub fn new() -> ServiceMetrics {
        use names::*;
        let recorder = Arc::new(PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let r: &dyn Recorder = recorder.as_ref();
        metrics::with_local_recorder(r, || {
            describe_all();
            metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            ServiceMetrics {
                recorder: recorder.clone(),
                handle,
                started: Instant::now(),
                replication: OnceLock::new(),
                node_status: OnceLock::new(),
                source_lsn: AtomicU64::new(0),
                streams_open: metrics::gauge!(SYNC_STREAMS_OPEN),
                streams_opened: metrics::counter!(SYNC_STREAMS_OPENED),
                streams_closed: metrics::counter!(SYNC_STREAMS_CLOSED),
                auth_failures: AUTH_CODES
                    .map(|code| metrics::counter!(AUTH_FAILURES, "code" => code.as_str())),
                lines_sent: metrics::counter!(SYNC_LINES_SENT),
                ops_sent: metrics::counter!(SYNC_OPS_SENT),
                bytes_sent: metrics::counter!(SYNC_BYTES_SENT),
                checkpoints_sent: metrics::counter!(SYNC_CHECKPOINTS_SENT),
                prepared_from_memory: metrics::counter!(SYNC_CHECKPOINTS_PREPARED, "source" => "memory"),
                prepared_from_storage: metrics::counter!(SYNC_CHECKPOINTS_PREPARED, "source" => "storage"),
                checkpoints_invalidated: metrics::counter!(SYNC_CHECKPOINTS_INVALIDATED),
                compaction: CompactionCounters {
                    runs: metrics::counter!(COMPACTION_RUNS),
                    buckets: metrics::counter!(COMPACTION_BUCKETS),
                    ops_moved: metrics::counter!(COMPACTION_OPS_MOVED),
                    ops_removed: metrics::counter!(COMPACTION_OPS_REMOVED),
                    bytes: metrics::counter!(COMPACTION_BYTES_RECLAIMED),
                    duration: metrics::histogram!(COMPACTION_DURATION),
                    failures: metrics::counter!(COMPACTION_FAILURES),
                },
                write_checkpoints: metrics::counter!(WRITE_CHECKPOINTS_CREATED),
                replication_transactions: metrics::counter!(REPLICATION_TRANSACTIONS),
                replication_rows: metrics::counter!(REPLICATION_ROWS),
                lag_bytes: metrics::gauge!(REPLICATION_LAG_BYTES),
                since_commit: metrics::gauge!(REPLICATION_SECONDS_SINCE_COMMIT),
                snapshot_running: metrics::gauge!(REPLICATION_SNAPSHOT_RUNNING),
                snapshot_rows: metrics::gauge!(REPLICATION_SNAPSHOT_ROWS),
                healthy: metrics::gauge!(REPLICATION_HEALTHY),
                failures: metrics::counter!(REPLICATION_FAILURES),
                slot_invalidations: metrics::counter!(REPLICATION_SLOT_INVALIDATIONS),
                uptime: metrics::gauge!(UPTIME_SECONDS),
                limits: LimitSeries::register(),
                node: crate::node_metrics::NodeSeries::register(),
                notifications: crate::node_notifications::NotificationSeries::register(),
            }
        })
    }

    /// Makes this recorder the process-wide one, so `metrics::counter!` anywhere in the
    /// process lands in `/metrics`. False when another recorder was installed first.
    pub fn install_global(&self) -> bool {
        metrics::set_global_recorder(SharedRecorder(self.recorder.clone())).is_ok()
    }

    /// Attaches the replicator's counters (once; later calls are ignored).
    pub fn set_replication(&self, progress: Arc<dyn ReplicationProgress>) {
        let _ = self.replication.set(progress);
    }

    /// Attaches this process's role and lease state (once; later calls are ignored).
    pub fn set_node(&self, status: Arc<dyn crate::NodeStatus>) {
        let _ = self.node_status.set(status);
    }

    /// The replicator's counters, when replication runs in this process.
    pub fn replication(&self) -> Option<ReplicationSnapshot> {
        self.replication.get().map(|p| p.progress())
    }

    /// Time since the service started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The last sampled `pg_current_wal_lsn()` of the source.
    pub fn source_lsn(&self) -> Option<Lsn> {
        match self.source_lsn.load(Ordering::Relaxed) {
            0 => None,
            lsn => Some(Lsn(lsn)),
        }
    }

    /// Reads `pg_current_wal_lsn()` on the source once (only when replication is attached).
    pub async fn sample_source_lsn(&self, source: &dyn SourceDatabase) {
        if self.replication.get().is_none() {
            return;
        }
        match source.current_lsn().await {
            Ok(lsn) => {
                self.source_lsn.fetch_max(lsn.0, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(error = %e, "cannot sample the source wal lsn"),
        }
    }

    pub(crate) fn stream_opened(self: &Arc<Self>) -> OpenStream {
        self.streams_opened.increment(1);
        OpenStream(self.clone())
    }

    pub(crate) fn auth_failure(&self, code: ErrorCode) {
        if let Some(i) = AUTH_CODES.iter().position(|c| *c == code) {
            self.auth_failures[i].increment(1);
        }
    }

    /// One encoded line of `bytes` bytes went to a client.
    pub(crate) fn line_sent(&self, line: &SyncLine, bytes: usize) {
        self.lines_sent.increment(1);
        self.bytes_sent
            .increment(u64::try_from(bytes).unwrap_or(u64::MAX));
        if matches!(line, SyncLine::Checkpoint(_) | SyncLine::CheckpointDiff(_)) {
            self.checkpoints_sent.increment(1);
        }
    }

    pub(crate) fn ops_sent(&self, ops: u64) {
        if ops > 0 {
            self.ops_sent.increment(ops);
        }
    }

    /// A stream prepared a checkpoint from the ops the bus carried (no storage read).
    pub(crate) fn checkpoint_from_memory(&self) {
        self.prepared_from_memory.increment(1);
    }

    /// A stream prepared a checkpoint by reading storage.
    pub(crate) fn checkpoint_from_storage(&self) {
        self.prepared_from_storage.increment(1);
    }

    /// A stream abandoned a checkpoint because compaction rewrote its buckets past it.
    pub(crate) fn checkpoint_invalidated(&self) {
        self.checkpoints_invalidated.increment(1);
    }

    /// A compaction run finished (`failed`: it stopped on an error after doing `done`).
    pub fn compaction_run(&self, done: &CompactStats, elapsed: Duration, failed: bool) {
        let c = &self.compaction;
        c.runs.increment(1);
        c.buckets.increment(done.buckets);
        c.ops_moved.increment(done.ops_moved);
        c.ops_removed.increment(done.ops_removed);
        c.bytes.increment(done.bytes_reclaimed);
        c.duration.record(elapsed.as_secs_f64());
        if failed {
            c.failures.increment(1);
        }
    }

    /// A TCP connection was accepted; it counts as open until the guard drops.
    pub(crate) fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.limits.connections_open.increment(1.0);
        OpenConnection(self.clone())
    }

    pub(crate) fn connection_refused(&self, why: ConnectionRefusal) {
        self.limits.refused[why as usize].increment(1);
    }

    pub(crate) fn timed_out(&self, why: TimedOut) {
        self.limits.timed_out[why as usize].increment(1);
    }

    pub(crate) fn rejected(&self, why: Rejected) {
        self.limits.rejected[why as usize].increment(1);
    }

    /// The key store fetched its remote JWKS (`ok`) or failed to.
    pub fn jwks_refreshed(&self, ok: bool) {
        if ok {
            self.limits.jwks_ok.increment(1);
        } else {
            self.limits.jwks_error.increment(1);
        }
    }

    pub(crate) fn data_page_byte_limited(&self) {
        self.limits.pages_byte_limited.increment(1);
    }

    pub(crate) fn write_checkpoints_pruned(&self, n: u64) {
        if n > 0 {
            self.limits.write_checkpoints_pruned.increment(n);
        }
    }

    pub(crate) fn write_checkpoint_created(&self) {
        self.write_checkpoints.increment(1);
    }

    /// Refreshes the state-mirroring gauges and the replication counters, then renders every
    /// series in the Prometheus text format.
    pub fn render(&self, open_streams: usize) -> String {
        self.refresh(open_streams);
        self.handle.render()
    }

    fn refresh(&self, open_streams: usize) {
        self.streams_open.set(open_streams as f64);
        self.uptime.set(self.uptime().as_secs_f64());
        if let Some(node) = self.node_status.get() {
            self.node.refresh(node, self.recorder.as_ref());
        }
        let Some(status) = self.replication() else {
            return;
        };
        self.replication_transactions.absolute(status.transactions);
        self.replication_rows.absolute(status.rows);
        if let Some(lag) = self.lag_bytes(&status) {
            self.lag_bytes.set(lag as f64);
        }
        if let Some(s) = seconds_since(status.last_commit) {
            self.since_commit.set(s);
        }
        self.snapshot_running
            .set(if status.snapshot_table.is_some() {
                1.0
            } else {
                0.0
            });
        self.snapshot_rows.set(status.snapshot_rows as f64);
        self.healthy
            .set(if status.error.is_none() { 1.0 } else { 0.0 });
        self.failures.absolute(status.failures);
        self.slot_invalidations.absolute(status.slot_invalidations);
    }

    /// WAL bytes between the sampled source LSN and the last committed LSN.
    pub fn lag_bytes(&self, status: &ReplicationSnapshot) -> Option<u64> {
        let source = self.source_lsn()?;
        Some(source.0.saturating_sub(status.last_committed_lsn.0))
    }
}

/// The compaction counters ([`names::COMPACTION_RUNS`] and the ones after it).
struct CompactionCounters {
    runs: Counter,
    buckets: Counter,
    ops_moved: Counter,
    ops_removed: Counter,
    bytes: Counter,
    duration: Histogram,
    failures: Counter,
}

/// Seconds from `t` to now (0 when the clock went back).
pub fn seconds_since(t: Option<SystemTime>) -> Option<f64> {
    t.map(|t| {
        SystemTime::now()
            .duration_since(t)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    })
}

/// Counts a stream as closed when dropped.
#[must_use = "the stream counts as closed when this is dropped"]
pub(crate) struct OpenStream(Arc<ServiceMetrics>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.streams_closed.increment(1);
    }
}

/// Counts a TCP connection as closed when dropped.
#[must_use = "the connection counts as closed when this is dropped"]
pub(crate) struct OpenConnection(Arc<ServiceMetrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.limits.connections_open.decrement(1.0);
    }
}

/// Samples the source's WAL position every [`SOURCE_LSN_INTERVAL`] until `cancel` fires.
pub async fn sample_source_lsn(
    metrics: Arc<ServiceMetrics>,
    source: Arc<dyn SourceDatabase>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(SOURCE_LSN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => metrics.sample_source_lsn(source.as_ref()).await,
        }
    }
}

/// Sums of the series of a Prometheus text exposition, by metric name (labels summed).
pub fn parse_exposition(text: &str) -> std::collections::HashMap<&str, f64> {
    let mut out = std::collections::HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series).trim();
        if let Ok(v) = value.parse::<f64>() {
            *out.entry(name).or_insert(0.0) += v;
        }
    }
    out
}

/// The recorder behind an `Arc`, so the same registry can be local and global.
struct SharedRecorder(Arc<PrometheusRecorder>);

impl Recorder for SharedRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_counter(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_gauge(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_histogram(key, unit, description);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.0.register_counter(key, metadata)
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.0.register_gauge(key, metadata)
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.0.register_histogram(key, metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_and_parse() {
        let m = Arc::new(ServiceMetrics::new());
        {
            let _s = m.stream_opened();
        }
        m.ops_sent(5);
        m.auth_failure(ErrorCode::S2103);
        m.auth_failure(ErrorCode::S2002); // not an auth code: ignored
        let text = m.render(2);
        let v = parse_exposition(&text);
        assert_eq!(v[names::SYNC_STREAMS_OPENED], 1.0);
        assert_eq!(v[names::SYNC_STREAMS_CLOSED], 1.0);
        assert_eq!(v[names::SYNC_STREAMS_OPEN], 2.0);
        assert_eq!(v[names::SYNC_OPS_SENT], 5.0);
        assert_eq!(v[names::AUTH_FAILURES], 1.0);
        assert!(text.contains("riptide_auth_failures_total{code=\"PSYNC_S2103\"} 1"));
        assert!(text.contains("riptide_build_info{version="));
    }

    #[test]
    fn parse_ignores_garbage() {
        let v = parse_exposition("# HELP x\n\nx 1\nx{a=\"b c\"} 2\ny nan?\nz\n");
        assert_eq!(v["x"], 3.0);
        assert!(!v.contains_key("y"));
    }
}
