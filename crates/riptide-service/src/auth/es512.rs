//! ES512 (ECDSA on P-521 with SHA-512), which PowerSync accepts and `jsonwebtoken` does not
//! implement: P-521 JWKs become [`VerifyKey::Es512`] keys, and tokens whose header says
//! `"alg":"ES512"` are verified here with the RustCrypto `p521` crate. Everything after the
//! signature (claims, audience, lifetime) is the key store's common path.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p521::ecdsa::signature::Verifier;
use p521::ecdsa::{Signature, VerifyingKey};
use serde_json::{Map, Value};

use super::AuthError;

/// `P-521` coordinates are 66 bytes; the JWS signature is `r || s`, 132 bytes.
const COORDINATE_BYTES: usize = 66;

/// A P-521 public key from a JWK (`kty: EC`, `crv: P-521`, `x`, `y`; `alg`, if given, `ES512`).
/// `Ok(None)`: not a P-521 key.
pub(crate) fn key_from_jwk(jwk: &Value) -> Result<Option<VerifyingKey>, String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if field("kty") != Some("EC") || field("crv") != Some("P-521") {
        return Ok(None);
    }
    if let Some(alg) = field("alg")
        && alg != "ES512"
    {
        return Err(format!("alg {alg} does not fit a P-521 key"));
    }
    let coordinate = |name: &str| {
        let raw = URL_SAFE_NO_PAD
            .decode(field(name).ok_or_else(|| format!("P-521 key without {name:?}"))?)
            .map_err(|_| format!("P-521 key {name:?} is not base64url"))?;
        if raw.len() != COORDINATE_BYTES {
            return Err(format!(
                "P-521 key {name:?} is not {COORDINATE_BYTES} bytes"
            ));
        }
        Ok::<_, String>(raw)
    };
    let mut sec1 = Vec::with_capacity(1 + 2 * COORDINATE_BYTES);
    sec1.push(0x04);
    sec1.extend_from_slice(&coordinate("x")?);
    sec1.extend_from_slice(&coordinate("y")?);
    VerifyingKey::from_sec1_bytes(&sec1)
        .map(Some)
        .map_err(|_| "P-521 key is not a point on the curve".to_owned())
}

/// The `kid` of a token whose header declares ES512 (`Some(None)`: ES512 without a kid);
/// `None` for any other token.
pub(crate) fn es512_header(token: &str) -> Option<Option<String>> {
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    let header: Value = serde_json::from_slice(&bytes).ok()?;
    (header.get("alg")?.as_str()? == "ES512")
        .then(|| header.get("kid").and_then(Value::as_str).map(str::to_owned))
}

/// The token's claims if its signature verifies with `key`.
pub(crate) fn verify(token: &str, key: &VerifyingKey) -> Result<Map<String, Value>, AuthError> {
    let malformed = || AuthError::Malformed("not a JWT".to_owned());
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| AuthError::Malformed("invalid base64".to_owned()))?;
    let signature = Signature::from_slice(&signature).map_err(|_| AuthError::BadSignature)?;
    let signed_len = header.len() + 1 + payload.len();
    let signed = token.get(..signed_len).ok_or_else(malformed)?;
    key.verify(signed.as_bytes(), &signature)
        .map_err(|_| AuthError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| AuthError::Malformed("invalid base64".to_owned()))?;
    serde_json::from_slice(&payload).map_err(|_| AuthError::Malformed("invalid JSON".to_owned()))
}
