//! Accounts, sessions, CSRF checks and the sign-in rate limit (more limits in `limits.rs`).

use serde_json::json;

use crate::app::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_login_logout_me_and_lookup() {
    let app = TestApp::start().await;
    let mut alice = app.signed_up("alice").await;
    let cookie = alice
        .cookie
        .clone()
        .expect("signup sets the session cookie");

    // The cookie's attributes.
    let mut fresh = app.user();
    let req = fresh
        .request(reqwest::Method::POST, "/api/auth/login")
        .json(&json!({"username": "alice", "password": "correct horse"}));
    let (s, body, headers) = fresh.send(req).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["user"]["username"], "alice");
    assert_eq!(body["user"]["id"], alice.id.as_str());
    let set_cookie = headers["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["session=", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain http: {set_cookie}");

    let (s, body) = alice.get("/api/auth/me").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["user"]["username"], "alice");

    // Lookup by username, signed in.
    let _bob = app.signed_up("bob").await;
    let (s, body) = alice.get("/api/users/by-username/bob").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["user"]["username"], "bob");
    let (s, body) = alice.get("/api/users/by-username/nobody").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("user_not_found"))
    );
    let (s, body) = app.user().get("/api/users/by-username/bob").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );

    // Duplicate username, bad username, short password.
    let (s, body) = app
        .user()
        .post(
            "/api/auth/signup",
            json!({"username": "alice", "password": "another pw"}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (409, Some("username_taken"))
    );
    let (s, _) = app
        .user()
        .post(
            "/api/auth/signup",
            json!({"username": "Al ice", "password": "long enough"}),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = app
        .user()
        .post(
            "/api/auth/signup",
            json!({"username": "carol", "password": "short"}),
        )
        .await;
    assert_eq!(s, 400);

    // Wrong password, unknown user.
    let (s, body) = app
        .user()
        .post(
            "/api/auth/login",
            json!({"username": "alice", "password": "wrong password"}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    let (s, body) = app
        .user()
        .post(
            "/api/auth/login",
            json!({"username": "nobody", "password": "wrong password"}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("invalid_credentials"))
    );

    // Logout ends the session server-side: the old cookie no longer works.
    let (s, _) = alice.post("/api/auth/logout", json!({})).await;
    assert_eq!(s, 204);
    assert_eq!(alice.cookie, None, "the cookie is cleared");
    alice.cookie = Some(cookie);
    let (s, body) = alice.get("/api/auth/me").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );

    // Passwords are stored as argon2 hashes, session tokens only as hashes.
    let hash: String = app
        .query_one("SELECT password_hash FROM users WHERE username = 'alice'")
        .await
        .get(0);
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert_eq!(
        app.count("SELECT count(*) FROM sessions WHERE octet_length(token_sha256) <> 32")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_are_rate_limited() {
    let app = TestApp::start().await;
    app.signed_up("alice").await;
    for _ in 0..5 {
        let (s, _) = app
            .user()
            .post(
                "/api/auth/login",
                json!({"username": "alice", "password": "guess guess"}),
            )
            .await;
        assert_eq!(s, 401);
    }
    // Even the right password is refused now.
    let mut c = app.user();
    let req = c
        .request(reqwest::Method::POST, "/api/auth/login")
        .json(&json!({"username": "alice", "password": "correct horse"}));
    let (s, body, headers) = c.send(req).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 15 * 60);
    assert_eq!(c.cookie, None);
    // Another username is not affected.
    app.signed_up("bob").await;
    let (s, _) = app
        .user()
        .post(
            "/api/auth/login",
            json!({"username": "bob", "password": "correct horse"}),
        )
        .await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changing_requests_need_json_and_a_same_site_origin() {
    let app = TestApp::start().await;
    let mut alice = app.signed_up("alice").await;
    let login = json!({"username": "alice", "password": "correct horse"});

    // A cross-site origin.
    let req = alice
        .request(reqwest::Method::POST, "/api/auth/login")
        .header("origin", "http://evil.example")
        .json(&login);
    let (s, body, _) = alice.send(req).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("cross_origin")),
        "{body}"
    );
    let req = alice
        .request(reqwest::Method::POST, "/api/sync")
        .header("origin", "http://evil.example")
        .json(&json!({"batch": []}));
    let (s, _, _) = alice.send(req).await;
    assert_eq!(s, 403);

    // The same origin, or the host a proxy forwarded.
    let host = app.base.trim_start_matches("http://").to_owned();
    let req = alice
        .request(reqwest::Method::POST, "/api/auth/login")
        .header("origin", format!("http://{host}"))
        .json(&login);
    let (s, body, _) = alice.send(req).await;
    assert_eq!(s, 200, "{body}");
    let req = alice
        .request(reqwest::Method::POST, "/api/auth/login")
        .header("origin", "http://localhost:5173")
        .header("x-forwarded-host", "localhost:5173")
        .json(&login);
    let (s, body, _) = alice.send(req).await;
    assert_eq!(s, 200, "{body}");

    // Not JSON: a form post or text/plain.
    for content_type in ["application/x-www-form-urlencoded", "text/plain"] {
        let req = alice
            .request(reqwest::Method::POST, "/api/auth/login")
            .header("content-type", content_type)
            .body(login.to_string());
        let (s, body, _) = alice.send(req).await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (415, Some("unsupported_media_type")),
            "{content_type}"
        );
    }
    let req = alice.request(reqwest::Method::POST, "/api/auth/logout");
    let (s, _, _) = alice.send(req).await;
    assert_eq!(s, 415, "logout without a content type");
    let (s, _) = alice.get("/api/auth/me").await;
    assert_eq!(s, 200, "the refused logout did nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_unknown_api_routes() {
    let app = TestApp::start().await;
    let (s, body) = app.user().get("/api/health").await;
    assert_eq!((s, body), (200, json!({"ok": true})));
    let (s, body) = app.user().get("/api/nope").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_spraying_from_one_address_is_rate_limited() {
    let app = TestApp::start().await;
    app.signed_up("alice").await;
    // 50 failures over 25 usernames (2 each: under the per-username limit).
    for i in 0..50 {
        let (s, _) = app
            .user()
            .post(
                "/api/auth/login",
                json!({"username": format!("user{}", i / 2), "password": "password1"}),
            )
            .await;
        assert_eq!(s, 401, "attempt {i}");
    }
    let (s, body) = app
        .user()
        .post(
            "/api/auth/login",
            json!({"username": "alice", "password": "correct horse"}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (429, Some("rate_limited"))
    );
    // Without TRUSTED_PROXIES, X-Forwarded-For is the client's own word: it changes nothing
    // (limits.rs has the trusted-proxy cases).
    let mut c = app.user();
    let req = c
        .request(reqwest::Method::POST, "/api/auth/login")
        .header("x-forwarded-for", "203.0.113.7")
        .json(&json!({"username": "alice", "password": "correct horse"}));
    let (s, body, _) = c.send(req).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
}
