//! A protocol-level sync client, speaking to the service as a PowerSync client does:
//! `POST /sync/stream` as NDJSON or BSON with identity, gzip or zstd content encoding, or RSocket
//! over WebSocket (BSON payloads), read one line at a time; and `GET /write-checkpoint2.json`.
//!
//! Tests use the panicking shorthands ([`SyncClient::stream`], [`SyncStream::next_line`],
//! [`SyncStream::until`]); the benchmark uses the fallible calls ([`SyncClient::open`],
//! [`SyncStream::try_next_line`]) and measures with them, so reading stays light: the body is
//! decompressed into one buffer, each line is parsed where it lies in it, and a line's arrival
//! is the moment `try_next_line` returns it (the caller stamps it).

mod framing;
mod rsocket;

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use framing::{Decoder, Framer};
use rsocket::RSocketReader;

/// How a stream's lines are encoded on the HTTP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/x-ndjson`: one JSON document per line.
    Ndjson,
    /// `application/vnd.powersync.bson-stream`: BSON documents back to back.
    Bson,
}

impl Format {
    /// The `Accept` value that asks for this format (and the `Content-Type` answered).
    pub fn mime(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Bson => "application/vnd.powersync.bson-stream",
        }
    }
}

/// The `Accept-Encoding` asked for on the HTTP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Zstd => "zstd",
        }
    }

    /// Whether a response's `Content-Encoding` (empty when absent) is this encoding.
    fn answered_by(self, content_encoding: &str) -> bool {
        match self {
            Encoding::Identity => matches!(content_encoding, "" | "identity"),
            other => content_encoding == other.as_str(),
        }
    }
}

/// How a [`SyncStream`] talks to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `POST /sync/stream` with this `Accept` and `Accept-Encoding`.
    Http { format: Format, encoding: Encoding },
    /// RSocket over WebSocket on `/sync/stream`, JSON request, BSON lines.
    RSocket,
}

impl Transport {
    /// Uncompressed NDJSON over HTTP, what [`SyncClient::stream`] opens.
    pub const NDJSON: Transport = Transport::Http {
        format: Format::Ndjson,
        encoding: Encoding::Identity,
    };
}

