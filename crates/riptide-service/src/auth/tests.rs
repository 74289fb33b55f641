//! Verification rules, one bad-token class per test, for Ed25519 (JWKS with kid), RS256 (fixed
//! PEM, JWK without kid) and HS256 keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use riptide_protocol::ErrorCode;
use riptide_testkit::TestKeys;
use serde_json::{Value, json};

use super::*;

const RSA_PEM: &str = include_str!("testdata/rsa_private.pem");
const RSA_N: &str = include_str!("testdata/rsa_n.txt");
const HS_SECRET: &[u8] = b"a-test-secret-of-sufficient-length!!";
const AUD: &str = "riptide-test";

fn now() -> i64 {
    keystore::unix_secs(SystemTime::now())
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "aud": AUD, "iat": now(), "exp": now() + 300})
}

fn rsa_jwk() -> Value {
    json!({"kty": "RSA", "n": RSA_N.trim(), "e": "AQAB", "alg": "RS256"})
}

fn hs_jwk() -> Value {
    json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(HS_SECRET), "alg": "HS256", "kid": "hs"})
}

fn store(keys: &TestKeys) -> KeyStore {
    KeyStore::new(AuthConfig {
        jwks: Some(json!({"keys": [keys.jwk(), rsa_jwk(), hs_jwk()]})),
        audience: vec![AUD.to_owned()],
        ..AuthConfig::default()
    })
    .unwrap()
}

fn rs256(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

fn hs256(claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(HS_SECRET)).unwrap()
}

async fn code(store: &KeyStore, token: &str) -> ErrorCode {
    store.verify(token).await.unwrap_err().code()
}

#[tokio::test]
async fn accepts_each_key_type() {
    let keys = TestKeys::generate();
    let store = store(&keys);
    let t = store
        .verify(&keys.token("u1", 300, json!({})))
        .await
        .unwrap();
    assert_eq!(t.user_id, "u1");
    let t = store.verify(&rs256(&claims("u2"))).await.unwrap();
    assert_eq!(t.user_id, "u2");
    let t = store
        .verify(&hs256(&claims("u3"), Some("hs")))
        .await
        .unwrap();
    assert_eq!(t.user_id, "u3");
}

#[tokio::test]
async fn numeric_sub_array_aud_and_parameters() {
    let keys = TestKeys::generate();
    let store = store(&keys);
    let token = keys.sign(&json!({
        "sub": 42, "aud": ["other", AUD], "iat": now(), "exp": now() + 60,
        "parameters": {"team": "t1"}
    }));
    let t = store.verify(&token).await.unwrap();
    assert_eq!(t.user_id, "42");
    assert_eq!(t.claims["parameters"]["team"], "t1");
}

#[tokio::test]
async fn bad_signature_is_s2102() {
    let keys = TestKeys::generate();
    let mut impostor = TestKeys::generate();
    impostor.kid = keys.kid.clone();
    assert_eq!(
        code(&store(&keys), &impostor.token("u", 300, json!({}))).await,
        ErrorCode::S2102
    );
    // Tampered payload.
    let token = keys.token("u", 300, json!({}));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(claims("admin").to_string());
    assert_eq!(
        code(&store(&keys), &parts.join(".")).await,
        ErrorCode::S2102
    );
}

#[tokio::test]
async fn expiry_and_leeway() {
    let keys = TestKeys::generate();
    let store = store(&keys);
    let expired =
        keys.sign(&json!({"sub": "u", "aud": AUD, "iat": now() - 600, "exp": now() - 120}));
    assert_eq!(code(&store, &expired).await, ErrorCode::S2103);
    let in_leeway =
        keys.sign(&json!({"sub": "u", "aud": AUD, "iat": now() - 600, "exp": now() - 30}));
    assert!(store.verify(&in_leeway).await.is_ok());
}

