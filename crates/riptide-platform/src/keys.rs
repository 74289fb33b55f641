//! The secrets of a sync instance: an Ed25519 signing key pair (the app signs client tokens with
//! the private JWK; the service trusts the public one) and the admin API token.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};

/// A fresh Ed25519 key pair with its `kid`.
pub struct KeyPair {
    pub kid: String,
    signing: SigningKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    pub fn generate() -> KeyPair {
        KeyPair {
            kid: format!("riptide-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff),
            signing: SigningKey::from_bytes(&rand::random::<[u8; 32]>()),
        }
    }

    /// The public JWK the service trusts.
    pub fn public_jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.signing.verifying_key().as_bytes()),
        })
    }

    /// base64 (standard alphabet) of the JSON private JWK: `POWERSYNC_SIGNING_KEY`.
    pub fn private_jwk_base64(&self) -> String {
        let mut jwk = self.public_jwk();
        jwk["d"] = Value::String(URL_SAFE_NO_PAD.encode(self.signing.to_bytes()));
        STANDARD.encode(jwk.to_string())
    }
}

/// The public JWK matching a `POWERSYNC_SIGNING_KEY` value (its `d` removed).
pub fn public_jwk_of(private_base64: &str) -> Option<Value> {
    let bytes = STANDARD
        .decode(private_base64.trim())
        .or_else(|_| URL_SAFE_NO_PAD.decode(private_base64.trim().trim_end_matches('=')))
        .ok()?;
    let mut jwk: Value = serde_json::from_slice(&bytes).ok()?;
    jwk.as_object_mut()?.remove("d")?;
    Some(jwk)
}

/// A fresh admin API token: 32 random bytes, hex.
pub fn api_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_jwk_round_trips_to_the_public_one() {
        let k = KeyPair::generate();
        let private = k.private_jwk_base64();
        let decoded: Value = serde_json::from_slice(&STANDARD.decode(&private).unwrap()).unwrap();
        assert_eq!(decoded["kid"], k.kid.as_str());
        assert_eq!(decoded["d"].as_str().unwrap().len(), 43);
        assert_eq!(public_jwk_of(&private).unwrap(), k.public_jwk());
    }
}
