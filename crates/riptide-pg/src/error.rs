//! Connection errors that name the cause and what to change, and the classifier that turns
//! tokio-postgres and rustls errors into them.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::time::Duration;

use rustls::CertificateError;

use crate::tls::SslMode;
use crate::verify::UntrustedIssuer;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The connection string does not parse (its text is never repeated: it may hold a password).
    #[error("invalid Postgres connection string")]
    InvalidUri(#[source] tokio_postgres::Error),
    /// A URL the platform tools edit is not a `postgres://` URL with a host.
    #[error("invalid Postgres URL: {reason}")]
    InvalidUrl { reason: String },
    #[error("invalid Postgres connection setting {key}: {reason}")]
    InvalidSetting { key: &'static str, reason: String },
    #[error(
        "{what} is not usable PEM ({reason}); give the PEM text (-----BEGIN ...) or the path of a PEM file"
    )]
    Pem { what: &'static str, reason: String },
    #[error("cannot read {what} from {path}")]
    PemFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up TLS")]
    TlsSetup(#[source] rustls::Error),
    #[error(
        "the TLS certificate of {host} is not trusted{}: set `cacert` (`sslrootcert` in a URI) to the CA certificate that issued it, or use sslmode=require to encrypt without verifying the server",
        issuer.as_ref().map(|i| format!(" (issued by {i})")).unwrap_or_default()
    )]
    UntrustedCertificate {
        host: String,
        issuer: Option<String>,
    },
    #[error(
        "the TLS certificate of {host} is for {}, not {host}: connect with a host name the certificate lists, or use sslmode=verify-ca to check only the CA",
        if names.is_empty() { "other names".to_owned() } else { names.join(", ") }
    )]
    HostnameMismatch { host: String, names: Vec<String> },
    #[error(
        "{host} refuses connections without TLS (pg_hba.conf allows only hostssl): use sslmode=require, verify-ca or verify-full"
    )]
    ServerRequiresTls {
        host: String,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    #[error(
        "{host} does not support TLS, but sslmode={mode} requires it: turn on `ssl` in the server's postgresql.conf, or use sslmode=prefer (or disable)"
    )]
    ServerWithoutTls { host: String, mode: SslMode },
    #[error(
        "channel_binding=require, but {host} authenticated without channel binding (SCRAM-SHA-256-PLUS needs TLS and a SCRAM password): connect with TLS, or set channel_binding=prefer"
    )]
    ChannelBindingNotUsed { host: String },
    #[error("the TLS handshake with {host} failed")]
    Tls {
        host: String,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    #[error(
        "connecting to {host} timed out after {}s: check that the server runs and is reachable, or raise connect_timeout",
        after.as_secs()
    )]
    Timeout { host: String, after: Duration },
    #[error("cannot connect to {host}")]
    Connect {
        host: String,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    #[error("cannot create the connection pool")]
    Pool(#[source] deadpool_postgres::BuildError),
}

/// What went wrong with one connection attempt, for the `allow`/`prefer` fallbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The TLS handshake failed (not a certificate check: those modes do not fall back).
    Handshake,
    /// The server answered the startup with an error (pg_hba.conf, authentication).
    ServerRejected,
    Other,
}

/// Where a failed attempt went, to name it in errors.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub host: String,
    pub mode: SslMode,
    pub connect_timeout: Option<Duration>,
}

impl PgError {
    /// Whether trying again later may succeed (the server down, unreachable or slow), as
    /// opposed to a setting that must change first (TLS trust, host name, `sslmode`, PEM, an
    /// invalid connection string).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PgError::Timeout { .. } | PgError::Connect { .. } | PgError::Tls { .. }
        )
    }

    /// The cause of a failed tokio-postgres connection attempt, naming what to change.
    pub(crate) fn classify(error: tokio_postgres::Error, attempt: &Attempt) -> PgError {
        let host = attempt.host.clone();
        if let Some(e) = find_rustls(&error) {
            return certificate_error(e, host.clone()).unwrap_or_else(|| PgError::Tls {
                host,
                source: Box::new(error),
            });
        }
        if let Some(db) = error.as_db_error() {
            if refuses_plain(db.code().code(), db.message()) {
                return PgError::ServerRequiresTls {
                    host,
                    source: Box::new(error),
                };
            }
            return PgError::Connect {
                host,
                source: Box::new(error),
            };
        }
        let says = |needle: &str| chain(&error).any(|e| e.to_string().contains(needle));
        if says("server does not support TLS") {
            return PgError::ServerWithoutTls {
                host,
                mode: attempt.mode,
            };
        }
        if says("server did not use channel binding") {
            return PgError::ChannelBindingNotUsed { host };
        }
        if let Some(after) = attempt.connect_timeout
            && chain(&error).any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            })
        {
            return PgError::Timeout { host, after };
        }
        if says("error performing TLS handshake") {
            return PgError::Tls {
                host,
                source: Box::new(error),
            };
        }
        PgError::Connect {
            host,
            source: Box::new(error),
        }
    }

    /// What kind of failure a connection error is, for the `allow`/`prefer` fallbacks.
    pub(crate) fn failure(error: &tokio_postgres::Error) -> Failure {
        if error.as_db_error().is_some() {
            Failure::ServerRejected
        } else if find_rustls(error).is_some()
            || chain(error).any(|e| e.to_string().contains("error performing TLS handshake"))
        {
            Failure::Handshake
        } else {
            Failure::Other
        }
    }
}

