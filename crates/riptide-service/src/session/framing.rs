//! Encoding of sync lines (NDJSON or concatenated BSON documents) and the bounded channel
//! between a session task and the response body.

use std::sync::Arc;

use bytes::Bytes;
use riptide_protocol::SyncLine;
use tokio::sync::mpsc;

use crate::metrics::ServiceMetrics;

pub const NDJSON_CONTENT_TYPE: &str = "application/x-ndjson";
pub const BSON_CONTENT_TYPE: &str = "application/vnd.powersync.bson-stream";

/// Lines buffered between a session and a slow reader; beyond this the session waits.
pub const LINE_BUFFER: usize = 8;
/// Lines sent together ([`LineSender::send_all`]) share one body chunk up to about this size.
pub const BATCH_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    Ndjson,
    Bson,
}

impl LineFormat {
    /// BSON when the `Accept` header rates `application/vnd.powersync.bson-stream` strictly
    /// higher than `application/x-ndjson` (the JS SDK sends `bson;q=0.9, ndjson;q=0.8`);
    /// NDJSON otherwise, including without `Accept`.
    pub fn negotiate(accept: Option<&str>) -> LineFormat {
        let Some(accept) = accept else {
            return LineFormat::Ndjson;
        };
        let mut bson_q: Option<f32> = None;
        let mut ndjson_q: Option<f32> = None;
        let mut wildcard_q: Option<f32> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = 1.0f32;
            for p in parts {
                if let Some((k, v)) = p.split_once('=')
                    && k.trim().eq_ignore_ascii_case("q")
                {
                    q = v.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0);
                }
            }
            let slot = match media.as_str() {
                BSON_CONTENT_TYPE => &mut bson_q,
                NDJSON_CONTENT_TYPE => &mut ndjson_q,
                "*/*" | "application/*" => &mut wildcard_q,
                _ => continue,
            };
            *slot = Some(slot.map_or(q, |old: f32| old.max(q)));
        }
        let ndjson = ndjson_q.or(wildcard_q).unwrap_or(0.0);
        match bson_q {
            Some(b) if b > 0.0 && b > ndjson => LineFormat::Bson,
            _ => LineFormat::Ndjson,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            LineFormat::Ndjson => NDJSON_CONTENT_TYPE,
            LineFormat::Bson => BSON_CONTENT_TYPE,
        }
    }

    pub fn encode(self, line: &SyncLine) -> Result<Bytes, bson::error::Error> {
        match self {
            LineFormat::Ndjson => {
                let mut out = Vec::with_capacity(128);
                line.write_ndjson(&mut out);
                Ok(Bytes::from(out))
            }
            LineFormat::Bson => line.to_bson().map(Bytes::from),
        }
    }
}

