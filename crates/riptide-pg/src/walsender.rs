//! The walsender (logical replication) connection through `pgwire-replication`, with the same
//! TLS as every other connection.
//!
//! pgwire-replication 0.5 reads CA and client certificates from files only, has no `allow`, no
//! SCRAM channel binding (it sends `biws`) and refuses `verify-full` on an IP address. So we open
//! the socket and do the TLS handshake here (same rustls configuration, verifier, keepalives
//! and timeouts as [`PgConnection::connect`]) and hand the established stream to a patched copy
//! of the crate (`vendor/pgwire-replication`, see its `VENDORED.md`) that runs the protocol on
//! it and does SCRAM-SHA-256-PLUS with the `tls-server-end-point` binding we compute from the
//! server's certificate.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pgwire_replication::{EstablishedStream, PgWireError, ReplicationClient, ReplicationConfig};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::config::Host;

use crate::certificate;
use crate::connect::{Transport, falls_back, plan, report_first};
use crate::connection::{DEFAULT_CONNECT_TIMEOUT, PgConnection};
use crate::error::{Failure, PgError, certificate_error, chain, refuses_plain};
use crate::tls::ChannelBinding;

impl PgConnection {
    /// pgwire-replication's settings for a walsender session on `slot` streaming `publication`:
    /// this connection's host, port, user, password and database (its TLS is applied by
    /// [`PgConnection::connect_walsender`], not through these settings).
    pub fn replication_config(
        &self,
        slot: &str,
        publication: &str,
    ) -> Result<ReplicationConfig, PgError> {
        let config = self.config();
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(Host::Unix(path)) => path.to_string_lossy().into_owned(),
            None => "localhost".to_owned(),
        };
        let user = config
            .get_user()
            .ok_or_else(|| PgError::InvalidSetting {
                key: "user",
                reason: "no user name given".into(),
            })?
            .to_owned();
        let password = match config.get_password() {
            Some(p) => String::from_utf8(p.to_vec()).map_err(|_| PgError::InvalidSetting {
                key: "password",
                reason: "the replication connection needs a UTF-8 password".into(),
            })?,
            None => String::new(),
        };
        let database = config.get_dbname().unwrap_or(&user).to_owned();
        Ok(
            ReplicationConfig::new(host, user, password, database, slot, publication)
                .with_port(self.port()),
        )
    }

    /// Opens a gated walsender session with `cfg` (from [`PgConnection::replication_config`])
    /// over this connection's transport: TLS per `sslmode` (with libpq's `allow`/`prefer`
    /// second attempts) and SCRAM channel binding per `channel_binding`. Returns once the
    /// server has authenticated it (`IDENTIFY_SYSTEM` answered); run commands on it, then
    /// `start()` streaming.
    pub async fn connect_walsender(
        &self,
        cfg: ReplicationConfig,
    ) -> Result<ReplicationClient, PgError> {
        let tls = Arc::new(self.tls().client_config()?);
        let mode = self.tls().effective_mode();
        let (first, second) = plan(mode, self.unix_sockets_only());
        let (error, failure) = match self.walsender_attempt(&cfg, first, &tls).await {
            Ok(client) => return Ok(client),
            Err(failed) => failed,
        };
        let Some(second) = second.filter(|_| falls_back(mode, failure)) else {
            return Err(error);
        };
        tracing::debug!(host = %self.host_description(), sslmode = %mode, error = %error, "walsender connection attempt failed; trying the other transport");
        match self.walsender_attempt(&cfg, second, &tls).await {
            Ok(client) => Ok(client),
            Err(_) if report_first(mode, failure) => Err(error),
            Err((second_error, _)) => Err(second_error),
        }
    }

    async fn walsender_attempt(
        &self,
        cfg: &ReplicationConfig,
        transport: Transport,
        tls: &Arc<ClientConfig>,
    ) -> Result<ReplicationClient, (PgError, Failure)> {
        let timeout = self.timeout();
        let established = tokio::time::timeout(timeout, self.establish(transport, tls))
            .await
            .map_err(|_| (self.timed_out(), Failure::Other))??;
        let binding = match self.tls().channel_binding {
            ChannelBinding::Disable => pgwire_replication::ChannelBinding::Disable,
            ChannelBinding::Prefer => pgwire_replication::ChannelBinding::Prefer,
            ChannelBinding::Require => pgwire_replication::ChannelBinding::Require,
        };
        let cfg = cfg.clone().with_channel_binding(binding);
        let mut client = ReplicationClient::connect_gated_on(cfg, established)
            .await
            .map_err(|e| self.wire_error(e))?;
        // Authentication runs in the session's task: its outcome shows in the first answer.
        match tokio::time::timeout(timeout, client.identify_system()).await {
            Ok(Ok(_)) => Ok(client),
            Ok(Err(e)) => Err(self.wire_error(e)),
            Err(_) => Err((self.timed_out(), Failure::Other)),
        }
    }

    /// The socket, upgraded to TLS per `transport`.
    async fn establish(
        &self,
        transport: Transport,
        tls: &Arc<ClientConfig>,
    ) -> Result<EstablishedStream, (PgError, Failure)> {
        let host = self.host_description();
        let connect_error = |source: std::io::Error| {
            (
                PgError::Connect {
                    host: host.clone(),
                    source: Box::new(source),
                },
                Failure::Other,
            )
        };
        #[cfg(unix)]
        if let Some(Host::Unix(dir)) = self.config().get_hosts().first() {
            let path = dir.join(format!(".s.PGSQL.{}", self.port()));
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(connect_error)?;
            return Ok(plain(stream));
        }
        let name = self.tls_host();
        let mut tcp = match self.config().get_hostaddrs().first() {
            Some(addr) => TcpStream::connect((*addr, self.port())).await,
            None => TcpStream::connect((name.as_str(), self.port())).await,
        }
        .map_err(connect_error)?;
        self.tune_socket(&tcp).map_err(connect_error)?;
        if transport == Transport::Plain {
            return Ok(plain(tcp));
        }
        let mut request = BytesMut::new();
        postgres_protocol::message::frontend::ssl_request(&mut request);
        tcp.write_all(&request).await.map_err(connect_error)?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer).await.map_err(connect_error)?;
        if answer[0] != b'S' {
            return match transport {
                Transport::TlsIfOffered => Ok(plain(tcp)),
                _ => Err((
                    PgError::ServerWithoutTls {
                        host,
                        mode: self.tls().effective_mode(),
                    },
                    Failure::Other,
                )),
            };
        }
        let server_name = ServerName::try_from(name).map_err(|e| {
            (
                PgError::InvalidSetting {
                    key: "host",
                    reason: format!("not a TLS server name ({e})"),
                },
                Failure::Other,
            )
        })?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|e| {
                let certificate = chain(&e)
                    .find_map(|s| s.downcast_ref::<rustls::Error>())
                    .and_then(|r| certificate_error(r, host.clone()));
                let error = certificate.unwrap_or_else(|| PgError::Tls {
                    host: host.clone(),
                    source: Box::new(e),
                });
                (error, Failure::Handshake)
            })?;
        let end_point = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| certificate::tls_server_end_point(cert));
        Ok(EstablishedStream {
            stream: Box::new(stream),
            tls_server_end_point: end_point,
        })
    }

    /// Keepalives and `tcp_user_timeout` as tokio-postgres sets them on ordinary connections.
    fn tune_socket(&self, tcp: &TcpStream) -> std::io::Result<()> {
        let config = self.config();
        tcp.set_nodelay(true)?;
        let socket = socket2::SockRef::from(tcp);
        if config.get_keepalives() {
            let mut keepalive =
                socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle());
            if let Some(interval) = config.get_keepalives_interval() {
                keepalive = keepalive.with_interval(interval);
            }
            if let Some(retries) = config.get_keepalives_retries() {
                keepalive = keepalive.with_retries(retries);
            }
            socket.set_tcp_keepalive(&keepalive)?;
        }
        #[cfg(target_os = "linux")]
        socket.set_tcp_user_timeout(config.get_tcp_user_timeout().copied())?;
        Ok(())
    }

    fn wire_error(&self, error: PgWireError) -> (PgError, Failure) {
        let host = self.host_description();
        let failure = match &error {
            PgWireError::Server(_) => Failure::ServerRejected,
            _ => Failure::Other,
        };
        let text = error.to_string();
        if text.contains("channel binding required") {
            return (PgError::ChannelBindingNotUsed { host }, failure);
        }
        let refused = matches!(&error, PgWireError::Server(m) if m.contains("SQLSTATE 28000") && refuses_plain("28000", m));
        if refused {
            return (
                PgError::ServerRequiresTls {
                    host,
                    source: Box::new(error),
                },
                failure,
            );
        }
        (
            PgError::Connect {
                host,
                source: Box::new(error),
            },
            failure,
        )
    }

    fn timeout(&self) -> Duration {
        self.config()
            .get_connect_timeout()
            .copied()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }

    fn timed_out(&self) -> PgError {
        PgError::Timeout {
            host: self.host_description(),
            after: self.timeout(),
        }
    }

    fn port(&self) -> u16 {
        self.config().get_ports().first().copied().unwrap_or(5432)
    }

    /// The name TLS verifies (and the socket goes to without `hostaddr`): the first TCP host,
    /// or `hostaddr`.
    fn tls_host(&self) -> String {
        match self.config().get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            _ => self
                .config()
                .get_hostaddrs()
                .first()
                .map_or_else(|| "localhost".to_owned(), ToString::to_string),
        }
    }
}

fn plain(stream: impl pgwire_replication::ServerStream + 'static) -> EstablishedStream {
    EstablishedStream {
        stream: Box::new(stream),
        tls_server_end_point: None,
    }
}
