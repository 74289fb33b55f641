//! An Ed25519 signing key for tests, its JWKS, and tokens signed with it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{EncodePrivateKey, KeypairBytes};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A signing key with a `kid`, as a sync service's `client_auth.jwks` would list it.
#[derive(Clone)]
pub struct TestKeys {
    pub kid: String,
    pub audience: String,
    signing: SigningKey,
}

impl std::fmt::Debug for TestKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKeys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TestKeys {
    pub fn generate() -> TestKeys {
        let signing = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        TestKeys {
            kid: format!("test-{:08x}", rand::random::<u32>()),
            audience: "riptide-test".into(),
            signing,
        }
    }

    /// The same key under another `kid` (e.g. to impersonate a configured key id).
    pub fn with_kid(mut self, kid: impl Into<String>) -> TestKeys {
        self.kid = kid.into();
        self
    }

    /// The public key as a JWK (`kty: OKP`, `crv: Ed25519`, `alg: EdDSA`).
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.signing.verifying_key().as_bytes()),
        })
    }

    /// `{"keys": [jwk]}`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk()] })
    }

    /// The private key as PKCS#8 v1 DER, base64 (what `POWERSYNC_SIGNING_KEY` holds).
    pub fn private_key_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.pkcs8_der())
    }

    fn pkcs8_der(&self) -> Vec<u8> {
        let kp = KeypairBytes {
            secret_key: self.signing.to_bytes(),
            public_key: None,
        };
        kp.to_pkcs8_der()
            .expect("Ed25519 key encodes as PKCS#8")
            .as_bytes()
            .to_vec()
    }

    /// A token for `sub` valid for `ttl_secs`, with extra claims merged in.
    pub fn token(&self, sub: &str, ttl_secs: i64, extra: Value) -> String {
        let now = now();
        let mut claims = json!({
            "sub": sub,
            "aud": self.audience,
            "iat": now,
            "exp": now + ttl_secs,
        });
        if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
            c.extend(e);
        }
        self.sign(&claims)
    }

    /// Signs arbitrary claims (for malformed-token tests).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_ed_der(&self.pkcs8_der()),
        )
        .expect("claims sign")
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, jwk::Jwk};

    #[test]
    fn token_verifies_with_its_jwk() {
        let keys = TestKeys::generate();
        let token = keys.token("u1", 300, json!({"parameters": {"team": "a"}}));
        let jwk: Jwk = serde_json::from_value(keys.jwk()).unwrap();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[keys.audience.as_str()]);
        let data = jsonwebtoken::decode::<Value>(
            &token,
            &DecodingKey::from_jwk(&jwk).unwrap(),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "u1");
        assert_eq!(data.claims["parameters"]["team"], "a");
    }
}
