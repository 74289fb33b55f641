//! Connections to the source database: ordinary tokio-postgres ones (catalog, checks,
//! snapshot) and pgwire-replication walsender sessions (slot creation, streaming). Both get the
//! same session settings so values print the same way on both.
//!
//! A source that stops answering must not hang the replicator: connecting is bounded by
//! [`CONNECT_TIMEOUT`], queries between source transactions by [`QUERY_TIMEOUT`] ([`within`]),
//! and the stream itself by its idle deadline (`streaming.rs`).

use std::future::Future;
use std::time::Duration;

use pgwire_replication::{ReplicationClient, ReplicationConfig};
use riptide_protocol::Lsn;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, NoTls};

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
pub async fn connect(config: &tokio_postgres::Config) -> Result<Client, ReplicationError> {
    within("connect", CONNECT_TIMEOUT, connect_unbounded(config)).await
}

async fn connect_unbounded(config: &tokio_postgres::Config) -> Result<Client, ReplicationError> {
    let mut config = config.clone();
    let options = with_session_options(config.get_options());
    config.options(options);
    if config.get_application_name().is_none() {
        config.application_name("riptide");
    }
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(ReplicationError::Connect)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %error, "source connection closed");
        }
    });
    Ok(client)
}

/// The walsender session configuration for `slot`, starting at `start` (`Lsn::ZERO`: the
/// slot's confirmed position).
pub fn replication_config(
    config: &tokio_postgres::Config,
    publication: &str,
    slot: &str,
    start: Lsn,
) -> Result<ReplicationConfig, ReplicationError> {
    if config.get_ssl_mode() == SslMode::Require {
        return Err(ReplicationError::UnsupportedConfig(
            "sslmode=require (the replication connection has no TLS support built in)".into(),
        ));
    }
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(path)) => path.to_string_lossy().into_owned(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .ok_or_else(|| ReplicationError::UnsupportedConfig("no user name given".into()))?
        .to_owned();
    let password = match config.get_password() {
        Some(p) => String::from_utf8(p.to_vec())
            .map_err(|_| ReplicationError::UnsupportedConfig("password is not UTF-8".into()))?,
        None => String::new(),
    };
    let database = config.get_dbname().unwrap_or(&user).to_owned();
    let mut cfg = ReplicationConfig::new(host, user, password, database, slot, publication)
        .with_port(port)
        .with_start_lsn(pgwire_replication::Lsn(start.0))
        .with_options(with_session_options(config.get_options()))
        .with_application_name("riptide-replicator")
        .with_status_interval(std::time::Duration::from_secs(1))
        .with_wakeup_interval(std::time::Duration::from_secs(5));
    // Built without TLS support: sslmode=disable/prefer connect in plain text, like the
    // ordinary connections (`NoTls`).
    cfg = cfg.with_tls(pgwire_replication::TlsConfig::disabled());
    Ok(cfg)
}

/// A gated walsender session: replication commands run on it until it starts streaming.
pub async fn connect_gated(cfg: ReplicationConfig) -> Result<ReplicationClient, ReplicationError> {
    within("connect a walsender session", CONNECT_TIMEOUT, async {
        Ok(ReplicationClient::connect_gated(cfg).await?)
    })
    .await
}

/// Quotes an identifier for SQL.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes a string literal for SQL.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
