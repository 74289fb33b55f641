//! RSocket over WebSocket against the router on a loopback port, driven frame by frame with
//! tokio-tungstenite: SETUP auth, REQUEST_STREAM, REQUEST_N credit, KEEPALIVE, CANCEL, token
//! expiry, the connection cap and fragmented requests.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::{Harness, row};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use riptide_protocol::rsocket::{Frame, Payload, Setup, error_code};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

fn setup(token: &str) -> Frame {
    Frame::Setup(Setup {
        major_version: 1,
        minor_version: 0,
        keepalive_ms: 20_000,
        lifetime_ms: 90_000,
        resume_token: None,
        lease: false,
        metadata_mime: "application/json".into(),
        data_mime: "application/json".into(),
        payload: Payload {
            metadata: Some(Bytes::from(
                json!({"token": format!("Token {token}"), "user_agent": "riptide-test"})
                    .to_string(),
            )),
            data: Bytes::new(),
        },
    })
}

fn request_stream(stream_id: u32, n: u32, path: &str, body: Value) -> Frame {
    Frame::RequestStream {
        stream_id,
        initial_n: n,
        follows: false,
        payload: Payload {
            metadata: Some(Bytes::from(json!({ "path": path }).to_string())),
            data: Bytes::from(body.to_string()),
        },
    }
}

impl Client {
    async fn connect(addr: SocketAddr, path: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
            .await
            .unwrap();
        Client { ws }
    }

    /// Connects, sends SETUP with `token` and REQUEST_STREAM(1, n).
    async fn stream(addr: SocketAddr, token: &str, n: u32) -> Client {
        let mut c = Client::connect(addr, "/sync/stream").await;
        c.send(setup(token)).await;
        c.send(request_stream(
            1,
            n,
            "/sync/stream",
            json!({"client_id": "c1"}),
        ))
        .await;
        c
    }

    async fn send(&mut self, frame: Frame) {
        self.send_raw(frame.to_bytes()).await;
    }

    async fn send_raw(&mut self, bytes: Bytes) {
        self.ws.send(Message::Binary(bytes)).await.unwrap();
    }

    /// The next frame, `None` when the socket closed, `Err` after `timeout`.
    async fn next_within(&mut self, timeout: Duration) -> Result<Option<Frame>, ()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Err(()),
                Ok(None | Some(Err(_))) => return Ok(None),
                Ok(Some(Ok(Message::Binary(b)))) => return Ok(Some(Frame::decode(b).unwrap())),
                Ok(Some(Ok(Message::Close(_)))) => return Ok(None),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    async fn next(&mut self) -> Frame {
        self.next_within(Duration::from_secs(5))
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
    }

    /// The next PAYLOAD(NEXT) as a JSON line.
    async fn line(&mut self) -> Value {
        match self.next().await {
            Frame::Payload {
                stream_id: 1,
                next: true,
                complete: false,
                payload,
                ..
            } => bson::deserialize_from_slice::<Value>(&payload.data).unwrap(),
            other => panic!("expected a line, got {other:?}"),
        }
    }

    async fn until_complete(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            self.send(Frame::RequestN { stream_id: 1, n: 1 }).await;
            let line = self.line().await;
            let done = line.get("checkpoint_complete").is_some();
            out.push(line);
            if done {
                return out;
            }
        }
    }
}

fn key(line: &Value) -> &str {
    line.as_object().unwrap().keys().next().unwrap()
}

