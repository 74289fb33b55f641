//! Server certificate verification per `sslmode`: rustls' WebPKI verifier for `verify-full`, the
//! same without the name check for `verify-ca`, none for `allow`/`prefer`/`require` (libpq's
//! meaning: encrypted, not authenticated). Handshake signatures are always checked. An
//! untrusted certificate's error carries its issuer, so the message can name the CA to configure.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore};

use crate::certificate;
use crate::error::PgError;

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verification {
    /// `allow`, `prefer`, `require`.
    None,
    /// `verify-ca`: the chain up to a trusted root, any host name.
    ChainOnly,
    /// `verify-full`: the chain and the host name.
    Full,
}

/// The rustls error of a certificate whose chain ends at no trusted root: it names the issuer
/// the chain stops at.
#[derive(Debug, thiserror::Error)]
#[error("certificate issued by {issuer} is not trusted")]
pub(crate) struct UntrustedIssuer {
    pub issuer: String,
}

#[derive(Debug)]
pub(crate) struct ServerVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
    verification: Verification,
}

impl ServerVerifier {
    pub fn new(
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
        verification: Verification,
    ) -> Result<ServerVerifier, PgError> {
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| PgError::Pem {
                what: "cacert",
                reason: e.to_string(),
            })?;
        Ok(ServerVerifier {
            webpki,
            provider,
            verification,
        })
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self.verification == Verification::None {
            return Ok(ServerCertVerified::assertion());
        }
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => Ok(verified),
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.verification == Verification::ChainOnly => {
                Ok(ServerCertVerified::assertion())
            }
            Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                // The chain stops at the last certificate sent: its issuer is the CA to trust.
                let top = intermediates.last().unwrap_or(end_entity);
                Err(match certificate::issuer(top) {
                    Some(issuer) => Error::InvalidCertificate(CertificateError::Other(OtherError(
                        Arc::new(UntrustedIssuer { issuer }),
                    ))),
                    None => Error::InvalidCertificate(CertificateError::UnknownIssuer),
                })
            }
            Err(e) => Err(e),
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
