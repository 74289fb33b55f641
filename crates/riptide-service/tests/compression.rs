//! `/sync/stream` compressed per `Accept-Encoding`, decoded chunk by chunk while the stream is
//! open: every line must be decodable as soon as it was sent.

use std::io::Write;
use std::time::Duration;

use crate::support::{Harness, row};
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use futures::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Decompresses a response body incrementally and splits it into NDJSON or BSON lines.
struct Decoded {
    body: axum::body::BodyDataStream,
    decoder: Decoder,
    bson: bool,
}

enum Decoder {
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
    Identity(Vec<u8>),
}

impl Decoder {
    fn feed(&mut self, chunk: &[u8]) {
        match self {
            Decoder::Gzip(d) => {
                d.write_all(chunk).unwrap();
                d.flush().unwrap();
            }
            Decoder::Zstd(d) => {
                d.write_all(chunk).unwrap();
                d.flush().unwrap();
            }
            Decoder::Identity(v) => v.extend_from_slice(chunk),
        }
    }

    fn buf(&mut self) -> &mut Vec<u8> {
        match self {
            Decoder::Gzip(d) => d.get_mut(),
            Decoder::Zstd(d) => d.get_mut(),
            Decoder::Identity(v) => v,
        }
    }
}

impl Decoded {
    fn new(resp: Response<Body>, bson: bool) -> Decoded {
        let decoder = match resp
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap())
        {
            Some("gzip") => Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new())),
            Some("zstd") => Decoder::Zstd(zstd::stream::write::Decoder::new(Vec::new()).unwrap()),
            None => Decoder::Identity(Vec::new()),
            Some(other) => panic!("unexpected content-encoding {other}"),
        };
        Decoded {
            body: resp.into_body().into_data_stream(),
            decoder,
            bson,
        }
    }

    fn take_line(&mut self) -> Option<Value> {
        let bson = self.bson;
        let buf = self.decoder.buf();
        if bson {
            let len = buf
                .get(..4)
                .map(|b| i32::from_le_bytes(b.try_into().unwrap()))? as usize;
            if buf.len() < len {
                return None;
            }
            let doc: Vec<u8> = buf.drain(..len).collect();
            Some(bson::deserialize_from_slice::<Value>(&doc).unwrap())
        } else {
            let pos = buf.iter().position(|&b| b == b'\n')?;
            let line: Vec<u8> = buf.drain(..=pos).collect();
            Some(serde_json::from_slice(&line).unwrap())
        }
    }

    /// The next line; panics if none is decodable within `timeout`.
    async fn next_within(&mut self, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(line) = self.take_line() {
                return line;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("a decodable line before the deadline")
                .expect("stream open")
                .unwrap();
            self.decoder.feed(&chunk);
        }
    }

    async fn until_complete(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let line = self.next_within(Duration::from_secs(5)).await;
            let done = line.get("checkpoint_complete").is_some();
            out.push(line);
            if done {
                return out;
            }
        }
    }
}

async fn open(h: &Harness, accept: &str, accept_encoding: Option<&str>) -> Response<Body> {
    let mut req = Request::post("/sync/stream")
        .header("authorization", format!("Token {}", h.token("u1")))
        .header("content-type", "application/json")
        .header("accept", accept);
    if let Some(ae) = accept_encoding {
        req = req.header("accept-encoding", ae);
    }
    let resp = riptide_service::router(h.state.clone())
        .oneshot(req.body(Body::from("{}")).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp
}

const NDJSON: &str = "application/x-ndjson";
const BSON: &str = "application/vnd.powersync.bson-stream;q=0.9,application/x-ndjson;q=0.8";

fn keys(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l.as_object().unwrap().keys().next().unwrap().clone())
        .collect()
}

/// First sync, then one live change that must arrive without any further data being sent.
async fn first_sync_and_live_line(
    accept: &str,
    accept_encoding: Option<&str>,
    expect: Option<&str>,
) {
    let mut h = Harness::with(300, |_| {}).await;
    let resp = open(&h, accept, accept_encoding).await;
    assert_eq!(
        resp.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        expect
    );
    let vary: Vec<_> = resp.headers().get_all("vary").iter().collect();
    assert!(
        vary.iter()
            .any(|v| v.to_str().unwrap().contains("Accept-Encoding")),
        "{vary:?}"
    );
    let mut lines = Decoded::new(resp, accept == BSON);
    let first = lines.until_complete().await;
    assert_eq!(keys(&first)[0], "checkpoint");
    let ops: usize = first
        .iter()
        .filter_map(|l| l.get("data"))
        .map(|d| d["data"].as_array().unwrap().len())
        .sum();
    assert_eq!(ops, 300);

    let started = std::time::Instant::now();
    h.commit(vec![row("lists", "live", "global[]")]).await;
    let diff = lines.next_within(Duration::from_secs(2)).await;
    assert!(diff.get("checkpoint_diff").is_some(), "{diff}");
    let data = lines.next_within(Duration::from_secs(2)).await;
    assert_eq!(data["data"]["data"][0]["object_id"], json!("live"));
    let complete = lines.next_within(Duration::from_secs(2)).await;
    assert!(complete.get("checkpoint_complete").is_some(), "{complete}");
    let elapsed = started.elapsed();
    eprintln!("{accept_encoding:?}: live change decoded after {elapsed:?}");
    // Nothing else is sent on this stream: only a per-line flush makes this arrive at all.
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
}

#[tokio::test]
async fn gzip_ndjson() {
    first_sync_and_live_line(NDJSON, Some("gzip, deflate"), Some("gzip")).await;
}

#[tokio::test]
async fn zstd_ndjson() {
    first_sync_and_live_line(NDJSON, Some("gzip, deflate, br, zstd"), Some("zstd")).await;
}

#[tokio::test]
async fn gzip_bson() {
    first_sync_and_live_line(BSON, Some("gzip"), Some("gzip")).await;
}

#[tokio::test]
async fn zstd_bson() {
    first_sync_and_live_line(BSON, Some("zstd, gzip"), Some("zstd")).await;
}

#[tokio::test]
async fn identity_without_or_with_unknown_accept_encoding() {
    first_sync_and_live_line(NDJSON, None, None).await;
    first_sync_and_live_line(BSON, Some("br;q=1, gzip;q=0"), None).await;
}

/// A stream that ends (token expiry) ends with a complete gzip member.
#[tokio::test]
async fn ended_stream_is_a_complete_gzip_member() {
    let h = Harness::with(3, |_| {}).await;
    let token = h.keys.token("u1", 2, json!({}));
    let resp = riptide_service::router(h.state.clone())
        .oneshot(
            Request::post("/sync/stream")
                .header("authorization", format!("Token {token}"))
                .header("accept-encoding", "gzip")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    let body = tokio::time::timeout(
        Duration::from_secs(10),
        axum::body::to_bytes(resp.into_body(), 1 << 20),
    )
    .await
    .unwrap()
    .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text).unwrap();
    assert!(text.ends_with("{\"token_expires_in\":0}\n"), "{text}");
}
