//! JWK parsing into verification keys, and fetching remote JWKS documents.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The key material of a [`KeySpec`].
#[derive(Clone)]
pub enum VerifyKey {
    /// Verified by `jsonwebtoken` (its `algorithms`).
    Jwt(DecodingKey),
    /// A P-521 key: ES512, verified by [`super::es512`].
    Es512(p521::ecdsa::VerifyingKey),
}

/// One verification key: its optional `kid`, the algorithms it may verify, and the key.
#[derive(Clone)]
pub struct KeySpec {
    pub kid: Option<String>,
    /// What `jsonwebtoken` may verify with it (empty for ES512 keys).
    pub algorithms: Vec<Algorithm>,
    pub key: VerifyKey,
    /// Audiences accepted for tokens this key verifies, besides the configured ones
    /// (Supabase keys: `authenticated`).
    pub audiences: Vec<String>,
}

impl std::fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("KeySpec")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS must be an object with a \"keys\" array")]
    NotAKeySet,
    #[error("JWK {index} is invalid: {reason}")]
    InvalidKey { index: usize, reason: String },
    #[error("could not fetch JWKS from {uri}")]
    Fetch {
        uri: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("JWKS from {uri} answered HTTP {status} (redirects are not followed)")]
    FetchStatus { uri: String, status: u16 },
    #[error("JWKS URI {uri} is not a valid URL")]
    BadUri { uri: String },
    #[error(
        "JWKS URI {uri} points at a refused address (block_local_jwks / jwks_reject_ip_ranges)"
    )]
    RefusedAddress { uri: String },
    #[error("JWKS from {uri} is larger than {limit} bytes")]
    TooLarge { uri: String, limit: usize },
    #[error("JWKS from {uri} is not JSON")]
    NotJson { uri: String },
}

impl KeySpec {
    /// Parses one JWK: OKP/Ed25519 (`EdDSA`), RSA (RS256/384/512; any of them when `alg` is
    /// absent), EC P-256/P-384/P-521 (ES256/ES384/ES512), oct (HS256/384/512, `alg` required).
    pub fn from_jwk_value(value: &serde_json::Value) -> Result<KeySpec, String> {
        if let Some(key) = super::es512::key_from_jwk(value)? {
            return Ok(KeySpec {
                kid: value
                    .get("kid")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned),
                algorithms: Vec::new(),
                key: VerifyKey::Es512(key),
                audiences: Vec::new(),
            });
        }
        let jwk: Jwk = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        let declared = match jwk.common.key_algorithm {
            None => None,
            Some(alg) => {
                Some(Algorithm::try_from(alg).map_err(|_| format!("unsupported alg {alg}"))?)
            }
        };
        let algorithms = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => {
                let family = [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];
                match declared {
                    None => family.to_vec(),
                    Some(a) if family.contains(&a) => vec![a],
                    Some(a) => return Err(format!("alg {a:?} does not fit an RSA key")),
                }
            }
            AlgorithmParameters::EllipticCurve(p) => {
                let fits = match p.curve {
                    EllipticCurve::P256 => Algorithm::ES256,
                    EllipticCurve::P384 => Algorithm::ES384,
                    ref other => return Err(format!("unsupported EC curve {other:?}")),
                };
                match declared {
                    None => vec![fits],
                    Some(a) if a == fits => vec![a],
                    Some(a) => return Err(format!("alg {a:?} does not fit the key's curve")),
                }
            }
            AlgorithmParameters::OctetKeyPair(p) => {
                if p.curve != EllipticCurve::Ed25519 {
                    return Err(format!("unsupported OKP curve {:?}", p.curve));
                }
                match declared {
                    None | Some(Algorithm::EdDSA) => vec![Algorithm::EdDSA],
                    Some(a) => return Err(format!("alg {a:?} does not fit an OKP key")),
                }
            }
            AlgorithmParameters::OctetKey(_) => match declared {
                Some(a @ (Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)) => vec![a],
                Some(a) => return Err(format!("alg {a:?} does not fit an oct key")),
                None => return Err("oct keys need an \"alg\"".to_owned()),
            },
            _ => return Err("unsupported key type".to_owned()),
        };
        if matches!(
            jwk.common.key_algorithm,
            Some(KeyAlgorithm::UNKNOWN_ALGORITHM)
        ) {
            return Err("unknown alg".to_owned());
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
        Ok(KeySpec {
            kid: jwk.common.key_id.clone(),
            algorithms,
            key: VerifyKey::Jwt(key),
            audiences: Vec::new(),
        })
    }
}

impl KeySpec {
    /// This key also accepts tokens for `audiences`.
    pub fn with_audiences(mut self, audiences: Vec<String>) -> KeySpec {
        self.audiences = audiences;
        self
    }
}

/// Parses a JWKS document `{"keys":[…]}`. With `strict`, any unusable key is an error (inline
/// configuration); otherwise unusable keys are skipped with a warning (remote documents often
/// carry keys for other purposes, e.g. encryption).
pub fn parse_key_set(doc: &serde_json::Value, strict: bool) -> Result<Vec<KeySpec>, JwksError> {
    let keys = doc
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or(JwksError::NotAKeySet)?;
    let mut out = Vec::with_capacity(keys.len());
    for (index, key) in keys.iter().enumerate() {
        match KeySpec::from_jwk_value(key) {
            Ok(spec) => out.push(spec),
            Err(reason) if strict => return Err(JwksError::InvalidKey { index, reason }),
            Err(reason) => tracing::warn!(index, %reason, "skipping unusable JWKS key"),
        }
    }
    Ok(out)
}

/// Fetches and parses a remote JWKS document.
pub(crate) async fn fetch_key_set(
    client: &super::fetch::JwksClient,
    uri: &str,
) -> Result<Vec<KeySpec>, JwksError> {
    let doc = client.get(uri).await?;
    parse_key_set(&doc, false)
}
