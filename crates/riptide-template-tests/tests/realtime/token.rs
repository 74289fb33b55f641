//! PowerSync token issuance and refusal.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::app::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_users_get_a_short_eddsa_token() {
    let app = TestApp::start().await;
    let mut alice = app.signed_up("alice").await;
    let (s, body) = alice.get("/api/powersync/token").await;
    assert_eq!(s, 200, "{body}");
    let token = body["token"].as_str().unwrap();

    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some(app.keys.kid.as_str()));

    let jwk: Jwk = serde_json::from_value(app.keys.public_jwk.clone()).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["riptide"]);
    let data =
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &validation)
            .expect("the token verifies with the public JWK");
    let claims = data.claims;
    assert_eq!(claims["sub"], alice.id.as_str());
    assert_eq!(claims["aud"], "riptide");
    let iat = claims["iat"].as_u64().unwrap();
    let exp = claims["exp"].as_u64().unwrap();
    assert_eq!(exp - iat, 300, "5 minutes");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(iat.abs_diff(now) < 60);
    let expires_at = body["expires_at"].as_str().unwrap();
    assert!(
        expires_at.ends_with('Z') && expires_at.contains('T'),
        "{expires_at}"
    );

    // Another key does not verify it.
    let other = crate::app::Keys::generate();
    let jwk: Jwk = serde_json::from_value(other.public_jwk).unwrap();
    assert!(
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &validation)
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_without_a_valid_session() {
    let app = TestApp::start().await;
    let (s, body) = app.user().get("/api/powersync/token").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let mut forged = app.user();
    forged.cookie = Some("session=not-a-real-session-token".into());
    let (s, _) = forged.get("/api/powersync/token").await;
    assert_eq!(s, 401);
    forged.cookie = Some("session=".into());
    let (s, _) = forged.get("/api/powersync/token").await;
    assert_eq!(s, 401);
    // An ended session.
    let mut alice = app.signed_up("alice").await;
    let cookie = alice.cookie.clone();
    alice.post("/api/auth/logout", serde_json::json!({})).await;
    alice.cookie = cookie;
    let (s, _) = alice.get("/api/powersync/token").await;
    assert_eq!(s, 401);
}
