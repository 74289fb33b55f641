//! What we read from a server's certificate: its issuer (for "not trusted" errors) and the
//! `tls-server-end-point` channel-binding hash (RFC 5929) that SCRAM-SHA-256-PLUS binds to.

use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::der::oid::db::rfc5912::{
    ECDSA_WITH_SHA_256, ECDSA_WITH_SHA_384, ECDSA_WITH_SHA_512, ID_SHA_1, ID_SHA_256, ID_SHA_384,
    ID_SHA_512, SHA_1_WITH_RSA_ENCRYPTION, SHA_256_WITH_RSA_ENCRYPTION,
    SHA_384_WITH_RSA_ENCRYPTION, SHA_512_WITH_RSA_ENCRYPTION,
};

/// The issuer's distinguished name (RFC 4514 text), if the certificate parses.
pub(crate) fn issuer(der: &[u8]) -> Option<String> {
    Certificate::from_der(der)
        .ok()
        .map(|cert| cert.tbs_certificate.issuer.to_string())
}

/// RFC 5929 `tls-server-end-point`: the certificate hashed with its signature's hash (SHA-256
/// for MD5 and SHA-1). `None` for signatures without one (Ed25519): no channel binding then.
pub(crate) fn tls_server_end_point(der: &[u8]) -> Option<Vec<u8>> {
    let cert = Certificate::from_der(der).ok()?;
    let oid = cert.signature_algorithm.oid;
    if [
        ID_SHA_1,
        ID_SHA_256,
        SHA_1_WITH_RSA_ENCRYPTION,
        SHA_256_WITH_RSA_ENCRYPTION,
        ECDSA_WITH_SHA_256,
    ]
    .contains(&oid)
    {
        Some(Sha256::digest(der).to_vec())
    } else if [ID_SHA_384, SHA_384_WITH_RSA_ENCRYPTION, ECDSA_WITH_SHA_384].contains(&oid) {
        Some(Sha384::digest(der).to_vec())
    } else if [ID_SHA_512, SHA_512_WITH_RSA_ENCRYPTION, ECDSA_WITH_SHA_512].contains(&oid) {
        Some(Sha512::digest(der).to_vec())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn issuer_and_end_point_of_an_ecdsa_sha256_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["db.example".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Test CA");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().to_vec();
        assert_eq!(issuer(&der).unwrap(), "CN=Test CA");
        let hash = tls_server_end_point(&der).unwrap();
        assert_eq!(hash, Sha256::digest(&der).to_vec());
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["db".into()])
            .unwrap()
            .self_signed(&p384)
            .unwrap();
        assert_eq!(tls_server_end_point(cert.der()).unwrap().len(), 48);
        assert_eq!(issuer(b"not DER"), None);
    }
}