/// The response body went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("client disconnected")]
pub struct Disconnected;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Disconnected(#[from] Disconnected),
    #[error("could not encode a sync line as BSON")]
    Bson(#[from] bson::error::Error),
}

/// Sends encoded lines to the response body; waits when the reader is slow.
#[derive(Debug, Clone)]
pub struct LineSender {
    tx: mpsc::Sender<Bytes>,
    format: LineFormat,
    metrics: Option<Arc<ServiceMetrics>>,
    /// Lines sent together may share one message (a byte stream, not RSocket payloads).
    batch: bool,
}

impl LineSender {
    pub fn channel(format: LineFormat) -> (LineSender, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(LINE_BUFFER);
        let sender = LineSender {
            tx,
            format,
            metrics: None,
            batch: false,
        };
        (sender, rx)
    }

    /// Counts sent lines, bytes and checkpoints in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<ServiceMetrics>) -> LineSender {
        self.metrics = Some(metrics);
        self
    }

    /// Lets [`send_all`](Self::send_all) put several lines in one message: for byte streams
    /// (the HTTP body), where a message is just a chunk, not for RSocket payloads.
    pub fn batched(mut self) -> LineSender {
        self.batch = true;
        self
    }

    /// Sends lines in order. When batched, lines share messages of up to about
    /// [`BATCH_BYTES`]: a checkpoint's `checkpoint_diff`, `data` and `checkpoint_complete` go
    /// out as one write, one wake-up of the connection and one read for the client.
    pub async fn send_all(&self, lines: &[SyncLine]) -> Result<(), SendError> {
        if !self.batch || lines.len() < 2 {
            for line in lines {
                self.send(line).await?;
            }
            return Ok(());
        }
        let mut buf: Vec<u8> = Vec::new();
        let mut counted: Vec<(&SyncLine, usize)> = Vec::new();
        for line in lines {
            let before = buf.len();
            match self.format {
                LineFormat::Ndjson => line.write_ndjson(&mut buf),
                LineFormat::Bson => buf.extend_from_slice(&line.to_bson()?),
            }
            counted.push((line, buf.len() - before));
            if buf.len() >= BATCH_BYTES {
                self.flush(&mut buf, &mut counted).await?;
            }
        }
        self.flush(&mut buf, &mut counted).await
    }

    async fn flush(
        &self,
        buf: &mut Vec<u8>,
        counted: &mut Vec<(&SyncLine, usize)>,
    ) -> Result<(), SendError> {
        if buf.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Bytes::from(std::mem::take(buf)))
            .await
            .map_err(|_| Disconnected)?;
        if let Some(m) = &self.metrics {
            for (line, len) in counted.iter() {
                m.line_sent(line, *len);
            }
        }
        counted.clear();
        Ok(())
    }

    pub async fn send(&self, line: &SyncLine) -> Result<(), SendError> {
        let bytes = self.format.encode(line)?;
        let len = bytes.len();
        self.tx.send(bytes).await.map_err(|_| Disconnected)?;
        if let Some(m) = &self.metrics {
            m.line_sent(line, len);
        }
        Ok(())
    }

    /// Resolves when the response body was dropped.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use riptide_protocol::{CheckpointComplete, OpId};

    use super::*;

    fn complete(id: i64) -> SyncLine {
        SyncLine::CheckpointComplete(CheckpointComplete {
            last_op_id: OpId(id),
        })
    }

    #[tokio::test]
    async fn batched_lines_share_a_message_unbatched_do_not() {
        let lines = [complete(1), complete(2), complete(3)];
        let (tx, mut rx) = LineSender::channel(LineFormat::Ndjson);
        tx.batched().send_all(&lines).await.unwrap();
        let one = rx.recv().await.unwrap();
        assert_eq!(
            one,
            concat!(
                r#"{"checkpoint_complete":{"last_op_id":"1"}}"#,
                "\n",
                r#"{"checkpoint_complete":{"last_op_id":"2"}}"#,
                "\n",
                r#"{"checkpoint_complete":{"last_op_id":"3"}}"#,
                "\n"
            )
        );
        assert!(rx.try_recv().is_err());

        // RSocket: one payload per line.
        let (tx, mut rx) = LineSender::channel(LineFormat::Bson);
        tx.send_all(&lines).await.unwrap();
        for line in &lines {
            assert_eq!(rx.recv().await.unwrap(), line.to_bson().unwrap());
        }
    }

    #[test]
    fn negotiation() {
        use LineFormat::*;
        let js = "application/vnd.powersync.bson-stream;q=0.9,application/x-ndjson;q=0.8";
        assert_eq!(LineFormat::negotiate(Some(js)), Bson);
        assert_eq!(LineFormat::negotiate(None), Ndjson);
        assert_eq!(LineFormat::negotiate(Some("*/*")), Ndjson);
        assert_eq!(LineFormat::negotiate(Some("application/x-ndjson")), Ndjson);
        assert_eq!(
            LineFormat::negotiate(Some("application/vnd.powersync.bson-stream")),
            Bson
        );
        assert_eq!(
            LineFormat::negotiate(Some(
                "application/vnd.powersync.bson-stream;q=0.5, */*;q=0.8"
            )),
            Ndjson
        );
        assert_eq!(
            LineFormat::negotiate(Some("application/vnd.powersync.bson-stream;q=0")),
            Ndjson
        );
        assert_eq!(LineFormat::negotiate(Some(";;;,,q=")), Ndjson);
    }
}