/// Why a sync stream could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum SyncClientError {
    #[error("sending the sync request")]
    Request(#[source] reqwest::Error),
    #[error("sync stream answered {status}: {body}")]
    Status {
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("asked for {asked}, got Content-Type {answered:?}")]
    ContentType {
        asked: &'static str,
        answered: String,
    },
    #[error("asked for Accept-Encoding {asked}, got Content-Encoding {answered:?}")]
    ContentEncoding {
        asked: &'static str,
        answered: String,
    },
    #[error("opening the WebSocket")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    #[error("reading the HTTP body")]
    Body(#[source] reqwest::Error),
    #[error("decompressing the HTTP body")]
    Decompress(#[source] std::io::Error),
    #[error("no sync line within {0:?}")]
    Timeout(Duration),
    #[error("a line is not JSON")]
    Json(#[source] serde_json::Error),
    #[error("a line is not BSON")]
    Bson(#[source] bson::error::Error),
    #[error("BSON document length {0} is negative")]
    BsonLength(i32),
    #[error("an RSocket frame is invalid")]
    Frame(#[source] riptide_protocol::rsocket::FrameError),
    #[error("RSocket ERROR {code:#x}: {message}")]
    RSocketError { code: u32, message: String },
    #[error("unexpected RSocket frame {0}")]
    UnexpectedFrame(String),
}

impl From<tokio_tungstenite::tungstenite::Error> for SyncClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> SyncClientError {
        SyncClientError::WebSocket(Box::new(e))
    }
}

/// Talks to a sync service's HTTP endpoints as a PowerSync client would.
#[derive(Debug, Clone)]
pub struct SyncClient {
    pub endpoint: String,
    pub token: String,
    http: reqwest::Client,
    user_agent: String,
}

impl SyncClient {
    pub fn new(endpoint: impl Into<String>, token: impl Into<String>) -> SyncClient {
        SyncClient::with_http(endpoint, token, crate::http())
    }

    /// A client sending its requests through `http` (one connection pool shared by many
    /// clients).
    pub fn with_http(
        endpoint: impl Into<String>,
        token: impl Into<String>,
        http: reqwest::Client,
    ) -> SyncClient {
        SyncClient {
            endpoint: endpoint.into(),
            token: token.into(),
            http,
            user_agent: "riptide-testkit".into(),
        }
    }

    /// The `user_agent` of the RSocket SETUP metadata (HTTP requests send no `User-Agent`).
    pub fn with_user_agent(self, user_agent: impl Into<String>) -> SyncClient {
        SyncClient {
            user_agent: user_agent.into(),
            ..self
        }
    }

    /// Opens `POST /sync/stream` with `body` as NDJSON; panics unless the status is 200.
    pub async fn stream(&self, body: Value) -> SyncStream {
        self.open(Transport::NDJSON, &body)
            .await
            .unwrap_or_else(|e| panic!("{}", chain(&e)))
    }

    /// Opens a sync stream with the request `body` over `transport`: for HTTP, checks the
    /// status, the `Content-Type` and the `Content-Encoding` of the answer.
    pub async fn open(
        &self,
        transport: Transport,
        body: &Value,
    ) -> Result<SyncStream, SyncClientError> {
        let Transport::Http { format, encoding } = transport else {
            let reader =
                RSocketReader::connect(&self.endpoint, &self.token, &self.user_agent, body).await?;
            return Ok(SyncStream(Inner::RSocket(Box::new(reader))));
        };
        let resp = self
            .stream_request(format, Some(encoding), body)
            .send()
            .await
            .map_err(SyncClientError::Request)?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(SyncClientError::Status { status, body });
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let (content_type, content_encoding) = (header("content-type"), header("content-encoding"));
        if !content_type.starts_with(format.mime()) {
            return Err(SyncClientError::ContentType {
                asked: format.mime(),
                answered: content_type,
            });
        }
        if !encoding.answered_by(&content_encoding) {
            return Err(SyncClientError::ContentEncoding {
                asked: encoding.as_str(),
                answered: content_encoding,
            });
        }
        Ok(SyncStream(Inner::Http(Box::new(HttpStream {
            body: Box::pin(resp.bytes_stream()),
            framer: Framer::new(format, Decoder::new(encoding)?),
            wire: 0,
        }))))
    }

    /// The raw response of `POST /sync/stream` as NDJSON, whatever its status.
    pub async fn stream_response(&self, body: Value) -> reqwest::Response {
        self.stream_request(Format::Ndjson, None, &body)
            .send()
            .await
            .expect("sync stream request is sent")
    }

    fn stream_request(
        &self,
        format: Format,
        encoding: Option<Encoding>,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        let request = self
            .http
            .post(format!("{}/sync/stream", self.endpoint))
            .header("Authorization", format!("Token {}", self.token))
            .header("Accept", format.mime());
        match encoding {
            Some(encoding) => request.header("Accept-Encoding", encoding.as_str()),
            None => request,
        }
        .json(body)
    }

    /// `GET /write-checkpoint2.json?client_id=…` → the write checkpoint id.
    pub async fn write_checkpoint(&self, client_id: &str) -> String {
        let resp = self
            .http
            .get(format!("{}/write-checkpoint2.json", self.endpoint))
            .query(&[("client_id", client_id)])
            .header("Authorization", format!("Token {}", self.token))
            .send()
            .await
            .expect("write checkpoint request is sent");
        let status = resp.status();
        let body: Value = resp.json().await.expect("write checkpoint answers JSON");
        assert!(
            status.is_success(),
            "write checkpoint answered {status}: {body}"
        );
        body["data"]["write_checkpoint"]
            .as_str()
            .expect("write_checkpoint is a string")
            .to_owned()
    }
}

type ByteStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// An open sync stream.
pub struct SyncStream(Inner);

enum Inner {
    Http(Box<HttpStream>),
    RSocket(Box<RSocketReader>),
}

/// The HTTP transport's body, framed into lines.
struct HttpStream {
    body: ByteStream,
    framer: Framer,
    /// Body bytes received, as sent (compressed when the encoding compresses).
    wire: u64,
}

impl std::fmt::Debug for SyncStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncStream")
            .field("wire_bytes", &self.wire_bytes())
            .finish_non_exhaustive()
    }
}

impl SyncStream {
    /// Bytes received: the HTTP body as sent (compressed where it is), or the WebSocket
    /// messages' payloads.
    pub fn wire_bytes(&self) -> u64 {
        match &self.0 {
            Inner::Http(s) => s.wire,
            Inner::RSocket(s) => s.wire_bytes(),
        }
    }

    /// The next line, `Ok(None)` at the end of the stream. `timeout` bounds each wait for
    /// bytes from the network (not the whole line).
    pub async fn try_next_line(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Value>, SyncClientError> {
        let s = match &mut self.0 {
            Inner::Http(s) => s,
            Inner::RSocket(s) => return s.next_line(timeout).await,
        };
        loop {
            if let Some(line) = s.framer.next_line()? {
                return Ok(Some(line));
            }
            let chunk = match tokio::time::timeout(timeout, s.body.next()).await {
                Err(_) => return Err(SyncClientError::Timeout(timeout)),
                Ok(None) => return Ok(None),
                Ok(Some(chunk)) => chunk.map_err(SyncClientError::Body)?,
            };
            s.wire += chunk.len() as u64;
            s.framer.push(&chunk)?;
        }
    }

    /// The next line, `None` at the end of the stream; panics after `timeout` or on a broken
    /// stream.
    pub async fn next_line(&mut self, timeout: Duration) -> Option<Value> {
        self.try_next_line(timeout)
            .await
            .unwrap_or_else(|e| panic!("{}", chain(&e)))
    }

    /// Reads lines until one has top-level key `key`; returns all lines read, that one last.
    pub async fn until(&mut self, key: &str, timeout: Duration) -> Vec<Value> {
        let mut lines = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let line = self
                .next_line(left)
                .await
                .unwrap_or_else(|| panic!("stream ended before a {key} line: {lines:?}"));
            let done = line.get(key).is_some();
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

/// An error and its causes on one line, for the panicking shorthands.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
