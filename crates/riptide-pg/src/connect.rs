//! Opening connections: one ([`PgConnection::connect`]) or a deadpool pool
//! ([`PgConnection::pool`]) through the same [`Connector`], which follows `sslmode` the way
//! libpq does, including the second attempt of `allow` (TLS after the server refused plain
//! text) and `prefer` (plain text after TLS failed).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::future::BoxFuture;
use tokio::sync::mpsc::error::TrySendError;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::connection::PgConnection;
use crate::error::{Attempt, Failure, PgError};
use crate::tls::SslMode;

type Stream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;
type Connection = tokio_postgres::Connection<Socket, Stream>;

/// How one attempt uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Plain,
    /// TLS when the server offers it, plain text when it answers the SSLRequest with `N`.
    TlsIfOffered,
    Tls,
}

/// The first attempt for `mode`, and the one after it when [`falls_back`] says so.
pub(crate) fn plan(mode: SslMode, unix_only: bool) -> (Transport, Option<Transport>) {
    if unix_only {
        return (Transport::Plain, None);
    }
    match mode {
        SslMode::Disable => (Transport::Plain, None),
        SslMode::Allow => (Transport::Plain, Some(Transport::Tls)),
        SslMode::Prefer => (Transport::TlsIfOffered, Some(Transport::Plain)),
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => (Transport::Tls, None),
    }
}

/// Whether a failed first attempt under `mode` is followed by the second (libpq: `allow`
/// retries with TLS when the server rejected plain text; `prefer` retries in plain text when
/// TLS failed or the server rejected the TLS connection).
pub(crate) fn falls_back(mode: SslMode, failure: Failure) -> bool {
    match mode {
        SslMode::Allow => failure == Failure::ServerRejected,
        SslMode::Prefer => matches!(failure, Failure::Handshake | Failure::ServerRejected),
        _ => false,
    }
}

/// Which error to report when both attempts failed: the one of the transport the user
/// wanted, unless it only said that transport cannot work.
pub(crate) fn report_first(mode: SslMode, first: Failure) -> bool {
    mode == SslMode::Prefer && first == Failure::ServerRejected
}

/// A failed attempt and where it happened.
pub(crate) enum Failed {
    /// The tokio-postgres error (also what a pool reports).
    Error {
        error: tokio_postgres::Error,
        attempt: Attempt,
    },
    /// No answer within the connect timeout (never for a pool's connector).
    TimedOut(Attempt),
}

impl Failed {
    fn classify(self) -> PgError {
        match self {
            Failed::Error { error, attempt } => PgError::classify(error, &attempt),
            Failed::TimedOut(attempt) => PgError::Timeout {
                host: attempt.host,
                after: attempt.connect_timeout.unwrap_or_default(),
            },
        }
    }

    fn failure(&self) -> Failure {
        match self {
            Failed::Error { error, .. } => PgError::failure(error),
            Failed::TimedOut(_) => Failure::Other,
        }
    }
}

/// Connects per a [`PgConnection`]'s TLS settings; its rustls configuration (certificate files
/// read) is built once, when the connector is.
#[derive(Clone)]
pub(crate) struct Connector {
    tls: MakeRustlsConnect,
    mode: SslMode,
    unix_only: bool,
    channel_binding: tokio_postgres::config::ChannelBinding,
    host: String,
    /// Bound each attempt by the connect timeout (a pool bounds creation itself).
    time_whole_attempt: bool,
}

impl Connector {
    pub fn new(conn: &PgConnection, time_whole_attempt: bool) -> Result<Connector, PgError> {
        let client_config = conn.tls().client_config()?;
        Ok(Connector {
            tls: MakeRustlsConnect::new(client_config),
            mode: conn.tls().effective_mode(),
            unix_only: conn.unix_sockets_only(),
            channel_binding: conn.tls().channel_binding.to_tokio_postgres(),
            host: conn.host_description(),
            time_whole_attempt,
        })
    }

