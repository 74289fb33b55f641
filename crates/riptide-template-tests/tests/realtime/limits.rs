//! The process's limits on what clients send (`app_server::limits`): body sizes, credential
//! lengths, sign-up rate, bounded hashing, client addresses from trusted proxies only, a
//! lockout that cannot be aimed at a victim, a bounded counter table — and the auth routes
//! under a flood.

use std::time::{Duration, Instant};

use app_server::auth::client_ip::TrustedProxies;
use serde_json::{Value, json};

use crate::app::{Client, TestApp};

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn creds(username: &str, password: &str) -> Value {
    json!({"username": username, "password": password})
}

/// An app behind a proxy on 127.0.0.1 (the tests' own address).
async fn behind_proxy(adjust: impl FnOnce(&mut app_server::Config)) -> TestApp {
    TestApp::start_with(|config| {
        config.trusted_proxies = TrustedProxies::parse("127.0.0.1").unwrap();
        adjust(config);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_bodies_and_credentials_are_capped() {
    let app = TestApp::start().await;
    let padding = "x".repeat(5000);
    for route in ["/api/auth/signup", "/api/auth/login"] {
        let (s, body) = app
            .user()
            .post(
                route,
                json!({"username": "alice", "password": "correct horse", "pad": padding}),
            )
            .await;
        assert_eq!((s, code(&body)), (413, "payload_too_large"), "{route}");
    }
    // A chunked body (no Content-Length) is cut off at the limit too.
    let (status, body) = chunked_post(&app.base, "/api/auth/login", 10, 1000).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");

    // Length caps, on both routes.
    let long_name = "a".repeat(33);
    let long_password = "p".repeat(257);
    for (route, username, password) in [
        ("/api/auth/signup", long_name.as_str(), "correct horse"),
        ("/api/auth/login", long_name.as_str(), "correct horse"),
        ("/api/auth/signup", "alice", long_password.as_str()),
        ("/api/auth/login", "alice", long_password.as_str()),
    ] {
        let (s, body) = app.user().post(route, creds(username, password)).await;
        assert_eq!((s, code(&body)), (400, "invalid_request"), "{route}");
    }
    // At the caps: accepted.
    let at_cap = "p".repeat(256);
    let (s, body) = app
        .user()
        .post("/api/auth/signup", creds(&"b".repeat(32), &at_cap))
        .await;
    assert_eq!(s, 201, "{body}");
    let (s, body) = app
        .user()
        .post("/api/auth/login", creds(&"b".repeat(32), &at_cap))
        .await;
    assert_eq!(s, 200, "{body}");
    // The upload route keeps its own, larger limit.
    let mut alice = app.signed_up("alice").await;
    let big = json!({"batch": [], "pad": "z".repeat(1024 * 1024)});
    let (s, body) = alice.post("/api/sync", big).await;
    assert_eq!((s, code(&body)), (413, "payload_too_large"), "{body}");
    let (s, body) = alice
        .post("/api/sync", json!({"batch": [], "pad": padding}))
        .await;
    assert_eq!(s, 200, "{body}");
}

/// `POST path` with a chunked body of `chunks` chunks of `size` bytes, over a raw connection;
/// the status and the response text.
async fn chunked_post(base: &str, path: &str, chunks: usize, size: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..chunks {
        let chunk = format!("{size:x}\r\n{}\r\n", "y".repeat(size));
        // The server may answer and close before reading everything.
        if tcp.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = tcp.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_are_rate_limited_per_address() {
    let app = behind_proxy(|config| config.limits.signups_per_ip = 3).await;
    for i in 0..3 {
        let (s, body) = app
            .user_at("203.0.113.7")
            .post(
                "/api/auth/signup",
                creds(&format!("user{i}"), "correct horse"),
            )
            .await;
        assert_eq!(s, 201, "{body}");
    }
    // A taken name counts too (it was hashed).
    let mut c = app.user_at("203.0.113.7");
    let req = c
        .request(reqwest::Method::POST, "/api/auth/signup")
        .json(&creds("user9", "correct horse"));
    let (s, body, headers) = c.send(req).await;
    assert_eq!((s, code(&body)), (429, "rate_limited"), "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 3600, "{retry}");
    assert_eq!(
        app.count("SELECT count(*) FROM users WHERE username = 'user9'")
            .await,
        0
    );
    // Another address signs up.
    let (s, body) = app
        .user_at("198.51.100.1")
        .post("/api/auth/signup", creds("user9", "correct horse"))
        .await;
    assert_eq!(s, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    // No trusted proxy: the header is the client's word and changes nothing.
    let app = TestApp::start_with(|config| config.limits.failures_per_ip = 4).await;
    app.signed_up("alice").await;
    for i in 0..4 {
        let (s, _) = app
            .user_at(&format!("203.0.113.{i}"))
            .post(
                "/api/auth/login",
                creds(&format!("nobody{i}"), "guess guess"),
            )
            .await;
        assert_eq!(s, 401);
    }
    let (s, body) = app
        .user_at("198.51.100.77")
        .post("/api/auth/login", creds("alice", "correct horse"))
        .await;
    assert_eq!(
        (s, code(&body)),
        (429, "rate_limited"),
        "a forged header does not escape the address limit"
    );

    // Behind a trusted proxy each forwarded client has its own count.
    let app = behind_proxy(|config| config.limits.failures_per_ip = 4).await;
    app.signed_up("alice").await;
    for i in 0..4 {
        let (s, _) = app
            .user_at("203.0.113.5")
            .post(
                "/api/auth/login",
                creds(&format!("nobody{i}"), "guess guess"),
            )
            .await;
        assert_eq!(s, 401);
    }
    let (s, _) = app
        .user_at("203.0.113.5")
        .post("/api/auth/login", creds("alice", "correct horse"))
        .await;
    assert_eq!(s, 429);
    let (s, body) = app
        .user_at("198.51.100.77")
        .post("/api/auth/login", creds("alice", "correct horse"))
        .await;
    assert_eq!(s, 200, "{body}");
    // A client's own entries left of the proxy's do not count either.
    let (s, _) = app
        .user_at("198.51.100.77, 203.0.113.5")
        .post("/api/auth/login", creds("alice", "correct horse"))
        .await;
    assert_eq!(s, 429, "the proxy appended 203.0.113.5: that is the client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockout_cannot_be_aimed_at_a_victim() {
    let app = behind_proxy(|_| {}).await;
    app.signed_up("alice").await;
    let attacker = "203.0.113.66";
    for _ in 0..5 {
        let (s, _) = app
            .user_at(attacker)
            .post("/api/auth/login", creds("alice", "wrong guess"))
            .await;
        assert_eq!(s, 401);
    }
    // The attacker's address is locked out of alice, even with her password.
    let (s, body) = app
        .user_at(attacker)
        .post("/api/auth/login", creds("alice", "correct horse"))
        .await;
    assert_eq!((s, code(&body)), (429, "rate_limited"), "{body}");
    // Alice, from her own address, is not.
    let mut alice = app.user_at("192.0.2.10");
    let (s, body) = alice
        .post("/api/auth/login", creds("alice", "correct horse"))
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, _) = alice.get("/api/auth/me").await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counter_table_is_bounded() {
    let app = behind_proxy(|config| config.limits.tracked_keys = 40).await;
    for i in 0..60 {
        let (s, _) = app
            .user_at(&format!("203.0.113.{i}"))
            .post("/api/auth/login", creds("nobody", "guess guess"))
            .await;
        assert_eq!(s, 401);
    }
    assert_eq!(
        app.state.limiter().tracked(),
        40,
        "least recently used evicted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_hashing_is_bounded() {
    let app = behind_proxy(|config| {
        config.limits.concurrent_hashes = 2;
        config.limits.signups_per_ip = 100;
    })
    .await;
    let signups = (0..12).map(|i| {
        let mut c = app.user_at("203.0.113.9");
        async move {
            c.post(
                "/api/auth/signup",
                creds(&format!("user{i}"), "correct horse"),
            )
            .await
        }
    });
    for (s, body) in join_all(signups).await {
        assert_eq!(s, 201, "{body}");
    }
    let peak = app.state.hasher().peak();
    assert!((1..=2).contains(&peak), "{peak} hashes at once");

    // A queue that is full, or a wait that is too long, answers 503 busy.
    let app = behind_proxy(|config| {
        config.limits.concurrent_hashes = 1;
        config.limits.hash_queue = 1;
        config.limits.signups_per_ip = 100;
    })
    .await;
    let signups = (0..8).map(|i| {
        let mut c = app.user_at("203.0.113.9");
        async move {
            let req = c
                .request(reqwest::Method::POST, "/api/auth/signup")
                .json(&creds(&format!("user{i}"), "correct horse"));
            c.send(req).await
        }
    });
    let results = join_all(signups).await;
    let busy: Vec<_> = results.iter().filter(|(s, _, _)| *s == 503).collect();
    assert!(
        !busy.is_empty(),
        "8 at once through 1 slot and 1 queue place"
    );
    for (s, body, headers) in &results {
        assert!(*s == 201 || *s == 503, "{s} {body}");
        if *s == 503 {
            assert_eq!(code(body), "busy");
            assert_eq!(headers["retry-after"], "1");
        }
    }
}

/// Runs the futures as tasks, all at once; their outputs in order.
async fn join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// The resident memory of this test process (nextest runs each test in its own).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_routes_under_a_flood() {
    let app = behind_proxy(|config| {
        config.limits.concurrent_hashes = 2;
        config.limits.failures_per_ip = 20;
        config.limits.signups_per_ip = 5;
        config.limits.tracked_keys = 500;
    })
    .await;
    app.signed_up("alice").await;
    let before = rss_bytes();

    // Three attacker addresses, 64 requests in flight at a time: guesses over many usernames,
    // sign-ups, oversized bodies and over-long passwords.
    let attackers = ["203.0.113.1", "203.0.113.2", "203.0.113.3"];
    let flood = {
        // No connection reuse: a connection closed after a 413 is not picked up again.
        let base = Client {
            http: riptide_testkit::http_builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            ..app.user()
        };
        tokio::spawn(async move {
            let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
            for wave in 0..20 {
                let requests = (0..64).map(|i| {
                    let c = Client {
                        forwarded_for: Some(attackers[i % 3].to_owned()),
                        ..base.clone()
                    };
                    async move {
                        let body = match i % 4 {
                            0 => json!({"username": format!("u{wave}x{i}"), "password": "guess guess"}),
                            1 => json!({"username": format!("s{wave}x{i}"), "password": "new password"}),
                            2 => json!({"username": "alice", "pad": "x".repeat(64 * 1024)}),
                            _ => json!({"username": "alice", "password": "p".repeat(300)}),
                        };
                        let route = if i % 4 == 1 { "/api/auth/signup" } else { "/api/auth/login" };
                        // An oversized body may be answered (413) and the connection closed
                        // before the client has sent it all: status 0.
                        let req = c.request(reqwest::Method::POST, route).json(&body);
                        match req.send().await {
                            Ok(resp) => resp.status().as_u16(),
                            Err(_) if i % 4 == 2 => 0,
                            Err(err) => panic!("{err}"),
                        }
                    }
                });
                for s in join_all(requests).await {
                    *statuses.entry(s).or_default() += 1;
                }
            }
            statuses
        })
    };

    // Meanwhile alice signs in from her own address (retrying while the service is busy).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut alice = app.user_at("192.0.2.10");
    loop {
        let (s, body) = alice
            .post("/api/auth/login", creds("alice", "correct horse"))
            .await;
        if s == 200 {
            break;
        }
        assert_eq!((s, code(&body)), (503, "busy"), "{body}");
        assert!(Instant::now() < deadline, "alice never got in");
    }
    let statuses = flood.await.unwrap();
    eprintln!("flood answers by status: {statuses:?}");
    assert_eq!(statuses.values().sum::<u32>(), 20 * 64);
    let oversized = statuses.get(&413).unwrap_or(&0) + statuses.get(&0).unwrap_or(&0);
    assert_eq!(oversized, 20 * 16, "{statuses:?}");
    assert!(statuses.get(&429).is_some_and(|n| *n > 0));
    for s in statuses.keys() {
        assert!(
            [0, 400, 401, 201, 413, 429, 503].contains(s),
            "{statuses:?}"
        );
    }

    // Bounded: the counters, the hashes at once, and the memory.
    assert!(app.state.limiter().tracked() <= 500);
    assert!(app.state.hasher().peak() <= 2);
    let grown = rss_bytes().saturating_sub(before);
    eprintln!("resident memory grew by {} MiB", grown / (1024 * 1024));
    // Two hashing threads' working memory (2 × 19 MiB) and buffers. (Before the threads kept
    // their memory, glibc's heaps grew by over 300 MiB in this test.)
    assert!(grown < 100 * 1024 * 1024, "grew by {grown} bytes");

    // After the flood, alice signs in at once from anywhere but the attackers' addresses.
    let (s, body) = app
        .user_at("192.0.2.11")
        .post("/api/auth/login", creds("alice", "correct horse"))
        .await;
    assert_eq!(s, 200, "{body}");
}
