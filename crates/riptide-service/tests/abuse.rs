//! The abuse suite: hostile clients against the real server (`riptide_service::serve` on a
//! loopback port, with its header timeout, connection caps and deadlines made small). After
//! each attack, a client that was connected before it must still receive a new write.

use crate::support::{Harness, row};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use riptide_protocol::rsocket::{Frame, Payload, Setup, error_code};
use riptide_service::{AuthConfig, KeyStore, Limits, ServiceOptions};
use riptide_testkit::{SyncClient, SyncStream, TestKeys};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

/// Limits small enough for tests to wait on.
fn small_limits(o: &mut ServiceOptions) {
    o.limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        setup_timeout: Duration::from_millis(300),
        max_request_bytes: 1024 * 1024,
        ..Limits::default()
    };
}

/// The real server on a loopback port, stopped when dropped.
struct Server {
    addr: SocketAddr,
    cancel: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn serve(h: &Harness) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let state = h.state.clone();
    let c = cancel.clone();
    tokio::spawn(async move { riptide_service::serve(listener, state, c).await });
    Server { addr, cancel }
}

/// A stream opened before the attack, read to its first `checkpoint_complete`.
async fn live_client(h: &Harness, addr: SocketAddr) -> SyncStream {
    let client = SyncClient::new(format!("http://{addr}"), h.token("live"));
    let mut stream = client.stream(json!({"client_id": "live"})).await;
    stream.until("checkpoint_complete", WAIT).await;
    stream
}

/// Commits a row `id` and waits until the live stream has it.
async fn still_served(h: &mut Harness, live: &mut SyncStream, id: &str) {
    h.commit(vec![row("lists", id, "global[]")]).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = live
            .next_line(left)
            .await
            .expect("the live stream stays open");
        if line.get("data").is_some() && line.to_string().contains(id) {
            return;
        }
    }
}

/// `/metrics` as name → value (labels summed).
async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let text = riptide_testkit::http_get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    riptide_service::metrics::parse_exposition(&text)
        .get(name)
        .copied()
        .unwrap_or(0.0)
}

/// One BSON document nested `depth` deep (`{"": {"": …}}`, 7 bytes per level), built flat.
fn nested_bson(depth: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(depth * 7);
    for k in 0..depth - 1 {
        let len = u32::try_from(7 * (depth - 1 - k) + 5).unwrap();
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&[0x03, 0]);
    }
    out.extend_from_slice(&[5, 0, 0, 0, 0]);
    out.resize(out.len() + depth - 1, 0);
    out
}

