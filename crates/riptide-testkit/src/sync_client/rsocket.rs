//! The RSocket transport's client side: SETUP and REQUEST_STREAM on a WebSocket, then one BSON
//! line per PAYLOAD frame, credit topped up as lines arrive and keepalives answered.
//! [`Credit::on_frame`] decides what a received frame means (no IO, unit-tested);
//! [`RSocketReader`] drives the socket with it.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use riptide_protocol::rsocket::{Frame, Payload, Setup};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::SyncClientError;

/// REQUEST_STREAM asks for this many lines, and every `CREDIT / 2` lines received the reader
/// asks for that many more.
const CREDIT: u32 = 256;
/// The one stream of the connection.
const STREAM_ID: u32 = 1;

type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What one received frame means for the reader.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// A line's BSON, and a REQUEST_N to send before reading on when the credit ran low.
    Line(Bytes, Option<Frame>),
    /// A frame to send back (a keepalive answer); no line.
    Reply(Frame),
    /// The stream completed.
    End,
}

/// Lines received since the last REQUEST_N.
#[derive(Debug, Default)]
struct Credit {
    since_request: u32,
}

impl Credit {
    fn on_frame(&mut self, frame: Frame) -> Result<Step, SyncClientError> {
        match frame {
            Frame::Payload {
                next: true,
                follows: false,
                payload,
                ..
            } => {
                self.since_request += 1;
                let request_n = (self.since_request >= CREDIT / 2).then(|| Frame::RequestN {
                    stream_id: STREAM_ID,
                    n: std::mem::take(&mut self.since_request),
                });
                Ok(Step::Line(payload.data, request_n))
            }
            Frame::Payload {
                next: false,
                complete: true,
                ..
            } => Ok(Step::End),
            Frame::Keepalive {
                respond: true,
                last_received_position,
                ..
            } => Ok(Step::Reply(Frame::Keepalive {
                respond: false,
                last_received_position,
                data: Bytes::new(),
            })),
            Frame::Error { code, message, .. } => {
                Err(SyncClientError::RSocketError { code, message })
            }
            other => Err(SyncClientError::UnexpectedFrame(format!("{other:?}"))),
        }
    }
}

/// A sync stream over RSocket on a WebSocket.
pub(super) struct RSocketReader {
    ws: WebSocket,
    credit: Credit,
    /// Payload bytes of the WebSocket messages received.
    wire: u64,
}

impl RSocketReader {
    /// Opens the WebSocket on the endpoint's `/sync/stream`, sends SETUP (JSON metadata with the
    /// token) and REQUEST_STREAM (JSON `body`, [`CREDIT`] lines of credit).
    pub(super) async fn connect(
        endpoint: &str,
        token: &str,
        user_agent: &str,
        body: &Value,
    ) -> Result<RSocketReader, SyncClientError> {
        // http://… → ws://…, https://… → wss://…
        let url = format!(
            "ws{}/sync/stream",
            endpoint.strip_prefix("http").unwrap_or(endpoint)
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
        let setup = Frame::Setup(Setup {
            major_version: 1,
            minor_version: 0,
            keepalive_ms: 20_000,
            lifetime_ms: 90_000,
            resume_token: None,
            lease: false,
            metadata_mime: "application/json".into(),
            data_mime: "application/json".into(),
            payload: Payload {
                metadata: Some(
                    json!({"token": format!("Token {token}"), "user_agent": user_agent})
                        .to_string()
                        .into(),
                ),
                data: Bytes::new(),
            },
        });
        let request = Frame::RequestStream {
            stream_id: STREAM_ID,
            initial_n: CREDIT,
            follows: false,
            payload: Payload {
                metadata: Some(json!({"path": "/sync/stream"}).to_string().into()),
                data: body.to_string().into(),
            },
        };
        ws.send(Message::Binary(setup.to_bytes())).await?;
        ws.send(Message::Binary(request.to_bytes())).await?;
        Ok(RSocketReader {
            ws,
            credit: Credit::default(),
            wire: 0,
        })
    }

    pub(super) fn wire_bytes(&self) -> u64 {
        self.wire
    }

    /// The next line, `Ok(None)` once the stream completed or the socket closed; `timeout`
    /// bounds each wait for a message.
    pub(super) async fn next_line(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Value>, SyncClientError> {
        loop {
            let message = match tokio::time::timeout(timeout, self.ws.next()).await {
                Err(_) => return Err(SyncClientError::Timeout(timeout)),
                Ok(None) => return Ok(None),
                Ok(Some(message)) => message?,
            };
            let Message::Binary(bytes) = message else {
                continue;
            };
            self.wire += bytes.len() as u64;
            let frame = Frame::decode(bytes).map_err(SyncClientError::Frame)?;
            match self.credit.on_frame(frame)? {
                Step::Line(data, request_n) => {
                    if let Some(frame) = request_n {
                        self.ws.send(Message::Binary(frame.to_bytes())).await?;
                    }
                    return bson::deserialize_from_slice(&data)
                        .map(Some)
                        .map_err(SyncClientError::Bson);
                }
                Step::Reply(frame) => self.ws.send(Message::Binary(frame.to_bytes())).await?,
                Step::End => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(data: &'static [u8]) -> Frame {
        Frame::Payload {
            stream_id: STREAM_ID,
            follows: false,
            complete: false,
            next: true,
            payload: Payload::data(data),
        }
    }

    #[test]
    fn credit_is_topped_up_every_half_credit_of_lines() {
        let mut credit = Credit::default();
        let mut requested = Vec::new();
        for i in 1..=CREDIT * 2 {
            match credit.on_frame(payload(b"line")).unwrap() {
                Step::Line(data, request_n) => {
                    assert_eq!(&data[..], b"line");
                    if let Some(frame) = request_n {
                        requested.push((i, frame));
                    }
                }
                other => panic!("a payload is a line, not {other:?}"),
            }
        }
        let half = CREDIT / 2;
        let expected: Vec<(u32, Frame)> = (1..=4)
            .map(|k| {
                (
                    k * half,
                    Frame::RequestN {
                        stream_id: STREAM_ID,
                        n: half,
                    },
                )
            })
            .collect();
        assert_eq!(requested, expected);
    }

    #[test]
    fn keepalives_are_answered_and_completion_ends_the_stream() {
        let mut credit = Credit::default();
        let keepalive = Frame::Keepalive {
            respond: true,
            last_received_position: 7,
            data: Bytes::from_static(b"ping"),
        };
        assert_eq!(
            credit.on_frame(keepalive).unwrap(),
            Step::Reply(Frame::Keepalive {
                respond: false,
                last_received_position: 7,
                data: Bytes::new(),
            })
        );
        let complete = Frame::Payload {
            stream_id: STREAM_ID,
            follows: false,
            complete: true,
            next: false,
            payload: Payload::default(),
        };
        assert_eq!(credit.on_frame(complete).unwrap(), Step::End);
    }

    #[test]
    fn errors_and_fragments_are_refused() {
        let mut credit = Credit::default();
        let error = Frame::Error {
            stream_id: STREAM_ID,
            code: 0x201,
            message: "PSYNC_S2101".into(),
        };
        assert!(matches!(
            credit.on_frame(error),
            Err(SyncClientError::RSocketError { code: 0x201, .. })
        ));
        let fragment = Frame::Payload {
            stream_id: STREAM_ID,
            follows: true,
            complete: false,
            next: true,
            payload: Payload::data(&b"half"[..]),
        };
        assert!(matches!(
            credit.on_frame(fragment),
            Err(SyncClientError::UnexpectedFrame(_))
        ));
    }
}
