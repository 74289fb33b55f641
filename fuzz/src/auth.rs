//! JWTs (as the `Authorization` header or SETUP's `token` carries them) and JWKS documents.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use riptide_service::KeyStore;
use riptide_service::auth::KeySpec;
use riptide_service::auth::VerifyKey;

const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-secret!";
const AUDIENCE: &str = "fuzz-audience";
const LEEWAY_SECS: i64 = 60;
const MAX_LIFETIME_SECS: i64 = 86_400;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

fn store() -> &'static KeyStore {
    static STORE: OnceLock<KeyStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let key = KeySpec {
            kid: Some("k1".into()),
            algorithms: vec![Algorithm::HS256],
            key: VerifyKey::Jwt(DecodingKey::from_secret(SECRET)),
            audiences: Vec::new(),
        };
        KeyStore::from_keys(vec![key], vec![AUDIENCE.into()])
    })
}

/// Selector even: the bytes are the token. Odd: the bytes are the claims, signed with the
/// store's key, so the claim checks are reached. A token that verifies has a non-empty user,
/// an `exp` not past (within the leeway), an `iat` not in the future, and a bounded lifetime.
pub fn jwt(data: &[u8]) {
    let Some((sel, bytes)) = crate::selector(data) else {
        return;
    };
    let token = if sel & 1 == 0 {
        match crate::text(bytes) {
            Some(t) => t.to_owned(),
            None => return,
        }
    } else {
        let Ok(claims) = serde_json::from_slice::<serde_json::Value>(bytes) else {
            return;
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        match jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET)) {
            Ok(t) => t,
            Err(_) => return,
        }
    };
    let before = unix_now();
    let Ok(verified) = runtime().block_on(store().verify(&token)) else {
        return;
    };
    let after = unix_now();
    assert!(!verified.user_id.is_empty(), "empty sub accepted");
    assert!(
        verified.expires_at + LEEWAY_SECS >= before,
        "expired token accepted"
    );
    assert!(
        verified.issued_at <= after + LEEWAY_SECS,
        "future iat accepted"
    );
    assert!(
        verified.expires_at.saturating_sub(verified.issued_at) <= MAX_LIFETIME_SECS,
        "lifetime over the maximum accepted"
    );
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A JWKS document, strict (inline configuration) and lenient (remote): typed errors; in
/// lenient mode every key that parses alone is kept.
pub fn jwks(data: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let strict = riptide_service::auth::parse_key_set(&doc, true);
    let lenient = riptide_service::auth::parse_key_set(&doc, false);
    if let Ok(keys) = &strict {
        let lenient = lenient
            .as_ref()
            .expect("lenient accepts what strict accepts");
        assert_eq!(keys.len(), lenient.len());
    }
    if let Some(keys) = doc.get("keys").and_then(serde_json::Value::as_array) {
        let usable = keys
            .iter()
            .filter(|k| KeySpec::from_jwk_value(k).is_ok())
            .count();
        let lenient = lenient.expect("a keys array parses leniently");
        assert_eq!(lenient.len(), usable);
    }
}