/// SQLSTATE 28000 with pg_hba.conf's "no encryption" (or, before Postgres 12, "SSL off").
pub(crate) fn refuses_plain(code: &str, message: &str) -> bool {
    code == "28000" && (message.contains("no encryption") || message.contains("SSL off"))
}

/// A certificate check that failed, as our error; `None` for other TLS failures.
pub(crate) fn certificate_error(error: &rustls::Error, host: String) -> Option<PgError> {
    let rustls::Error::InvalidCertificate(cert) = error else {
        return None;
    };
    match cert {
        CertificateError::UnknownIssuer => {
            Some(PgError::UntrustedCertificate { host, issuer: None })
        }
        CertificateError::Other(other) => {
            other
                .0
                .downcast_ref::<UntrustedIssuer>()
                .map(|u| PgError::UntrustedCertificate {
                    host,
                    issuer: Some(u.issuer.clone()),
                })
        }
        CertificateError::NotValidForName => Some(PgError::HostnameMismatch {
            host,
            names: Vec::new(),
        }),
        CertificateError::NotValidForNameContext { presented, .. } => {
            Some(PgError::HostnameMismatch {
                host,
                names: presented.clone(),
            })
        }
        _ => None,
    }
}

/// `error` and its sources; an `io::Error` also yields the error it wraps (its `source()`
/// skips that one).
pub(crate) fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut next = Some(error);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn StdError + 'static))
                .or_else(|| current.source()),
            None => current.source(),
        };
        Some(current)
    })
}

fn find_rustls<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    chain(error).find_map(|e| e.downcast_ref::<rustls::Error>())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn settings_to_change_are_not_transient() {
        let host = || "db:5432".to_owned();
        assert!(
            PgError::Timeout {
                host: host(),
                after: Duration::from_secs(10)
            }
            .is_transient()
        );
        for e in [
            PgError::UntrustedCertificate {
                host: host(),
                issuer: None,
            },
            PgError::HostnameMismatch {
                host: host(),
                names: vec![],
            },
            PgError::ServerWithoutTls {
                host: host(),
                mode: SslMode::Require,
            },
            PgError::ChannelBindingNotUsed { host: host() },
        ] {
            assert!(!e.is_transient(), "{e}");
        }
    }

    #[test]
    fn chain_sees_through_io_errors() {
        let rustls_error = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls_error);
        assert!(find_rustls(&io).is_some());
    }

    #[test]
    fn certificate_errors_name_host_issuer_and_names() {
        let untrusted = certificate_error(
            &rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                std::sync::Arc::new(UntrustedIssuer {
                    issuer: "CN=Riptide Test CA".into(),
                }),
            ))),
            "db.example:5432".into(),
        )
        .unwrap()
        .to_string();
        assert!(untrusted.contains("CN=Riptide Test CA"), "{untrusted}");
        assert!(untrusted.contains("cacert"), "{untrusted}");
        let mismatch = certificate_error(
            &rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected: rustls::pki_types::ServerName::try_from("db.example")
                    .unwrap()
                    .to_owned(),
                presented: vec!["DnsName(\"localhost\")".into()],
            }),
            "db.example".into(),
        )
        .unwrap()
        .to_string();
        assert!(mismatch.contains("localhost"), "{mismatch}");
        assert!(mismatch.contains("verify-ca"), "{mismatch}");
        assert!(
            certificate_error(&rustls::Error::DecryptError, "h".into()).is_none(),
            "not a certificate check"
        );
    }

    #[test]
    fn pg_hba_refusal_of_plain_connections() {
        assert!(refuses_plain(
            "28000",
            "pg_hba.conf rejects connection for host \"127.0.0.1\", user \"u\", database \"d\", no encryption"
        ));
        assert!(!refuses_plain("28P01", "password authentication failed"));
    }
}