#[tokio::test]
async fn lifetime_over_a_day_is_s2104() {
    let keys = TestKeys::generate();
    let token = keys.sign(&json!({"sub": "u", "aud": AUD, "iat": now(), "exp": now() + 86_401}));
    assert_eq!(code(&store(&keys), &token).await, ErrorCode::S2104);
    let token = keys.sign(&json!({"sub": "u", "aud": AUD, "iat": now(), "exp": now() + 86_400}));
    assert!(store(&keys).verify(&token).await.is_ok());
}

#[tokio::test]
async fn audience_is_s2105() {
    let keys = TestKeys::generate();
    let store = store(&keys);
    let missing = keys.sign(&json!({"sub": "u", "iat": now(), "exp": now() + 60}));
    assert_eq!(code(&store, &missing).await, ErrorCode::S2105);
    let wrong = keys.sign(&json!({"sub": "u", "aud": "x", "iat": now(), "exp": now() + 60}));
    assert_eq!(code(&store, &wrong).await, ErrorCode::S2105);
    let wrong_list =
        keys.sign(&json!({"sub": "u", "aud": ["x", 3], "iat": now(), "exp": now() + 60}));
    assert_eq!(code(&store, &wrong_list).await, ErrorCode::S2105);
    // No audience configured: every token fails.
    let none = KeyStore::new(AuthConfig {
        jwks: Some(keys.jwks()),
        ..AuthConfig::default()
    })
    .unwrap();
    assert_eq!(
        code(&none, &keys.token("u", 60, json!({}))).await,
        ErrorCode::S2105
    );
}

#[tokio::test]
async fn missing_claims_and_bad_parameters_are_s2101() {
    let keys = TestKeys::generate();
    let store = store(&keys);
    for c in [
        json!({"aud": AUD, "iat": now(), "exp": now() + 60}),
        json!({"sub": "u", "aud": AUD, "exp": now() + 60}),
        json!({"sub": "u", "aud": AUD, "iat": now()}),
        json!({"sub": "u", "aud": AUD, "iat": "yesterday", "exp": now() + 60}),
        json!({"sub": ["u"], "aud": AUD, "iat": now(), "exp": now() + 60}),
        json!({"sub": "u", "aud": AUD, "iat": now(), "exp": now() + 60, "parameters": [1]}),
        json!({"sub": "u", "aud": AUD, "iat": now(), "exp": now() + 60, "nbf": now() + 600}),
    ] {
        assert_eq!(code(&store, &keys.sign(&c)).await, ErrorCode::S2101, "{c}");
    }
}

#[tokio::test]
async fn unsigned_garbled_and_unknown_keys_are_s2101() {
    let keys = TestKeys::generate();
    let store = store(&keys);
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims("u").to_string());
    assert_eq!(
        code(&store, &format!("{header}.{payload}.")).await,
        ErrorCode::S2101
    );
    assert_eq!(
        code(&store, &format!("{header}.{payload}")).await,
        ErrorCode::S2101
    );
    for garbage in ["", "abc", "a.b.c", "....", "\u{1F600}.x.y"] {
        assert_eq!(code(&store, garbage).await, ErrorCode::S2101, "{garbage}");
    }
    // HS256 token naming the Ed25519 key's kid: the key is for another algorithm.
    let err = store
        .verify(&hs256(&claims("u"), Some(&keys.kid)))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::UnexpectedAlgorithm(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::S2101);
    // Unknown kid, and no key without kid for this algorithm.
    let stranger = TestKeys::generate();
    assert_eq!(
        store.verify(&stranger.token("u", 60, json!({}))).await,
        Err(AuthError::NoKey)
    );
    // HS256 without kid: only keys without kid are tried; the oct key has one.
    assert_eq!(
        store.verify(&hs256(&claims("u"), None)).await,
        Err(AuthError::NoKey)
    );
}