fn deep_json(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn setup_frame(mime: &str, metadata: Bytes, lifetime_ms: u32) -> Frame {
    Frame::Setup(Setup {
        major_version: 1,
        minor_version: 0,
        keepalive_ms: 60_000,
        lifetime_ms,
        resume_token: None,
        lease: false,
        metadata_mime: mime.into(),
        data_mime: mime.into(),
        payload: Payload {
            metadata: Some(metadata),
            data: Bytes::new(),
        },
    })
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn ws(addr: SocketAddr) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{addr}/sync/stream"))
        .await
        .unwrap()
        .0
}

/// Frames until the socket closes (or `WAIT` passes: panics).
async fn frames_until_closed(ws: &mut Ws) -> Vec<Frame> {
    let mut frames = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("socket still open after {WAIT:?}: {frames:?}"),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return frames,
            Ok(Some(Ok(Message::Binary(b)))) => frames.push(Frame::decode(b).unwrap()),
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn connection_error(frames: &[Frame]) -> (u32, String) {
    frames
        .iter()
        .find_map(|f| match f {
            Frame::Error {
                stream_id: 0,
                code,
                message,
            } => Some((*code, message.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no connection ERROR in {frames:?}"))
}

#[tokio::test]
async fn deep_bson_and_json_are_refused_before_decoding() {
    let mut h = Harness::with(1, |o| {
        small_limits(o);
        o.limits.max_request_bytes = 8 * 1024 * 1024;
        // Scanning 7 MB in a debug build takes a while: not a SETUP timeout.
        o.limits.setup_timeout = Duration::from_secs(10);
    })
    .await;
    let server = serve(&h).await;
    let mut live = live_client(&h, server.addr).await;

    // A SETUP whose BSON metadata nests a million documents (7 MB): the crash of issue 11.
    let mut socket = ws(server.addr).await;
    let frame = setup_frame(
        "application/bson",
        Bytes::from(nested_bson(1_000_000)),
        90_000,
    );
    socket
        .send(Message::Binary(frame.to_bytes()))
        .await
        .unwrap();
    let (code, message) = connection_error(&frames_until_closed(&mut socket).await);
    assert_eq!(code, error_code::REJECTED_SETUP, "{message}");
    assert!(message.contains("PSYNC_S2001"), "{message}");
    assert!(message.contains("nested deeper than 64"), "{message}");

    // JSON metadata as deep: refused (the typed decoder stops at the first wrong type).
    let mut socket = ws(server.addr).await;
    let frame = setup_frame(
        "application/json",
        Bytes::from(deep_json(1_000_000)),
        90_000,
    );
    socket
        .send(Message::Binary(frame.to_bytes()))
        .await
        .unwrap();
    let (_, message) = connection_error(&frames_until_closed(&mut socket).await);
    assert!(message.starts_with("[PSYNC_S2001]"), "{message}");

    // A JSON request whose `parameters` (free-form JSON) nest a million levels: the stream is
    // refused by serde_json's recursion limit.
    let mut socket = ws(server.addr).await;
    let metadata = json!({"token": format!("Token {}", h.token("deep"))}).to_string();
    let frame = setup_frame("application/json", Bytes::from(metadata), 90_000);
    socket
        .send(Message::Binary(frame.to_bytes()))
        .await
        .unwrap();
    let body = format!("{{\"parameters\":{{\"a\":{}}}}}", deep_json(1_000_000));
    let request = Frame::RequestStream {
        stream_id: 1,
        initial_n: 10,
        follows: false,
        payload: Payload {
            metadata: Some(Bytes::from(json!({"path": "/sync/stream"}).to_string())),
            data: Bytes::from(body),
        },
    };
    socket
        .send(Message::Binary(request.to_bytes()))
        .await
        .unwrap();
    let frame = tokio::time::timeout(WAIT, socket.next()).await.unwrap();
    let Some(Ok(Message::Binary(b))) = frame else {
        panic!("{frame:?}")
    };
    match Frame::decode(b).unwrap() {
        Frame::Error {
            stream_id: 1,
            message,
            ..
        } => assert!(message.contains("nested deeper than 127"), "{message}"),
        other => panic!("{other:?}"),
    }

    // A JSON sync request body a million levels deep.
    let body = format!("{{\"parameters\":{{\"a\":{}}}}}", deep_json(1_000_000));
    let resp = riptide_testkit::http()
        .post(format!("http://{}/sync/stream", server.addr))
        .header("Authorization", format!("Token {}", h.token("u")))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "PSYNC_S2001");

    assert_eq!(
        metric(
            server.addr,
            riptide_service::metrics::names::REQUESTS_REJECTED
        )
        .await,
        3.0
    );
    still_served(&mut h, &mut live, "after-deep").await;
}

#[tokio::test]
async fn slowloris_is_closed_within_the_header_timeout() {
    let mut h = Harness::with(1, small_limits).await;
    let server = serve(&h).await;
    let mut live = live_client(&h, server.addr).await;

    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"POST /sync/stream HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    // One header byte every 50 ms, never finishing the headers.
    let closed = loop {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "slow headers still accepted after 5 s"
        );
        if tcp.write_all(b"X").await.is_err() {
            break started.elapsed();
        }
        let read = tokio::time::timeout(Duration::from_millis(50), tcp.read(&mut buf)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            break started.elapsed();
        }
    };
    assert!(
        closed >= Duration::from_millis(250),
        "closed after {closed:?}"
    );
    let timed_out = riptide_service::metrics::names::CONNECTIONS_TIMED_OUT;
    riptide_testkit::wait_for("the header timeout counted", WAIT, || async {
        (metric(server.addr, timed_out).await >= 1.0).then_some(())
    })
    .await;
    still_served(&mut h, &mut live, "after-slowloris").await;
}

#[tokio::test]
async fn thousands_of_websockets_without_setup_are_closed_at_the_deadline() {
    let mut h = Harness::with(1, |o| {
        small_limits(o);
        o.limits.setup_timeout = Duration::from_secs(4);
    })
    .await;
    let server = serve(&h).await;
    let mut live = live_client(&h, server.addr).await;

    let started = Instant::now();
    let mut sockets = Vec::new();
    for _ in 0..2000 {
        sockets.push(ws(server.addr).await);
    }
    let opened = Instant::now();
    let name = riptide_service::metrics::names::CONNECTIONS_OPEN;
    // Each holds a connection slot from its upgrade on (checked while none can have reached
    // its deadline yet).
    if started.elapsed() < Duration::from_secs(3) {
        assert!(metric(server.addr, name).await >= 2001.0);
    }
    // Every one gets a connection ERROR and the close at its deadline.
    for socket in &mut sockets {
        let frames = frames_until_closed(socket).await;
        assert_eq!(connection_error(&frames).0, error_code::CONNECTION_ERROR);
    }
    assert!(opened.elapsed() < Duration::from_secs(8));
    assert!(started.elapsed() >= Duration::from_secs(4));
    drop(sockets);
    riptide_testkit::wait_for("connections closed", WAIT, || async {
        (metric(server.addr, name).await <= 2.0).then_some(())
    })
    .await;
    let timed_out = riptide_service::metrics::names::CONNECTIONS_TIMED_OUT;
    // (Labels summed: setup timeouts, plus any idle keep-alive connection of the test's own.)
    assert!(metric(server.addr, timed_out).await >= 2000.0);
    still_served(&mut h, &mut live, "after-flood").await;
}

#[tokio::test]
async fn open_connections_beyond_the_cap_are_closed_at_accept() {
    let mut h = Harness::with(1, |o| {
        small_limits(o);
        o.limits.max_open_connections = 5;
    })
    .await;
    let server = serve(&h).await;
    let mut live = live_client(&h, server.addr).await;
    // The live stream holds one slot; four idle connections take the rest.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let mut extra = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, extra.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0) | Err(_))), "{n:?}");
    // The idle ones are closed by the header timeout, which frees their slots.
    drop(idle);
    still_served(&mut h, &mut live, "after-cap").await;
}

#[tokio::test]
async fn silent_rsocket_peers_are_closed_after_their_lifetime() {
    let mut h = Harness::with(1, small_limits).await;
    let server = serve(&h).await;
    let mut live = live_client(&h, server.addr).await;

    let mut socket = ws(server.addr).await;
    let metadata = json!({"token": format!("Token {}", h.token("quiet"))}).to_string();
    let frame = setup_frame("application/json", Bytes::from(metadata), 400);
    socket
        .send(Message::Binary(frame.to_bytes()))
        .await
        .unwrap();
    let started = Instant::now();
    let frames = frames_until_closed(&mut socket).await;
    assert!(started.elapsed() >= Duration::from_millis(350));
    // The server asked for a keepalive answer first (every keepalive_ms, capped by the
    // lifetime), then gave up.
    assert!(
        frames
            .iter()
            .any(|f| matches!(f, Frame::Keepalive { respond: true, .. })),
        "{frames:?}"
    );
    assert_eq!(connection_error(&frames).0, error_code::CONNECTION_ERROR);
    still_served(&mut h, &mut live, "after-silence").await;
}

#[tokio::test]
async fn oversized_bodies_are_413_and_oversized_frames_close_the_socket() {
    let mut h = Harness::with(1, small_limits).await;
    let server = serve(&h).await;
    let mut live = live_client(&h, server.addr).await;
    let http = riptide_testkit::http();
    let big = vec![b' '; 2 * 1024 * 1024];
    for path in ["/sync/stream", "/sync/checkpoint-request"] {
        let resp = http
            .post(format!("http://{}{path}", server.addr))
            .header("Authorization", format!("Token {}", h.token("u")))
            .header("Content-Type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413, "{path}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], "PSYNC_S2001", "{path}");
        assert_eq!(err["error"]["status"], 413, "{path}");
    }

    // A WebSocket message beyond max_request_bytes ends the connection.
    let mut socket = ws(server.addr).await;
    let _ = socket
        .send(Message::Binary(Bytes::from(vec![0u8; 2 * 1024 * 1024])))
        .await;
    frames_until_closed(&mut socket).await;
    let rejected = riptide_service::metrics::names::REQUESTS_REJECTED;
    riptide_testkit::wait_for("rejections counted", WAIT, || async {
        (metric(server.addr, rejected).await >= 3.0).then_some(())
    })
    .await;
    still_served(&mut h, &mut live, "after-oversized").await;
}

#[tokio::test]
async fn tokens_issued_in_the_future_are_refused() {
    let mut h = Harness::with(1, small_limits).await;
    let server = serve(&h).await;
    let mut live = live_client(&h, server.addr).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for claims in [
        json!({"sub": "u", "aud": h.keys.audience, "iat": now + 3600, "exp": now + 3700}),
        json!({"sub": "u", "aud": h.keys.audience, "iat": now + 30, "exp": now + 20}),
        json!({"sub": "", "aud": h.keys.audience, "iat": now, "exp": now + 60}),
    ] {
        let client = SyncClient::new(format!("http://{}", server.addr), h.keys.sign(&claims));
        let resp = client.stream_response(json!({})).await;
        assert_eq!(resp.status(), 401, "{claims}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], "PSYNC_S2101", "{claims}");
    }
    still_served(&mut h, &mut live, "after-future-iat").await;
}

#[tokio::test]
async fn per_user_stream_cap_and_client_id_length() {
    let mut h = Harness::with(1, |o| {
        small_limits(o);
        o.limits.max_connections_per_user = 2;
        o.limits.max_client_id_bytes = 64;
    })
    .await;
    let server = serve(&h).await;
    let mut live = live_client(&h, server.addr).await;
    let client = SyncClient::new(format!("http://{}", server.addr), h.token("greedy"));
    let _a = client.stream(json!({})).await;
    let _b = client.stream(json!({})).await;
    let resp = client.stream_response(json!({})).await;
    assert_eq!(resp.status(), 429);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "PSYNC_S2304");
    let long = "c".repeat(65);
    let resp = client.stream_response(json!({ "client_id": long })).await;
    assert_eq!(resp.status(), 400);
    still_served(&mut h, &mut live, "after-greedy").await;
}

/// A JWKS endpoint whose document the test changes.
async fn jwks_server(doc: Arc<Mutex<Value>>) -> SocketAddr {
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let doc = doc.lock().unwrap().clone();
            async move { axum::Json(doc) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn a_key_removed_from_the_jwks_is_refused_within_the_refresh_interval() {
    let doc = Arc::new(Mutex::new(json!({"keys": []})));
    let jwks = jwks_server(doc.clone()).await;
    let mut h = Harness::with(1, |o| {
        small_limits(o);
        o.keystore = KeyStore::new(AuthConfig {
            jwks_uri: vec![format!("http://{jwks}/jwks")],
            audience: vec![TestKeys::generate().audience],
            jwks_refresh_interval: Duration::from_millis(300),
            ..AuthConfig::default()
        })
        .unwrap();
    })
    .await;
    let rotated = TestKeys::generate().with_kid("rotated");
    *doc.lock().unwrap() = json!({"keys": [h.keys.jwk(), rotated.jwk()]});
    let server = serve(&h).await;
    let mut live = live_client(&h, server.addr).await;

    let token = rotated.token("r", 300, json!({}));
    let client = SyncClient::new(format!("http://{}", server.addr), token);
    assert_eq!(client.stream_response(json!({})).await.status(), 200);

    // The issuer drops the key: refused once the keys were fetched again.
    *doc.lock().unwrap() = json!({"keys": [h.keys.jwk()]});
    let removed = Instant::now();
    riptide_testkit::wait_for("the removed key refused", WAIT, || async {
        (client.stream_response(json!({})).await.status() == 401).then_some(())
    })
    .await;
    assert!(removed.elapsed() < Duration::from_secs(3));
    let refreshes = riptide_service::metrics::names::JWKS_REFRESHES;
    assert!(metric(server.addr, refreshes).await >= 2.0);
    still_served(&mut h, &mut live, "after-rotation").await;
}

/// `n` rows `big0`… of 100 KiB each in the global bucket.
fn big_rows(n: usize) -> Vec<riptide_storage::BatchOperation> {
    let blob = "x".repeat(100 * 1024);
    (0..n)
        .map(|i| {
            let mut op = row("lists", &format!("big{i}"), "global[]");
            if let riptide_storage::BatchOperation::Row(r) = &mut op
                && let riptide_storage::RowChange::Upsert { buckets, .. } = &mut r.change
            {
                buckets[0].data = json!({"id": format!("big{i}"), "blob": blob}).to_string();
            }
            op
        })
        .collect()
}

#[tokio::test]
async fn large_rows_are_paged_by_bytes_without_losing_any() {
    let mut h = Harness::with(0, |o| {
        small_limits(o);
        o.limits.max_data_page_bytes = 256 * 1024;
    })
    .await;
    // 24 rows of 100 KiB in the global bucket.
    h.commit(big_rows(24)).await;
    let server = serve(&h).await;
    let client = SyncClient::new(format!("http://{}", server.addr), h.token("reader"));
    let mut stream = client.stream(json!({})).await;
    let lines = stream.until("checkpoint_complete", WAIT).await;
    let mut ids: Vec<String> = lines
        .iter()
        .filter_map(|l| l.get("data"))
        .flat_map(|d| d["data"].as_array().cloned().unwrap_or_default())
        .filter_map(|op| op["object_id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 24, "{ids:?}");
    let limited = riptide_service::metrics::names::DATA_PAGES_BYTE_LIMITED;
    assert!(metric(server.addr, limited).await >= 5.0);
}

#[tokio::test]
async fn write_checkpoint_clients_are_pruned_per_user() {
    let h = Harness::with(1, |o| {
        small_limits(o);
        o.limits.max_write_checkpoint_clients_per_user = 2;
    })
    .await;
    let server = serve(&h).await;
    let client = SyncClient::new(format!("http://{}", server.addr), h.token("writer"));
    for i in 0..5 {
        client.write_checkpoint(&format!("client-{i}")).await;
    }
    let lsn = riptide_protocol::Lsn(u64::MAX);
    use riptide_storage::BucketStorage;
    for (i, kept) in [(0, false), (2, false), (3, true), (4, true)] {
        let found = h
            .storage
            .write_checkpoint("writer", &format!("client-{i}"), lsn)
            .await
            .unwrap();
        assert_eq!(found.is_some(), kept, "client-{i}");
    }
    let pruned = riptide_service::metrics::names::WRITE_CHECKPOINTS_PRUNED;
    assert_eq!(metric(server.addr, pruned).await, 3.0);
    let long = "c".repeat(300);
    let resp = riptide_testkit::http()
        .get(format!("http://{}/write-checkpoint2.json", server.addr))
        .query(&[("client_id", long.as_str())])
        .header("Authorization", format!("Token {}", h.token("writer")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn a_client_that_reads_nothing_loses_its_connection_after_the_write_stall_timeout() {
    let mut h = Harness::with(0, |o| {
        small_limits(o);
        o.limits.write_stall_timeout = Duration::from_millis(500);
        o.limits.max_data_page_bytes = 256 * 1024;
    })
    .await;
    // 16 MiB to send: more than the socket buffers and the session's line buffer hold.
    h.commit(big_rows(160)).await;
    let server = serve(&h).await;
    let mut live = live_client(&h, server.addr).await;

    // A sync stream whose client never reads (a small receive buffer, so the server's writes
    // stall soon).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(server.addr).await.unwrap();
    let body = r#"{"client_id":"stalled"}"#;
    let request = format!(
        "POST /sync/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Token {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        h.token("stalled"),
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    // Counted under its own reason (idle keep-alive connections count as `header`).
    let series = format!(
        "{}{{reason=\"write_stall\"}} 1",
        riptide_service::metrics::names::CONNECTIONS_TIMED_OUT
    );
    riptide_testkit::wait_for("the write stall counted", WAIT, || async {
        let text = riptide_testkit::http_get(format!("http://{}/metrics", server.addr))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines().any(|l| l == series).then_some(())
    })
    .await;

    // The server has closed it: what was buffered drains, then the stream ends short of the
    // 16 MiB, without its last line.
    let mut received = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the stalled connection is still open");
    assert!(
        received.len() < 16 * 1024 * 1024,
        "got {} bytes: the whole stream was sent",
        received.len()
    );
    still_served(&mut h, &mut live, "after-stall").await;
}
