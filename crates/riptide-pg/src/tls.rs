//! TLS settings with libpq's meaning (`sslmode`, `sslrootcert`/`cacert`, client certificate and
//! key, `channel_binding`) and the rustls client configuration built from them.
//!
//! Everything goes through rustls with the `ring` provider, passed explicitly (no process-wide
//! default provider is installed or needed). Roots: the `cacert` given, or the Mozilla roots of
//! `webpki-roots` when a `verify-*` mode has none (PowerSync does the same with Node's bundle).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::PgError;
use crate::verify::{ServerVerifier, Verification};

/// `sslmode`, with libpq's meaning.
///
/// | mode | TLS | certificate checked | host name checked |
/// |---|---|---|---|
/// | `disable` | never | – | – |
/// | `allow` | only if the server refuses a plain connection | no | no |
/// | `prefer` | when the server offers it; plain if it does not or TLS fails | no | no |
/// | `require` | always | no (yes with a `cacert`: then `verify-ca`, libpq's rule) | no |
/// | `verify-ca` | always | yes | no |
/// | `verify-full` | always | yes | yes |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a connection without TLS is refused.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = PgError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(PgError::InvalidSetting {
                    key: "sslmode",
                    reason: format!(
                        "{other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                    ),
                });
            }
        })
    }
}

/// `channel_binding`: SCRAM-SHA-256-PLUS bound to the server certificate (`tls-server-end-point`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelBinding {
    Disable,
    /// Use it when the connection is TLS and the server offers it (libpq's default).
    #[default]
    Prefer,
    /// Fail unless the server authenticated with channel binding (needs TLS and SCRAM).
    Require,
}

impl ChannelBinding {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelBinding::Disable => "disable",
            ChannelBinding::Prefer => "prefer",
            ChannelBinding::Require => "require",
        }
    }

    pub(crate) fn to_tokio_postgres(self) -> tokio_postgres::config::ChannelBinding {
        match self {
            ChannelBinding::Disable => tokio_postgres::config::ChannelBinding::Disable,
            ChannelBinding::Prefer => tokio_postgres::config::ChannelBinding::Prefer,
            ChannelBinding::Require => tokio_postgres::config::ChannelBinding::Require,
        }
    }
}

impl FromStr for ChannelBinding {
    type Err = PgError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "disable" => ChannelBinding::Disable,
            "prefer" => ChannelBinding::Prefer,
            "require" => ChannelBinding::Require,
            other => {
                return Err(PgError::InvalidSetting {
                    key: "channel_binding",
                    reason: format!("{other:?} is not one of disable, prefer, require"),
                });
            }
        })
    }
}

/// PEM given inline (PowerSync's config keys allow it) or as a file path (libpq's keys).
#[derive(Clone, PartialEq, Eq)]
pub enum PemSource {
    Inline(String),
    Path(PathBuf),
}

impl PemSource {
    /// Inline when the value holds a PEM block (`-----BEGIN`), a path otherwise.
    pub fn parse(value: &str) -> PemSource {
        if value.contains("-----BEGIN") {
            PemSource::Inline(value.to_owned())
        } else {
            PemSource::Path(PathBuf::from(value.trim()))
        }
    }

    /// The PEM bytes; `what` names the setting in errors.
    fn read(&self, what: &'static str) -> Result<Vec<u8>, PgError> {
        match self {
            PemSource::Inline(text) => Ok(text.as_bytes().to_vec()),
            PemSource::Path(path) => std::fs::read(path).map_err(|source| PgError::PemFile {
                what,
                path: path.clone(),
                source,
            }),
        }
    }

    pub(crate) fn certificates(
        &self,
        what: &'static str,
    ) -> Result<Vec<CertificateDer<'static>>, PgError> {
        let bytes = self.read(what)?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PgError::Pem {
                what,
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(PgError::Pem {
                what,
                reason: "no CERTIFICATE block found".into(),
            });
        }
        Ok(certs)
    }

    fn private_key(&self, what: &'static str) -> Result<PrivateKeyDer<'static>, PgError> {
        let bytes = self.read(what)?;
        // The parser's message never contains key bytes.
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| PgError::Pem {
            what,
            reason: e.to_string(),
        })
    }
}

impl fmt::Debug for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemSource::Inline(_) => f.write_str("<inline PEM>"),
            PemSource::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Where the CA certificates that verify the server come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// `cacert` / `sslrootcert=<file or PEM>`.
    Pem(PemSource),
    /// `sslrootcert=system`: the Mozilla roots (libpq 16 then requires `verify-full`).
    System,
}

/// The TLS half of a connection's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub mode: SslMode,
    /// `None`: for `verify-*`, the Mozilla roots.
    pub root_certs: Option<RootCerts>,
    pub client_cert: Option<PemSource>,
    /// Never printed by `Debug`.
    pub client_key: Option<PemSource>,
    pub channel_binding: ChannelBinding,
}

impl TlsOptions {
    /// `mode`, nothing else set.
    pub fn new(mode: SslMode) -> TlsOptions {
        TlsOptions {
            mode,
            root_certs: None,
            client_cert: None,
            client_key: None,
            channel_binding: ChannelBinding::default(),
        }
    }

    /// The mode in force: libpq's rule makes `require` with a CA file behave as `verify-ca`.
    pub fn effective_mode(&self) -> SslMode {
        match (self.mode, &self.root_certs) {
            (SslMode::Require, Some(RootCerts::Pem(_))) => SslMode::VerifyCa,
            (mode, _) => mode,
        }
    }