#[tokio::test]
async fn inline_jwks_rejects_unusable_keys() {
    for bad in [
        json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
        json!({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "ES256"}]}),
        json!({"keys": [{"kty": "foo"}]}),
        json!({"nokeys": []}),
    ] {
        assert!(
            KeyStore::new(AuthConfig {
                jwks: Some(bad.clone()),
                ..AuthConfig::default()
            })
            .is_err(),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn remote_jwks_fetched_on_unknown_kid_and_rate_limited() {
    let keys = TestKeys::generate();
    let hits = Arc::new(AtomicUsize::new(0));
    let jwks = keys.jwks();
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                axum::Json(jwks)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let store = KeyStore::new(AuthConfig {
        jwks_uri: vec![format!("http://{addr}/jwks")],
        audience: vec![AUD.to_owned()],
        ..AuthConfig::default()
    })
    .unwrap();
    let t = store.verify(&keys.token("u", 60, json!({}))).await.unwrap();
    assert_eq!(t.user_id, "u");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // Cached.
    store.verify(&keys.token("u", 60, json!({}))).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // An unknown kid refreshes at most once per interval.
    let stranger = TestKeys::generate();
    assert_eq!(
        store.verify(&stranger.token("u", 60, json!({}))).await,
        Err(AuthError::NoKey)
    );
    assert_eq!(
        store.verify(&stranger.token("u", 60, json!({}))).await,
        Err(AuthError::NoKey)
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn future_iat_backwards_lifetime_and_empty_sub_are_s2101() {
    let keys = TestKeys::generate();
    let store = store(&keys);
    let t = now();
    let bad = [
        (
            json!({"sub": "u", "aud": AUD, "iat": t + 3600, "exp": t + 3700}),
            "iat",
        ),
        (
            json!({"sub": "u", "aud": AUD, "iat": t + 30, "exp": t + 20}),
            "exp",
        ),
        (
            json!({"sub": "", "aud": AUD, "iat": t, "exp": t + 60}),
            "sub",
        ),
    ];
    for (claims, claim) in bad {
        assert_eq!(
            store.verify(&rs256(&claims)).await,
            Err(AuthError::InvalidClaim(claim)),
            "{claims}"
        );
    }
    // `iat` within the leeway ahead is clock skew, not an attack.
    let skewed = json!({"sub": "u", "aud": AUD, "iat": t + 30, "exp": t + 300});
    assert!(store.verify(&rs256(&skewed)).await.is_ok());
}

#[tokio::test]
async fn supabase_secret_accepts_authenticated_audience() {
    let secret = "super-secret-jwt-token-with-at-least-32-characters";
    let store = KeyStore::new(AuthConfig {
        supabase: SupabaseAuth {
            jwks_uri: None,
            jwt_secret: Some(secret.to_owned()),
        },
        ..AuthConfig::default()
    })
    .unwrap();
    let claims = json!({"sub": "u", "aud": "authenticated", "iat": now(), "exp": now() + 300});
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    assert_eq!(store.verify(&token).await.unwrap().user_id, "u");
    // Another audience is still refused.
    let other = json!({"sub": "u", "aud": "other", "iat": now(), "exp": now() + 300});
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &other,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    assert_eq!(store.verify(&token).await, Err(AuthError::BadAudience));
}

#[test]
fn supabase_jwks_uri_from_the_connection() {
    assert_eq!(
        supabase_jwks_uri("db.abcdefghij.supabase.co", "postgres").as_deref(),
        Some("https://abcdefghij.supabase.co/auth/v1/.well-known/jwks.json")
    );
    assert_eq!(
        supabase_jwks_uri(
            "aws-0-eu-central-1.pooler.supabase.com",
            "postgres.abcdefghij"
        )
        .as_deref(),
        Some("https://abcdefghij.supabase.co/auth/v1/.well-known/jwks.json")
    );
    assert_eq!(supabase_jwks_uri("localhost", "postgres"), None);
    assert_eq!(
        supabase_jwks_uri("db.evil.com/x.supabase.co", "postgres"),
        None
    );
}

#[tokio::test]
async fn jwks_hosts_on_refused_addresses_are_not_fetched() {
    let store = KeyStore::new(AuthConfig {
        jwks_uri: vec!["http://127.0.0.1:9/jwks".to_owned()],
        block_local_jwks: true,
        audience: vec![AUD.to_owned()],
        ..AuthConfig::default()
    })
    .unwrap();
    let err = store.refresh().await.unwrap_err();
    assert!(matches!(err, JwksError::RefusedAddress { .. }), "{err}");
    // A host name is resolved and its addresses checked before connecting.
    let by_name = KeyStore::new(AuthConfig {
        jwks_uri: vec!["http://localhost:9/jwks".to_owned()],
        jwks_reject_ip_ranges: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
        audience: vec![AUD.to_owned()],
        ..AuthConfig::default()
    })
    .unwrap();
    let err = by_name.refresh().await.unwrap_err();
    let chain = crate::error::error_chain(&err);
    assert!(chain.contains("refused addresses"), "{chain}");
    let err = KeyStore::new(AuthConfig {
        jwks_uri: vec!["http://example.invalid/jwks".to_owned()],
        jwks_reject_ip_ranges: vec!["nonsense".to_owned()],
        ..AuthConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, KeyStoreError::IpRanges(_)));
}

/// A fixed P-521 key pair (scalar 0x01…01) and ES512 tokens signed with it.
fn p521_key() -> p521::ecdsa::SigningKey {
    p521::ecdsa::SigningKey::from_slice(&[1u8; 66]).unwrap()
}

fn p521_jwk(kid: Option<&str>) -> Value {
    let point = p521::ecdsa::VerifyingKey::from(&p521_key()).to_encoded_point(false);
    let mut jwk = json!({
        "kty": "EC",
        "crv": "P-521",
        "alg": "ES512",
        "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
        "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
    });
    if let Some(kid) = kid {
        jwk["kid"] = json!(kid);
    }
    jwk
}

fn es512(claims: &Value, kid: Option<&str>) -> String {
    use p521::ecdsa::signature::Signer;
    let mut header = json!({"alg": "ES512", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature: p521::ecdsa::Signature = p521_key().sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

#[tokio::test]
async fn es512_keys_verify_es512_tokens() {
    let keys = TestKeys::generate();
    let store = KeyStore::new(AuthConfig {
        jwks: Some(json!({"keys": [keys.jwk(), p521_jwk(Some("p521"))]})),
        audience: vec![AUD.to_owned()],
        ..AuthConfig::default()
    })
    .unwrap();
    let t = store
        .verify(&es512(&claims("u"), Some("p521")))
        .await
        .unwrap();
    assert_eq!(t.user_id, "u");
    // Claims rules apply as for every algorithm.
    let expired = json!({"sub": "u", "aud": AUD, "iat": now() - 700, "exp": now() - 600});
    assert_eq!(
        store.verify(&es512(&expired, Some("p521"))).await,
        Err(AuthError::Expired)
    );
    // A tampered payload fails the signature.
    let token = es512(&claims("u"), Some("p521"));
    let mut parts: Vec<&str> = token.split('.').collect();
    let other = URL_SAFE_NO_PAD.encode(claims("admin").to_string());
    parts[1] = &other;
    assert_eq!(
        store.verify(&parts.join(".")).await,
        Err(AuthError::BadSignature)
    );
    // ES512 with the kid of an Ed25519 key.
    assert!(matches!(
        store.verify(&es512(&claims("u"), Some(&keys.kid))).await,
        Err(AuthError::UnexpectedAlgorithm(_))
    ));
    // No kid: keys without a kid are tried; there is none here.
    assert_eq!(
        store.verify(&es512(&claims("u"), None)).await,
        Err(AuthError::NoKey)
    );
    let kidless = KeyStore::new(AuthConfig {
        jwks: Some(json!({"keys": [p521_jwk(None)]})),
        audience: vec![AUD.to_owned()],
        ..AuthConfig::default()
    })
    .unwrap();
    assert!(kidless.verify(&es512(&claims("u"), None)).await.is_ok());
    // A P-521 JWK with another alg is a configuration error.
    let mut wrong = p521_jwk(None);
    wrong["alg"] = json!("ES256");
    assert!(KeySpec::from_jwk_value(&wrong).is_err());
}