#[tokio::test]
async fn credit_is_honoured_and_keepalive_answered_while_waiting() {
    let mut h = Harness::with(2500, |_| {}).await;
    let (addr, _server) = h.serve().await;
    let mut c = Client::stream(addr, &h.token("u1"), 2).await;
    assert_eq!(key(&c.line().await), "checkpoint");
    assert_eq!(key(&c.line().await), "partial_checkpoint_complete");
    // Credit spent: nothing more arrives.
    assert_eq!(c.next_within(Duration::from_millis(300)).await, Err(()));
    // KEEPALIVE(respond) is answered with the flag cleared while the stream waits for credit.
    c.send(Frame::Keepalive {
        respond: true,
        last_received_position: 0,
        data: Bytes::from_static(b"k"),
    })
    .await;
    assert_eq!(
        c.next().await,
        Frame::Keepalive {
            respond: false,
            last_received_position: 0,
            data: Bytes::from_static(b"k")
        }
    );
    // Exactly three more lines for REQUEST_N(3).
    c.send(Frame::RequestN { stream_id: 1, n: 3 }).await;
    let mut lines = Vec::new();
    for _ in 0..3 {
        lines.push(c.line().await);
    }
    assert_eq!(c.next_within(Duration::from_millis(300)).await, Err(()));
    lines.extend(c.until_complete().await);
    let ops: usize = lines
        .iter()
        .filter_map(|l| l.get("data"))
        .map(|d| d["data"].as_array().unwrap().len())
        .sum();
    assert_eq!(ops, 2500);

    // A live change flows once credit is granted.
    h.commit(vec![row("lists", "live", "global[]")]).await;
    c.send(Frame::RequestN {
        stream_id: 1,
        n: 10,
    })
    .await;
    assert_eq!(key(&c.line().await), "checkpoint_diff");
    let data = c.line().await;
    assert_eq!(data["data"]["data"][0]["object_id"], json!("live"));
    assert_eq!(key(&c.line().await), "checkpoint_complete");
}

