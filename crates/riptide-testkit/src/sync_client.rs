//! A protocol-level sync client: posts a sync request and reads NDJSON lines.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

/// Talks to a sync service's HTTP endpoints as a PowerSync client would.
#[derive(Debug, Clone)]
pub struct SyncClient {
    pub endpoint: String,
    pub token: String,
    http: reqwest::Client,
}

impl SyncClient {
    pub fn new(endpoint: impl Into<String>, token: impl Into<String>) -> SyncClient {
        SyncClient {
            endpoint: endpoint.into(),
            token: token.into(),
            http: reqwest::Client::new(),
        }
    }

    /// Opens `POST /sync/stream` with `body`; panics unless the status is 200.
    pub async fn stream(&self, body: Value) -> SyncStream {
        let resp = self.stream_response(body).await;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            panic!("sync stream answered {status}: {text}");
        }
        SyncStream {
            body: Box::pin(resp.bytes_stream()),
            buf: Vec::new(),
        }
    }

    /// The raw response of `POST /sync/stream`, whatever its status.
    pub async fn stream_response(&self, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/sync/stream", self.endpoint))
            .header("Authorization", format!("Token {}", self.token))
            .header("Accept", "application/x-ndjson")
            .json(&body)
            .send()
            .await
            .expect("sync stream request is sent")
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
pub struct SyncStream {
    body: ByteStream,
    buf: Vec<u8>,
}

impl std::fmt::Debug for SyncStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncStream").finish_non_exhaustive()
    }
}

impl SyncStream {
    /// The next line, `None` at the end of the stream; panics after `timeout`.
    pub async fn next_line(&mut self, timeout: Duration) -> Option<Value> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(serde_json::from_slice(&line[..pos]).expect("each line is JSON"));
            }
            match tokio::time::timeout(timeout, self.body.next()).await {
                Err(_) => panic!("no sync line within {timeout:?}"),
                Ok(None) => return None,
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.expect("stream reads")),
            }
        }
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
