//! PowerSync tokens: short-lived EdDSA (Ed25519) JWTs for the signed-in user.
//!
//! The key comes from `POWERSYNC_SIGNING_KEY`: base64 (standard or URL-safe alphabet, padding
//! optional) of a private JWK `{"kty":"OKP","crv":"Ed25519","kid":…,"x":…,"d":…}`. The sync
//! service trusts the matching public JWK (the same without `d`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ed25519_dalek::pkcs8::{EncodePrivateKey, KeypairBytes};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

/// How long an issued token is valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(5 * 60);

/// Why `POWERSYNC_SIGNING_KEY` is unusable (never says anything about the key's bytes).
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("not base64")]
    Base64,
    #[error("the decoded value is not a JSON object (a private JWK)")]
    Json,
    #[error("the JWK needs kty \"OKP\" and crv \"Ed25519\"")]
    NotEd25519,
    #[error("the JWK has alg {0:?}; only \"EdDSA\" is supported")]
    Alg(String),
    #[error("the JWK has no \"kid\"")]
    MissingKid,
    #[error("the JWK has no private part \"d\" (this is a public key)")]
    MissingD,
    #[error("the JWK's \"d\" is not 32 bytes of base64url")]
    BadD,
    #[error("the JWK's \"x\" does not match its private key \"d\"")]
    PublicMismatch,
    #[error("the key cannot be encoded for signing")]
    Encode,
}

#[derive(Deserialize)]
struct PrivateJwk {
    kty: Option<String>,
    crv: Option<String>,
    alg: Option<String>,
    kid: Option<String>,
    x: Option<String>,
    d: Option<String>,
}

/// The private signing key and its key id.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    public_x: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn lenient(alphabet: &alphabet::Alphabet) -> GeneralPurpose {
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

/// Decodes base64 in either alphabet, with or without padding.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    lenient(&alphabet::STANDARD)
        .decode(&text)
        .or_else(|_| lenient(&alphabet::URL_SAFE).decode(&text))
        .ok()
}

impl SigningKey {
    /// Parses the value of `POWERSYNC_SIGNING_KEY`.
    pub fn from_env_value(text: &str) -> Result<SigningKey, SigningKeyError> {
        let bytes = decode_base64(text).ok_or(SigningKeyError::Base64)?;
        let jwk: PrivateJwk = serde_json::from_slice(&bytes).map_err(|_| SigningKeyError::Json)?;
        SigningKey::from_jwk_parts(jwk)
    }

    /// Parses a private JWK given as JSON.
    pub fn from_jwk(jwk: &Value) -> Result<SigningKey, SigningKeyError> {
        let jwk: PrivateJwk =
            serde_json::from_value(jwk.clone()).map_err(|_| SigningKeyError::Json)?;
        SigningKey::from_jwk_parts(jwk)
    }

    fn from_jwk_parts(jwk: PrivateJwk) -> Result<SigningKey, SigningKeyError> {
        if jwk.kty.as_deref() != Some("OKP") || jwk.crv.as_deref() != Some("Ed25519") {
            return Err(SigningKeyError::NotEd25519);
        }
        if let Some(alg) = jwk.alg.filter(|a| a != "EdDSA") {
            return Err(SigningKeyError::Alg(alg));
        }
        let kid = jwk
            .kid
            .filter(|k| !k.is_empty())
            .ok_or(SigningKeyError::MissingKid)?;
        let d = jwk.d.ok_or(SigningKeyError::MissingD)?;
        let secret: [u8; 32] = lenient(&alphabet::URL_SAFE)
            .decode(d.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(SigningKeyError::BadD)?;
        let dalek = ed25519_dalek::SigningKey::from_bytes(&secret);
        let public_x = lenient(&alphabet::URL_SAFE)
            .encode(dalek.verifying_key().as_bytes())
            .trim_end_matches('=')
            .to_owned();
        if let Some(x) = jwk.x
            && x.trim().trim_end_matches('=') != public_x
        {
            return Err(SigningKeyError::PublicMismatch);
        }
        // jsonwebtoken takes Ed25519 keys as PKCS#8 v1 DER (no public key inside).
        let der = KeypairBytes {
            secret_key: secret,
            public_key: None,
        }
        .to_pkcs8_der()
        .map_err(|_| SigningKeyError::Encode)?;
        Ok(SigningKey {
            kid,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            public_x,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK the sync service must trust.
    pub fn public_jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "kid": self.kid,
            "x": self.public_x,
        })
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: String,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// An issued token.
#[derive(Debug, Serialize)]
pub struct IssuedToken {
    pub token: String,
    /// RFC 3339, e.g. `2026-11-25T12:05:00Z`.
    pub expires_at: String,
}

/// The token could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the token")]
pub struct SignError(#[source] jsonwebtoken::errors::Error);

/// Signs a token for `user_id`, valid for [`TOKEN_TTL`].
pub fn issue(key: &SigningKey, audience: &str, user_id: Uuid) -> Result<IssuedToken, SignError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let exp = now + TOKEN_TTL.as_secs();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    let claims = Claims {
        sub: user_id.to_string(),
        aud: audience,
        iat: now,
        exp,
    };
    let token = jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(SignError)?;
    Ok(IssuedToken {
        token,
        expires_at: rfc3339(exp),
    })
}

fn rfc3339(unix: u64) -> String {
    let secs = i64::try_from(unix).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
