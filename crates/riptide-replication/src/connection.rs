//! Connections to the source database, all through `riptide-pg` (so TLS, timeouts and
//! keepalives are the same everywhere): ordinary ones (catalog, checks, snapshot) and
//! pgwire-replication walsender sessions (slot creation, streaming). Both get the same session
//! settings so values print the same way on both.
//!
//! A source that stops answering must not hang the replicator: connecting is bounded by
//! [`CONNECT_TIMEOUT`], queries between source transactions by [`QUERY_TIMEOUT`] ([`within`]),
//! and the stream itself by its idle deadline (`streaming.rs`).

use std::future::Future;
use std::time::Duration;

use pgwire_replication::{ReplicationClient, ReplicationConfig};
use riptide_pg::PgConnection;
use riptide_protocol::Lsn;
use tokio_postgres::Client;

use crate::error::ReplicationError;

/// Session settings that make text values predictable (see `values`).
const SESSION_OPTIONS: &str = "-c TimeZone=UTC -c DateStyle=ISO,MDY -c IntervalStyle=postgres -c bytea_output=hex -c extra_float_digits=1";

fn with_session_options(existing: Option<&str>) -> String {
    match existing {
        Some(o) if !o.trim().is_empty() => format!("{o} {SESSION_OPTIONS}"),
        _ => SESSION_OPTIONS.to_owned(),
    }
}

/// How long opening a source connection (ordinary or walsender) may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a query between source transactions (catalog check, TOAST re-read, heartbeat)
/// may take.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// `fut`, or [`ReplicationError::Timeout`] naming `what` after `limit`.
pub(crate) async fn within<T>(
    what: &'static str,
    limit: Duration,
    fut: impl Future<Output = Result<T, ReplicationError>>,
) -> Result<T, ReplicationError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| ReplicationError::Timeout {
            what,
            seconds: limit.as_secs(),
        })?
}

/// Opens an ordinary connection with the session settings; the connection task runs in the
/// background until the client is dropped.
pub async fn connect(source: &PgConnection) -> Result<Client, ReplicationError> {
    let mut source = source.clone().with_default_application_name("riptide");
    let options = with_session_options(source.config().get_options());
    source.config_mut().options(options);
    within("connect", CONNECT_TIMEOUT, async {
        source.connect().await.map_err(ReplicationError::Connect)
    })
    .await
}

/// The walsender session configuration for `slot`, starting at `start` (`Lsn::ZERO`: the
/// slot's confirmed position).
pub fn replication_config(
    source: &PgConnection,
    publication: &str,
    slot: &str,
    start: Lsn,
) -> Result<ReplicationConfig, ReplicationError> {
    Ok(source
        .replication_config(slot, publication)
        .map_err(ReplicationError::Connect)?
        .with_start_lsn(pgwire_replication::Lsn(start.0))
        .with_options(with_session_options(source.config().get_options()))
        .with_application_name("riptide-replicator")
        .with_status_interval(std::time::Duration::from_secs(1))
        .with_wakeup_interval(std::time::Duration::from_secs(5)))
}

/// How the walsender sends transactions: protocol 1 (each whole, at its commit), or protocol
/// 2 streaming in-progress transactions once they exceed `work_mem_kb` of decoded changes
/// (`logical_decoding_work_mem` of this session; Postgres 14+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    WholeTransactions,
    Streaming { work_mem_kb: u32 },
}

impl Protocol {
    /// `cfg` set up for this protocol.
    pub fn apply(self, cfg: ReplicationConfig) -> ReplicationConfig {
        match self {
            Protocol::WholeTransactions => cfg.with_streaming(false),
            Protocol::Streaming { work_mem_kb } => {
                let setting = format!("-c logical_decoding_work_mem={work_mem_kb}kB");
                let options = match cfg.options.as_deref() {
                    Some(o) if !o.trim().is_empty() => format!("{o} {setting}"),
                    _ => setting,
                };
                cfg.with_streaming(true).with_options(options)
            }
        }
    }
}

/// A gated walsender session, authenticated: replication commands run on it until it starts
/// streaming. TLS and channel binding as for every connection to `source`.
pub async fn connect_gated(
    source: &PgConnection,
    cfg: ReplicationConfig,
) -> Result<ReplicationClient, ReplicationError> {
    within("connect a walsender session", CONNECT_TIMEOUT, async {
        source
            .connect_walsender(cfg)
            .await
            .map_err(ReplicationError::Connect)
    })
    .await
}
