//! [`PgConnection`]: where to connect (a `tokio_postgres::Config`) and how (TLS), with the
//! network timeouts that keep a dead server from hanging a session.

use std::fmt;
use std::time::Duration;

use tokio_postgres::config::Host;

use crate::error::PgError;
use crate::tls::{ChannelBinding, SslMode, TlsOptions};

/// Give up on a connection attempt after this long (libpq waits forever by default).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keepalive: first probe after this much silence (the OS default is 2 hours).
pub const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(30);
/// TCP keepalive: between probes.
pub const DEFAULT_KEEPALIVES_INTERVAL: Duration = Duration::from_secs(10);
/// TCP keepalive: unanswered probes before the connection is dropped.
pub const DEFAULT_KEEPALIVES_RETRIES: u32 = 3;
/// Drop the connection when sent data stays unacknowledged this long (Linux otherwise retries
/// for ~15 minutes while a session waits on a server that stopped answering).
pub const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);

/// tokio-postgres' own keepalive idle default, which means "not set".
const TOKIO_POSTGRES_KEEPALIVES_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

/// One Postgres server and database to connect to, with TLS settings. `Debug` never prints the
/// password or key material.
///
/// Build it from a URI ([`PgConnection::from_uri`]), from PowerSync's config keys
/// ([`crate::ConnectionKeys`]) or from a `tokio_postgres::Config` ([`PgConnection::new`]);
/// open connections with [`PgConnection::connect`] / [`PgConnection::pool`].
#[derive(Clone, PartialEq)]
pub struct PgConnection {
    config: tokio_postgres::Config,
    tls: TlsOptions,
}

impl PgConnection {
    /// `config` with `tls`; network timeouts the config leaves unset get this crate's defaults
    /// (`DEFAULT_*`). tokio-postgres' own `sslmode`/`channel_binding` in `config` are ignored.
    pub fn new(mut config: tokio_postgres::Config, tls: TlsOptions) -> PgConnection {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_keepalives_idle() == TOKIO_POSTGRES_KEEPALIVES_IDLE {
            config.keepalives_idle(DEFAULT_KEEPALIVES_IDLE);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(DEFAULT_KEEPALIVES_INTERVAL);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(DEFAULT_KEEPALIVES_RETRIES);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(DEFAULT_TCP_USER_TIMEOUT);
        }
        PgConnection { config, tls }
    }

    /// Parses a `postgres://` URI (libpq's TLS parameters included: `sslmode`, `sslrootcert`,
    /// `sslcert`, `sslkey`, `channel_binding`) or a `key=value` string. Without `sslmode`:
    /// `prefer`, libpq's default.
    pub fn from_uri(uri: &str) -> Result<PgConnection, PgError> {
        let parsed = crate::uri::parse(uri)?;
        let mut tls = parsed.tls;
        tls.mode = parsed.sslmode.unwrap_or(SslMode::Prefer);
        tls.validate()?;
        Ok(PgConnection::new(parsed.config, tls))
    }

    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// For settings this type has no method for (options, target session attributes, ...).
    pub fn config_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.config
    }

    pub fn tls(&self) -> &TlsOptions {
        &self.tls
    }

    pub fn set_tls(&mut self, tls: TlsOptions) {
        self.tls = tls;
    }

    /// The same server, user and TLS settings, another database.
    pub fn with_dbname(&self, dbname: &str) -> PgConnection {
        let mut other = self.clone();
        other.config.dbname(dbname);
        other
    }

    /// Sets `application_name` unless one is set already.
    pub fn with_default_application_name(mut self, name: &str) -> PgConnection {
        if self.config.get_application_name().is_none() {
            self.config.application_name(name);
        }
        self
    }

    /// Sets the connection timeout (also the timeout of a replication connection's
    /// authentication).
    pub fn connect_timeout(mut self, timeout: Duration) -> PgConnection {
        self.config.connect_timeout(timeout);
        self
    }

    /// TCP keepalive: idle time before the first probe, time between probes, probes before
    /// giving up.
    pub fn keepalives(mut self, idle: Duration, interval: Duration, retries: u32) -> PgConnection {
        self.config
            .keepalives(true)
            .keepalives_idle(idle)
            .keepalives_interval(interval)
            .keepalives_retries(retries);
        self
    }

    /// Server-side `statement_timeout` for every session of this connection (none by default:
    /// snapshot copies and migrations may legitimately run long, and a dead server is caught
    /// by the keepalives and `tcp_user_timeout` instead).
    pub fn statement_timeout(mut self, timeout: Duration) -> PgConnection {
        let setting = format!("-c statement_timeout={}", timeout.as_millis());
        let options = match self.config.get_options() {
            Some(o) if !o.trim().is_empty() => format!("{o} {setting}"),
            _ => setting,
        };
        self.config.options(options);
        self
    }

    /// `host:port` of the first host (what errors and logs name).
    pub fn host_description(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(Host::Unix(p)) => p.display().to_string(),
            None => match self.config.get_hostaddrs().first() {
                Some(addr) => addr.to_string(),
                None => "localhost".to_owned(),
            },
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
    }

    /// Whether every host is a Unix socket (libpq never uses TLS on those).
    pub(crate) fn unix_sockets_only(&self) -> bool {
        let hosts = self.config.get_hosts();
        #[cfg(unix)]
        let all_unix = !hosts.is_empty() && hosts.iter().all(|h| matches!(h, Host::Unix(_)));
        #[cfg(not(unix))]
        let all_unix = false;
        all_unix && self.config.get_hostaddrs().is_empty()
    }
}

