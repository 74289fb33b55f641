//! `DIRECT_DATABASE_URL` → a tokio-postgres config and its TLS connector.
//!
//! The URL's libpq TLS parameters are honoured: `sslmode` (`disable`, `allow`, `prefer`,
//! `require`, `verify-ca`, `verify-full`), `sslrootcert` (a CA file, or `system`) and
//! `channel_binding` (SCRAM-SHA-256-PLUS, as Neon URLs ask for). TLS is rustls with the `ring`
//! provider; `verify-*` trust the `sslrootcert` file or, without one, the Mozilla roots.
//! `allow` and `prefer` both mean "TLS when the server offers it", and `require` with an
//! `sslrootcert` checks the certificate's CA, as libpq does. Client certificates are not
//! supported here.
//!
//! The sync service has the same (and more) in its own crate; an app depends on nothing of
//! Riptide's, so this small copy is the app's own.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore};
use tokio_postgres::config::SslMode as TokioSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

#[derive(Debug, thiserror::Error)]
pub enum DatabaseUrlError {
    /// The URL itself is never repeated: it holds the password.
    #[error("not a Postgres URL (postgres://user:password@host:port/db)")]
    Parse(#[source] tokio_postgres::Error),
    #[error("{0}")]
    Setting(String),
    #[error("cannot read sslrootcert {path}")]
    RootCert {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sslrootcert {path} holds no usable CA certificate")]
    NoRootCert { path: PathBuf },
    #[error("cannot set up TLS")]
    Tls(#[source] Error),
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

/// A parsed `DIRECT_DATABASE_URL`.
#[derive(Debug)]
pub struct DatabaseUrl {
    config: tokio_postgres::Config,
    verify: Verify,
    root_cert: Option<PathBuf>,
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<DatabaseUrl, DatabaseUrlError> {
        let (base, query) = url.trim().split_once('?').unwrap_or((url.trim(), ""));
        let mut sslmode = "prefer".to_owned();
        let mut root_cert = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned();
            match key {
                "sslmode" => sslmode = value,
                "sslrootcert" if value == "system" => root_cert = None,
                "sslrootcert" => root_cert = Some(PathBuf::from(value)),
                "sslcert" | "sslkey" => {
                    return Err(DatabaseUrlError::Setting(format!(
                        "{key} (client certificates) is not supported by this app's server"
                    )));
                }
                _ => rest.push(pair),
            }
        }
        let remaining = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config =
            tokio_postgres::Config::from_str(&remaining).map_err(DatabaseUrlError::Parse)?;
        let (mode, verify) = match sslmode.as_str() {
            "disable" => (TokioSslMode::Disable, Verify::Nothing),
            "allow" | "prefer" => (TokioSslMode::Prefer, Verify::Nothing),
            "require" if root_cert.is_some() => (TokioSslMode::Require, Verify::Chain),
            "require" => (TokioSslMode::Require, Verify::Nothing),
            "verify-ca" => (TokioSslMode::Require, Verify::Chain),
            "verify-full" => (TokioSslMode::Require, Verify::ChainAndName),
            other => {
                return Err(DatabaseUrlError::Setting(format!(
                    "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )));
            }
        };
        config.ssl_mode(mode);
        Ok(DatabaseUrl {
            config,
            verify,
            root_cert,
        })
    }

    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The TLS connector for [`DatabaseUrl::config`] (reads `sslrootcert`).
    pub fn tls(&self) -> Result<MakeRustlsConnect, DatabaseUrlError> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| DatabaseUrlError::RootCert {
                        path: path.clone(),
                        source: std::io::Error::other(e.to_string()),
                    })?
                    .filter_map(Result::ok);
                if roots.add_parsable_certificates(certs).0 == 0 {
                    return Err(DatabaseUrlError::NoRootCert { path: path.clone() });
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| DatabaseUrlError::Setting(format!("sslrootcert: {e}")))?;
        let verifier = Verifier {
            webpki,
            provider: provider.clone(),
            verify: self.verify,
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(DatabaseUrlError::Tls)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}

/// `verify-full`: rustls' checks; `verify-ca`: the same without the host name; otherwise none
/// (encrypted, not authenticated: libpq's `require`). Handshake signatures are always checked.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
    verify: Verify,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self.verify == Verify::Nothing {
            return Ok(ServerCertVerified::assertion());
        }
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.verify == Verify::Chain => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn neon_style_urls_and_libpq_modes() {
        let url = DatabaseUrl::parse(
            "postgres://u:p@ep-x.eu-central-1.aws.neon.tech/db?sslmode=require&channel_binding=require",
        )
        .unwrap();
        assert_eq!(url.config().get_ssl_mode(), TokioSslMode::Require);
        assert_eq!(url.verify, Verify::Nothing);
        assert_eq!(
            url.config().get_channel_binding(),
            tokio_postgres::config::ChannelBinding::Require
        );
        let url = DatabaseUrl::parse("postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fca.pem")
            .unwrap();
        assert_eq!(url.verify, Verify::ChainAndName);
        assert_eq!(url.root_cert, Some(PathBuf::from("/ca.pem")));
        let url =
            DatabaseUrl::parse("postgres://u@h/db?sslrootcert=/ca.pem&sslmode=require").unwrap();
        assert_eq!(url.verify, Verify::Chain, "libpq: require with a CA file");
        assert_eq!(
            DatabaseUrl::parse("postgres://u@h/db")
                .unwrap()
                .config()
                .get_ssl_mode(),
            TokioSslMode::Prefer
        );
    }

    #[test]
    fn refusals_name_the_setting_not_the_url() {
        let err = DatabaseUrl::parse("postgres://u:secret@h/db?sslmode=strict").unwrap_err();
        assert!(err.to_string().contains("sslmode"), "{err}");
        assert!(DatabaseUrl::parse("postgres://u@h/db?sslcert=/c.pem").is_err());
        let err = DatabaseUrl::parse("postgres://u:secret@h:port/db").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("secret"));
    }
}