    async fn attempt(
        &self,
        config: &tokio_postgres::Config,
        transport: Transport,
    ) -> Result<(Client, Connection), Failed> {
        use tokio_postgres::config::SslMode as Tp;
        let mut config = config.clone();
        config
            .ssl_mode(match transport {
                Transport::Plain => Tp::Disable,
                Transport::TlsIfOffered => Tp::Prefer,
                Transport::Tls => Tp::Require,
            })
            .channel_binding(self.channel_binding);
        let attempt = Attempt {
            host: self.host.clone(),
            mode: self.mode,
            connect_timeout: config.get_connect_timeout().copied(),
        };
        let connecting = config.connect(self.tls.clone());
        // tokio-postgres times only the TCP connect: a server that accepts and then never
        // answers must not hang the caller either (libpq's connect_timeout covers the whole
        // attempt too). A pool does this with its create timeout instead.
        let result = match attempt.connect_timeout.filter(|_| self.time_whole_attempt) {
            Some(limit) => match tokio::time::timeout(limit, connecting).await {
                Ok(result) => result,
                Err(_) => return Err(Failed::TimedOut(attempt)),
            },
            None => connecting.await,
        };
        result.map_err(|error| Failed::Error { error, attempt })
    }

    /// The attempts of the `sslmode`, the second only after a failure that calls for it.
    async fn establish(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<(Client, Connection), (Failed, Failure)> {
        let (first, second) = plan(self.mode, self.unix_only);
        let first_failed = match self.attempt(config, first).await {
            Ok(connected) => return Ok(connected),
            Err(failed) => failed,
        };
        let failure = first_failed.failure();
        let Some(second) = second.filter(|_| falls_back(self.mode, failure)) else {
            return Err((first_failed, failure));
        };
        tracing::debug!(host = %self.host, sslmode = %self.mode, "postgres connection attempt failed; trying the other transport");
        match self.attempt(config, second).await {
            Ok(connected) => Ok(connected),
            Err(_) if report_first(self.mode, failure) => Err((first_failed, failure)),
            Err(second_failed) => {
                let failure = second_failed.failure();
                Err((second_failed, failure))
            }
        }
    }
}

impl deadpool_postgres::Connect for Connector {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> BoxFuture<'_, Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>> {
        let pg_config = pg_config.clone();
        Box::pin(async move {
            let (failed, _) = match self.establish(&pg_config).await {
                Ok((client, connection)) => {
                    return Ok((client, spawn_connection(connection, self.host.clone())));
                }
                Err(failed) => failed,
            };
            match failed {
                Failed::Error { error, .. } => Err(error),
                // `time_whole_attempt` is off for a pool: its create timeout applies.
                Failed::TimedOut(attempt) => {
                    unreachable!("pool connector timed an attempt to {}", attempt.host)
                }
            }
        })
    }
}

/// Runs the connection until its client is dropped; its end is logged at debug.
fn spawn_connection(connection: Connection, host: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        match connection.await {
            Ok(()) => tracing::debug!(host = %host, "postgres connection closed"),
            Err(error) => {
                tracing::debug!(host = %host, error = %error, "postgres connection ended")
            }
        }
    })
}

impl PgConnection {
    /// Opens a connection; its connection task runs in the background (its end is logged at
    /// debug) until the client is dropped.
    pub async fn connect(&self) -> Result<Client, PgError> {
        let connector = Connector::new(self, true)?;
        let (client, connection) = connector
            .establish(self.config())
            .await
            .map_err(|(failed, _)| failed.classify())?;
        spawn_connection(connection, self.host_description());
        Ok(client)
    }