#[tokio::test]
async fn bad_token_rejects_the_setup() {
    let h = Harness::with(1, |_| {}).await;
    let (addr, _server) = h.serve().await;
    let mut c = Client::stream(addr, "not-a-jwt", 10).await;
    match c.next().await {
        Frame::Error {
            stream_id: 0,
            code,
            message,
        } => {
            assert_eq!(code, error_code::REJECTED_SETUP);
            assert!(message.starts_with("[PSYNC_S2101] "), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.next_within(Duration::from_secs(2)).await, Ok(None));

    // No token at all.
    let mut c = Client::connect(addr, "/anything").await;
    let Frame::Setup(mut s) = setup("x") else {
        unreachable!()
    };
    s.payload.metadata = Some(Bytes::from_static(b"{}"));
    c.send(Frame::Setup(s)).await;
    match c.next().await {
        Frame::Error { message, .. } => assert!(message.starts_with("[PSYNC_S2106]"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn token_expiry_completes_the_stream() {
    let h = Harness::with(1, |_| {}).await;
    let (addr, _server) = h.serve().await;
    let token = h.keys.token("u1", 2, json!({}));
    let mut c = Client::stream(addr, &token, 100).await;
    let mut lines = Vec::new();
    let complete = loop {
        match c.next().await {
            Frame::Payload {
                next: true,
                payload,
                ..
            } => lines.push(bson::deserialize_from_slice::<Value>(&payload.data).unwrap()),
            other => break other,
        }
    };
    assert!(
        matches!(
            complete,
            Frame::Payload {
                stream_id: 1,
                complete: true,
                next: false,
                ..
            }
        ),
        "{complete:?}"
    );
    assert_eq!(lines.last().unwrap(), &json!({"token_expires_in": 0}));
    assert_eq!(key(&lines[0]), "checkpoint");
}

/// A token past `exp` but within the clock-skew leeway: a stream would end at once, and the
/// SDK could keep reconnecting with it, so SETUP is refused with `PSYNC_S2103` (the SDK then
/// fetches a new token).
#[tokio::test]
async fn token_past_exp_within_leeway_rejects_the_setup() {
    let h = Harness::with(1, |_| {}).await;
    let (addr, _server) = h.serve().await;
    let token = h.keys.token("u1", -10, json!({}));
    let mut c = Client::stream(addr, &token, 10).await;
    match c.next().await {
        Frame::Error {
            stream_id: 0,
            code,
            message,
        } => {
            assert_eq!(code, error_code::REJECTED_SETUP);
            assert!(message.starts_with("[PSYNC_S2103] "), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn cancel_and_close_stop_the_session() {
    let mut h = Harness::with(1, |_| {}).await;
    let (addr, _server) = h.serve().await;
    let mut c = Client::stream(addr, &h.token("u1"), 100).await;
    let first = c.line().await;
    assert_eq!(key(&first), "checkpoint");
    while key(&c.line().await) != "checkpoint_complete" {}
    c.send(Frame::Cancel { stream_id: 1 }).await;
    // Frames are handled in order: once this keepalive is answered, the CANCEL was too.
    c.send(Frame::Keepalive {
        respond: true,
        last_received_position: 0,
        data: Bytes::new(),
    })
    .await;
    assert!(matches!(
        c.next().await,
        Frame::Keepalive { respond: false, .. }
    ));
    h.commit(vec![row("lists", "after-cancel", "global[]")])
        .await;
    assert_eq!(c.next_within(Duration::from_millis(500)).await, Err(()));
    // The connection itself stays usable (keepalive answered) and holds its slot until closed.
    c.send(Frame::Keepalive {
        respond: true,
        last_received_position: 0,
        data: Bytes::new(),
    })
    .await;
    assert!(matches!(
        c.next().await,
        Frame::Keepalive { respond: false, .. }
    ));
    assert_eq!(h.state.open_streams(), 1);
    drop(c);
    riptide_testkit::wait_for(
        "connection slot released",
        Duration::from_secs(5),
        || async { (h.state.open_streams() == 0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn connection_cap_answers_s2304() {
    let h = Harness::with(1, |o| o.limits.max_concurrent_connections = 1).await;
    let (addr, _server) = h.serve().await;
    let mut first = Client::stream(addr, &h.token("u1"), 10).await;
    assert_eq!(key(&first.line().await), "checkpoint");
    let mut second = Client::stream(addr, &h.token("u2"), 10).await;
    match second.next().await {
        Frame::Error {
            stream_id: 0,
            message,
            ..
        } => assert!(message.starts_with("[PSYNC_S2304]"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unknown_route_and_bad_request_are_stream_errors() {
    let h = Harness::with(1, |_| {}).await;
    let (addr, _server) = h.serve().await;
    let mut c = Client::connect(addr, "/").await;
    c.send(setup(&h.token("u1"))).await;
    c.send(request_stream(1, 10, "/nope", json!({}))).await;
    match c.next().await {
        Frame::Error {
            stream_id: 1,
            code: error_code::APPLICATION_ERROR,
            message,
        } => assert!(message.starts_with("[PSYNC_S2002]"), "{message}"),
        other => panic!("{other:?}"),
    }
    c.send(Frame::RequestStream {
        stream_id: 3,
        initial_n: 10,
        follows: false,
        payload: Payload {
            metadata: Some(Bytes::from_static(br#"{"path":"/sync/stream"}"#)),
            data: Bytes::from_static(b"{\"buckets\": 7}"),
        },
    })
    .await;
    match c.next().await {
        Frame::Error {
            stream_id: 3,
            message,
            ..
        } => assert!(message.starts_with("[PSYNC_S2001]"), "{message}"),
        other => panic!("{other:?}"),
    }
    // Garbage closes the connection with a connection error.
    c.send_raw(Bytes::from_static(b"\x00\x00")).await;
    assert!(matches!(
        c.next().await,
        Frame::Error {
            stream_id: 0,
            code: error_code::CONNECTION_ERROR,
            ..
        }
    ));
    assert_eq!(c.next_within(Duration::from_secs(2)).await, Ok(None));
}

#[tokio::test]
async fn fragmented_request_is_reassembled() {
    let h = Harness::with(1, |_| {}).await;
    let (addr, _server) = h.serve().await;
    let mut c = Client::connect(addr, "/sync/stream").await;
    c.send(setup(&h.token("u1"))).await;
    let meta = br#"{"path":"/sync/stream"}"#;
    let data = br#"{"client_id":"frag","buckets":[]}"#;
    c.send(Frame::RequestStream {
        stream_id: 1,
        initial_n: 10,
        follows: true,
        payload: Payload {
            metadata: Some(Bytes::copy_from_slice(&meta[..8])),
            data: Bytes::copy_from_slice(&data[..5]),
        },
    })
    .await;
    c.send(Frame::Payload {
        stream_id: 1,
        follows: false,
        complete: false,
        next: true,
        payload: Payload {
            metadata: Some(Bytes::copy_from_slice(&meta[8..])),
            data: Bytes::copy_from_slice(&data[5..]),
        },
    })
    .await;
    assert_eq!(key(&c.line().await), "checkpoint");
}