impl From<tokio_postgres::Config> for PgConnection {
    /// TLS from the config's own `sslmode` (`disable`, `prefer` or `require`: all it can hold)
    /// and `channel_binding`.
    fn from(config: tokio_postgres::Config) -> PgConnection {
        use tokio_postgres::config::SslMode as Tp;
        let mode = match config.get_ssl_mode() {
            Tp::Disable => SslMode::Disable,
            Tp::Require => SslMode::Require,
            _ => SslMode::Prefer,
        };
        let channel_binding = match config.get_channel_binding() {
            tokio_postgres::config::ChannelBinding::Disable => ChannelBinding::Disable,
            tokio_postgres::config::ChannelBinding::Require => ChannelBinding::Require,
            _ => ChannelBinding::Prefer,
        };
        let tls = TlsOptions {
            channel_binding,
            ..TlsOptions::new(mode)
        };
        PgConnection::new(config, tls)
    }
}

impl fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnection")
            .field("host", &self.host_description())
            .field("user", &self.config.get_user())
            .field("dbname", &self.config.get_dbname())
            .field(
                "password",
                &self.config.get_password().map(|_| "<redacted>"),
            )
            .field("application_name", &self.config.get_application_name())
            .field("tls", &self.tls)
            .field("connect_timeout", &self.config.get_connect_timeout())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn unset_network_timeouts_get_defaults_and_set_ones_stay() {
        let conn = PgConnection::from_uri("postgres://u@h/db").unwrap();
        assert_eq!(
            conn.config().get_connect_timeout(),
            Some(&DEFAULT_CONNECT_TIMEOUT)
        );
        assert_eq!(conn.config().get_keepalives_idle(), DEFAULT_KEEPALIVES_IDLE);
        assert_eq!(
            conn.config().get_tcp_user_timeout(),
            Some(&DEFAULT_TCP_USER_TIMEOUT)
        );
        let conn = PgConnection::from_uri(
            "postgres://u@h/db?connect_timeout=3&keepalives_idle=7&tcp_user_timeout=9",
        )
        .unwrap();
        assert_eq!(
            conn.config().get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        assert_eq!(conn.config().get_keepalives_idle(), Duration::from_secs(7));
        assert_eq!(
            conn.config().get_tcp_user_timeout(),
            Some(&Duration::from_secs(9))
        );
    }

    #[test]
    fn statement_timeout_joins_existing_options() {
        let conn = PgConnection::from_uri("postgres://u@h/db?options=-c%20search_path%3Dx")
            .unwrap()
            .statement_timeout(Duration::from_secs(5));
        assert_eq!(
            conn.config().get_options(),
            Some("-c search_path=x -c statement_timeout=5000")
        );
    }

    #[test]
    fn another_database_keeps_server_credentials_and_tls() {
        let conn = PgConnection::from_uri("postgres://u:p@h:6543/a?sslmode=require").unwrap();
        let other = conn.with_dbname("b");
        assert_eq!(other.config().get_dbname(), Some("b"));
        assert_eq!(other.config().get_password(), Some(&b"p"[..]));
        assert_eq!(other.tls().mode, SslMode::Require);
        assert_eq!(other.host_description(), "h:6543");
    }

    #[test]
    fn debug_never_prints_the_password() {
        let conn = PgConnection::from_uri("postgres://u:hunter2@h/db").unwrap();
        let text = format!("{conn:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }

    #[test]
    fn a_tokio_postgres_config_keeps_its_sslmode() {
        let config: tokio_postgres::Config =
            "postgres://u@h/db?sslmode=require&channel_binding=require"
                .parse()
                .unwrap();
        let conn = PgConnection::from(config);
        assert_eq!(conn.tls().mode, SslMode::Require);
        assert_eq!(conn.tls().channel_binding, ChannelBinding::Require);
        let plain: tokio_postgres::Config = "host=h user=u".parse().unwrap();
        assert_eq!(PgConnection::from(plain).tls().mode, SslMode::Prefer);
    }
}
