//! A Postgres connection of the config (`replication.connections[0]`, `storage`): either a
//! `uri` or separate fields, resolved straight into a [`tokio_postgres::Config`], with its TLS
//! keys kept beside it in [`TlsKeys`].

use std::fmt;

use super::ConfigError;
use super::env_value::Env;
use super::file::{Resolver, Str};

/// User, port and database of a connection given by `hostname` without them.
const DEFAULT_USER: &str = "postgres";
const DEFAULT_PORT: u16 = 5432;
const DEFAULT_DATABASE: &str = "postgres";

/// A configured Postgres connection.
#[derive(Debug, Clone, PartialEq)]
pub struct PgConnection {
    /// Where and as whom to connect (its `Debug` leaves the password out).
    pub config: tokio_postgres::Config,
    /// The TLS settings given with it.
    pub tls: TlsKeys,
}

impl PgConnection {
    /// A connection without TLS settings.
    pub fn new(config: tokio_postgres::Config) -> PgConnection {
        PgConnection {
            config,
            tls: TlsKeys::default(),
        }
    }
}

impl From<tokio_postgres::Config> for PgConnection {
    fn from(config: tokio_postgres::Config) -> PgConnection {
        PgConnection::new(config)
    }
}

/// The TLS keys of a connection, parsed and kept, not applied yet: connections are plain TCP
/// (`verify-ca`/`verify-full` are refused at load). `cacert`, `client_certificate` and
/// `client_private_key` are also listed in [`super::ServeConfig::ignored`] until they take
/// effect. The private key never prints in `Debug` output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsKeys {
    /// `sslmode`; `None` when not given.
    pub sslmode: Option<SslMode>,
    /// `cacert`: the CA certificate(s) to trust, PEM.
    pub cacert: Option<String>,
    /// `client_certificate`: PEM, for certificate authentication.
    pub client_certificate: Option<String>,
    /// `client_private_key`: PEM, the client certificate's key.
    pub client_private_key: Option<String>,
}

impl fmt::Debug for TlsKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let given = |v: &Option<String>| v.as_ref().map(|_| "<given>");
        f.debug_struct("TlsKeys")
            .field("sslmode", &self.sslmode)
            .field("cacert", &given(&self.cacert))
            .field("client_certificate", &given(&self.client_certificate))
            .field("client_private_key", &given(&self.client_private_key))
            .finish()
    }
}

/// `sslmode`, as PowerSync names its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<SslMode> {
        match value {
            "disable" => Some(SslMode::Disable),
            "verify-ca" => Some(SslMode::VerifyCa),
            "verify-full" => Some(SslMode::VerifyFull),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The keys a connection section shares, as read from the file.
pub(super) struct ConnectionKeys {
    pub uri: Option<Str>,
    pub hostname: Option<Str>,
    pub port: Option<Env<u16>>,
    pub database: Option<Str>,
    pub username: Option<Str>,
    pub password: Option<Str>,
    pub sslmode: Option<Str>,
    pub cacert: Option<Str>,
    pub client_certificate: Option<Str>,
    pub client_private_key: Option<Str>,
}

/// Resolves the connection at `at` (a dotted path, for messages).
pub(super) fn resolve(
    r: &Resolver<'_>,
    at: &str,
    keys: ConnectionKeys,
) -> Result<PgConnection, ConfigError> {
    let sslmode = sslmode(r, at, keys.sslmode)?;
    refuse_tls(r, at, sslmode)?;
    let tls = TlsKeys {
        sslmode,
        cacert: keys.cacert.map(Env::into_inner),
        client_certificate: keys.client_certificate.map(Env::into_inner),
        client_private_key: keys.client_private_key.map(Env::into_inner),
    };
    let config = match (keys.uri, keys.hostname) {
        (Some(uri), None) => uri.0.parse::<tokio_postgres::Config>().map_err(|e| {
            r.invalid(format!(
                "{at}.uri is not a valid Postgres connection string: {e}"
            ))
        })?,
        (None, Some(host)) => {
            let mut config = tokio_postgres::Config::new();
            config
                .host(&host.0)
                .port(keys.port.map_or(DEFAULT_PORT, Env::into_inner))
                .user(keys.username.map_or(DEFAULT_USER.into(), Env::into_inner))
                .dbname(
                    keys.database
                        .map_or(DEFAULT_DATABASE.into(), Env::into_inner),
                );
            if let Some(password) = keys.password {
                config.password(password.0);
            }
            config
        }
        (Some(_), Some(_)) => {
            return Err(r.invalid(format!("{at}: give either `uri` or `hostname`, not both")));
        }
        (None, None) => return Err(r.invalid(format!("{at}: missing `uri`"))),
    };
    Ok(PgConnection { config, tls })
}

fn sslmode(r: &Resolver<'_>, at: &str, value: Option<Str>) -> Result<Option<SslMode>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    SslMode::parse(&value.0).map(Some).ok_or_else(|| {
        r.invalid(format!(
            "{at}.sslmode: {:?} is not one of verify-full, verify-ca, disable",
            value.0
        ))
    })
}

/// Connections are plain TCP until TLS is wired in: a mode that needs TLS is refused.
fn refuse_tls(r: &Resolver<'_>, at: &str, sslmode: Option<SslMode>) -> Result<(), ConfigError> {
    match sslmode {
        None | Some(SslMode::Disable) => Ok(()),
        Some(mode @ (SslMode::VerifyCa | SslMode::VerifyFull)) => Err(r.invalid(format!(
            "{at}.sslmode: {} needs TLS to Postgres, which this build does not support \
             yet; use `sslmode: disable` on a trusted network",
            mode.as_str()
        ))),
    }
}