    /// Checks combinations libpq refuses, before any connection is tried.
    pub fn validate(&self) -> Result<(), PgError> {
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(PgError::InvalidSetting {
                key: "client_certificate",
                reason: "a client certificate and its private key go together: set both or neither"
                    .into(),
            });
        }
        if self.root_certs == Some(RootCerts::System) && self.mode != SslMode::VerifyFull {
            return Err(PgError::InvalidSetting {
                key: "sslrootcert",
                reason: format!(
                    "sslrootcert=system needs sslmode=verify-full (libpq refuses weaker modes with it), not {}",
                    self.mode
                ),
            });
        }
        Ok(())
    }

    /// The rustls configuration for a TLS attempt under this mode (`allow`/`prefer`/`require`
    /// without a CA: encrypted, not verified).
    pub(crate) fn client_config(&self) -> Result<ClientConfig, PgError> {
        self.validate()?;
        let verification = match self.effective_mode() {
            SslMode::VerifyFull => Verification::Full,
            SslMode::VerifyCa => Verification::ChainOnly,
            _ => Verification::None,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(self.root_store()?);
        let verifier = ServerVerifier::new(roots, provider.clone(), verification)?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(PgError::TlsSetup)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(
                    cert.certificates("client_certificate")?,
                    key.private_key("client_private_key")?,
                )
                .map_err(|e| PgError::Pem {
                    what: "client_private_key",
                    reason: format!("does not match client_certificate or is unsupported ({e})"),
                })?,
            _ => builder.with_no_client_auth(),
        };
        Ok(config)
    }

    fn root_store(&self) -> Result<RootCertStore, PgError> {
        match &self.root_certs {
            Some(RootCerts::Pem(source)) => {
                let mut store = RootCertStore::empty();
                let (added, _) = store.add_parsable_certificates(source.certificates("cacert")?);
                if added == 0 {
                    return Err(PgError::Pem {
                        what: "cacert",
                        reason: "no usable CA certificate in it".into(),
                    });
                }
                Ok(store)
            }
            Some(RootCerts::System) | None => Ok(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            }),
        }
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("sslmode", &self.mode.as_str())
            .field("root_certs", &self.root_certs)
            .field("client_cert", &self.client_cert)
            .field(
                "client_key",
                &self.client_key.as_ref().map(|_| "<redacted>"),
            )
            .field("channel_binding", &self.channel_binding.as_str())
            .finish()
    }
}

/// Installs rustls' `ring` provider as the process-wide default unless one is installed. Postgres
/// TLS here never needs it (every config names its provider), but reqwest, built with
/// `rustls-no-provider` so that no second crypto library (aws-lc, a C build) is compiled, takes
/// the process default when a client is built and panics without one. Every binary calls this
/// first, and so does every library function that builds a reqwest client (it is cheap after the
/// first call).
pub fn install_default_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may have installed one in between: either is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn modes_parse_and_print_as_libpq_spells_them() {
        for text in [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            assert_eq!(text.parse::<SslMode>().unwrap().to_string(), text);
        }
        let err = "verify_full".parse::<SslMode>().unwrap_err().to_string();
        assert!(err.contains("verify-full"), "{err}");
        assert_eq!(
            "require".parse::<ChannelBinding>().unwrap(),
            ChannelBinding::Require
        );
        assert!("yes".parse::<ChannelBinding>().is_err());
    }

    #[test]
    fn require_with_a_ca_file_verifies_the_chain() {
        let mut tls = TlsOptions::new(SslMode::Require);
        assert_eq!(tls.effective_mode(), SslMode::Require);
        tls.root_certs = Some(RootCerts::Pem(PemSource::parse("/ca.pem")));
        assert_eq!(tls.effective_mode(), SslMode::VerifyCa);
        tls.mode = SslMode::Prefer;
        assert_eq!(tls.effective_mode(), SslMode::Prefer);
    }

    #[test]
    fn pem_values_are_inline_or_paths() {
        assert_eq!(
            PemSource::parse(" /etc/ca.pem "),
            PemSource::Path("/etc/ca.pem".into())
        );
        assert!(matches!(
            PemSource::parse("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            PemSource::Inline(_)
        ));
    }

    #[test]
    fn bad_pem_names_the_setting() {
        let tls = TlsOptions {
            root_certs: Some(RootCerts::Pem(PemSource::Inline(
                "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".into(),
            ))),
            ..TlsOptions::new(SslMode::VerifyFull)
        };
        let err = tls.client_config().unwrap_err();
        assert!(
            matches!(err, PgError::Pem { what: "cacert", .. }),
            "{err:?}"
        );
        let missing = TlsOptions {
            root_certs: Some(RootCerts::Pem(PemSource::parse("/nonexistent/ca.pem"))),
            ..TlsOptions::new(SslMode::VerifyFull)
        };
        let err = missing.client_config().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn refused_combinations() {
        let half = TlsOptions {
            client_cert: Some(PemSource::parse("/c.pem")),
            ..TlsOptions::new(SslMode::VerifyFull)
        };
        assert!(half.validate().is_err());
        let weak_system = TlsOptions {
            root_certs: Some(RootCerts::System),
            ..TlsOptions::new(SslMode::Require)
        };
        assert!(weak_system.validate().is_err());
    }

    #[test]
    fn debug_never_shows_key_material() {
        let tls = TlsOptions {
            client_cert: Some(PemSource::Inline("-----BEGIN CERTIFICATE-----".into())),
            client_key: Some(PemSource::Inline(
                "-----BEGIN PRIVATE KEY-----\nSECRETKEY\n-----END PRIVATE KEY-----".into(),
            )),
            ..TlsOptions::new(SslMode::VerifyFull)
        };
        let text = format!("{tls:?}");
        assert!(!text.contains("SECRETKEY"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
}