    /// Opens a connection like [`PgConnection::connect`] whose asynchronous messages
    /// (`NOTIFY` notifications, notices) are forwarded to the returned [`Listening`] instead
    /// of being dropped: the connection for `LISTEN`. At most `capacity` messages wait there;
    /// beyond that they are dropped and the receiver reports [`Listened::Overflowed`] once
    /// before the next message, so a slow reader catches up from its source of truth instead
    /// of growing a queue without bound (the connection keeps being polled, so queries on the
    /// client still answer). The receiver ends when the connection does (server gone,
    /// connection terminated, client dropped); the end is logged at debug.
    pub async fn connect_listening(&self, capacity: usize) -> Result<(Client, Listening), PgError> {
        let connector = Connector::new(self, true)?;
        let (client, mut connection) = connector
            .establish(self.config())
            .await
            .map_err(|(failed, _)| failed.classify())?;
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        let overflowed = Arc::new(AtomicBool::new(false));
        let flag = overflowed.clone();
        let host = self.host_description();
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(message)) => match tx.try_send(message) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => flag.store(true, Ordering::Release),
                        Err(TrySendError::Closed(_)) => {
                            tracing::debug!(host = %host, "postgres listening connection dropped");
                            return;
                        }
                    },
                    Some(Err(error)) => {
                        tracing::debug!(host = %host, error = %error, "postgres listening connection ended");
                        return;
                    }
                    None => {
                        tracing::debug!(host = %host, "postgres listening connection closed");
                        return;
                    }
                }
            }
        });
        Ok((client, Listening { rx, overflowed }))
    }

    /// A pool of up to `size` connections made like [`PgConnection::connect`] (statements
    /// cached per connection, fast recycling). Opens no connection yet.
    pub fn pool(&self, size: usize) -> Result<Pool, PgError> {
        let manager = Manager::from_connect(
            self.config().clone(),
            Connector::new(self, false)?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // Creating a connection is bounded like `connect`'s attempts (`PoolError::Timeout`):
        // both of `allow`'s or `prefer`'s attempts.
        let create_timeout = self.config().get_connect_timeout().map(|t| *t * 2);
        Pool::builder(manager)
            .max_size(size.max(1))
            .create_timeout(create_timeout)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(PgError::Pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_attempt_order() {
        assert_eq!(plan(SslMode::Disable, false), (Transport::Plain, None));
        assert_eq!(
            plan(SslMode::Allow, false),
            (Transport::Plain, Some(Transport::Tls))
        );
        assert_eq!(
            plan(SslMode::Prefer, false),
            (Transport::TlsIfOffered, Some(Transport::Plain))
        );
        assert_eq!(plan(SslMode::VerifyFull, false), (Transport::Tls, None));
        assert_eq!(
            plan(SslMode::VerifyFull, true),
            (Transport::Plain, None),
            "no TLS on Unix sockets"
        );
    }

    #[test]
    fn fallbacks() {
        assert!(falls_back(SslMode::Allow, Failure::ServerRejected));
        assert!(!falls_back(SslMode::Allow, Failure::Other));
        assert!(falls_back(SslMode::Prefer, Failure::Handshake));
        assert!(!falls_back(SslMode::Require, Failure::ServerRejected));
        assert!(report_first(SslMode::Prefer, Failure::ServerRejected));
        assert!(!report_first(SslMode::Allow, Failure::ServerRejected));
    }
}

/// What [`Listening::recv`] gives.
// Returned by value, one at a time: boxing the message would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Listened {
    /// A message from the server, in the order it sent them.
    Message(AsyncMessage),
    /// Messages were dropped because the reader fell `capacity` behind.
    Overflowed,
}

/// The receiving end of [`PgConnection::connect_listening`].
#[derive(Debug)]
pub struct Listening {
    rx: tokio::sync::mpsc::Receiver<AsyncMessage>,
    overflowed: Arc<AtomicBool>,
}

impl Listening {
    /// The next message, [`Listened::Overflowed`] first when messages were dropped since the
    /// last call, or `None` once the connection ended and every kept message was taken.
    pub async fn recv(&mut self) -> Option<Listened> {
        if self.overflowed.swap(false, Ordering::AcqRel) {
            return Some(Listened::Overflowed);
        }
        // A drop while this call waits is reported by the next one: a drop means the queue was
        // full, so the reader has those messages to take first.
        let message = self.rx.recv().await;
        message.map(Listened::Message)
    }
}
