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
}

impl LineSender {
    pub fn channel(format: LineFormat) -> (LineSender, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(LINE_BUFFER);
        let sender = LineSender {
            tx,
            format,
            metrics: None,
        };
        (sender, rx)
    }

    /// Counts sent lines, bytes and checkpoints in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<ServiceMetrics>) -> LineSender {
        self.metrics = Some(metrics);
        self
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
    use super::*;

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
