//! The server side of an RSocket connection as a sans-IO state machine: feed it each received
//! WebSocket message with [`ServerConnection::receive`], act on the [`Event`]s it returns, send
//! lines with [`ServerConnection::send_next`] while [`ServerConnection::credit`] allows, and
//! transmit whatever [`ServerConnection::poll_transmit`] yields.
//!
//! It answers KEEPALIVE frames itself (respond flag cleared) in every state, including while a
//! stream has no credit; reassembles fragmented requests up to a size cap; and never lets a
//! stream send a PAYLOAD beyond the credit granted by REQUEST_STREAM and REQUEST_N.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use super::frame::{Frame, FrameError, Payload, Setup, error_code, frame_type};

/// Why the connection failed. An ERROR frame on stream 0 has been queued for the peer; after
/// transmitting it the caller closes the transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error("invalid frame")]
    Frame(#[from] FrameError),
    #[error("the first frame was not SETUP")]
    NoSetup,
    #[error("a second SETUP frame")]
    DuplicateSetup,
    #[error("unsupported RSocket version {0}")]
    UnsupportedVersion(u16),
    #[error("resumption and leases are not supported")]
    UnsupportedSetup,
    #[error("stream {0} is already open")]
    StreamInUse(u32),
    #[error("fragmented request larger than {limit} bytes")]
    RequestTooLarge { limit: usize },
    #[error("a new request on stream {new} while the fragments of stream {pending} arrive")]
    InterleavedFragments { pending: u32, new: u32 },
    #[error("the peer closed the connection with error {code:#x}: {message}")]
    PeerError { code: u32, message: String },
}

impl ConnectionError {
    fn code(&self) -> u32 {
        match self {
            ConnectionError::NoSetup => error_code::INVALID_SETUP,
            ConnectionError::UnsupportedVersion(_) | ConnectionError::UnsupportedSetup => {
                error_code::UNSUPPORTED_SETUP
            }
            _ => error_code::CONNECTION_ERROR,
        }
    }
}

/// What the application must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The client's SETUP: authenticate it, then [`ServerConnection::reject_setup`] on failure.
    Setup(Setup),
    /// A complete (reassembled) request stream with its initial credit already counted.
    RequestStream { stream_id: u32, payload: Payload },
    /// The client cancelled a stream (CANCEL, or an ERROR frame on it).
    Cancel { stream_id: u32 },
}

/// [`ServerConnection::send_next`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendRefused {
    #[error("stream {0} has no credit left")]
    NoCredit(u32),
    #[error("stream {0} is not open")]
    NotOpen(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingSetup,
    Established,
    Closed,
}

struct Reassembly {
    stream_id: u32,
    initial_n: u32,
    metadata: Option<Vec<u8>>,
    data: Vec<u8>,
}

impl Reassembly {
    fn len(&self) -> usize {
        self.metadata.as_ref().map_or(0, Vec::len) + self.data.len()
    }
}

/// One RSocket connection, server side.
pub struct ServerConnection {
    phase: Phase,
    max_request_size: usize,
    /// Open request streams and their remaining credit.
    streams: HashMap<u32, u64>,
    reassembly: Option<Reassembly>,
    outbox: VecDeque<Bytes>,
}

impl ServerConnection {
    /// `max_request_size`: cap on a reassembled request's metadata + data.
    pub fn new(max_request_size: usize) -> ServerConnection {
        ServerConnection {
            phase: Phase::AwaitingSetup,
            max_request_size,
            streams: HashMap::new(),
            reassembly: None,
            outbox: VecDeque::new(),
        }
    }

    /// Processes one received frame. On `Err` the connection is closed and a connection-level
    /// ERROR frame is queued.
    pub fn receive(&mut self, bytes: Bytes) -> Result<Option<Event>, ConnectionError> {
        if self.phase == Phase::Closed {
            return Ok(None);
        }
        let result = Frame::decode(bytes)
            .map_err(ConnectionError::from)
            .and_then(|frame| self.on_frame(frame));
        if let Err(e) = &result
            && !matches!(e, ConnectionError::PeerError { .. })
        {
            self.close_with(e.code(), e.to_string());
        }
        result
    }

    fn on_frame(&mut self, frame: Frame) -> Result<Option<Event>, ConnectionError> {
        if self.phase == Phase::AwaitingSetup {
            return self.setup(frame);
        }
        match frame {
            Frame::Setup(_) => Err(ConnectionError::DuplicateSetup),
            Frame::Keepalive { respond, data, .. } => {
                if respond {
                    self.queue(Frame::Keepalive {
                        respond: false,
                        last_received_position: 0,
                        data,
                    });
                }
                Ok(None)
            }
            Frame::RequestStream {
                stream_id,
                initial_n,
                follows,
                payload,
            } => self.request_stream(stream_id, initial_n, follows, payload),
            Frame::Payload {
                stream_id,
                follows,
                payload,
                ..
            } => self.fragment(stream_id, follows, &payload),
            Frame::RequestN { stream_id, n } => {
                if let Some(credit) = self.streams.get_mut(&stream_id) {
                    *credit = credit.saturating_add(u64::from(n));
                }
                Ok(None)
            }
            Frame::Cancel { stream_id } => Ok(self.cancel(stream_id)),
            Frame::Error {
                stream_id: 0,
                code,
                message,
            } => {
                self.phase = Phase::Closed;
                self.streams.clear();
                Err(ConnectionError::PeerError { code, message })
            }
            Frame::Error { stream_id, .. } => Ok(self.cancel(stream_id)),
            Frame::Other {
                stream_id,
                frame_type: ty,
                ..
            } => {
                if matches!(
                    ty,
                    frame_type::REQUEST_RESPONSE
                        | frame_type::REQUEST_FNF
                        | frame_type::REQUEST_CHANNEL
                ) && stream_id != 0
                {
                    self.queue(Frame::Error {
                        stream_id,
                        code: error_code::REJECTED,
                        message: "only request-stream is supported".to_owned(),
                    });
                }
                Ok(None)
            }
        }
    }

    /// The first frame: a SETUP of version 1 without resumption or leases.
    fn setup(&mut self, frame: Frame) -> Result<Option<Event>, ConnectionError> {
        let Frame::Setup(setup) = frame else {
            return Err(ConnectionError::NoSetup);
        };
        if setup.major_version != 1 {
            return Err(ConnectionError::UnsupportedVersion(setup.major_version));
        }
        if setup.resume_token.is_some() || setup.lease {
            return Err(ConnectionError::UnsupportedSetup);
        }
        self.phase = Phase::Established;
        Ok(Some(Event::Setup(setup)))
    }

    /// A REQUEST_STREAM: opens the stream with its initial credit, or starts reassembling
    /// its fragments.
    fn request_stream(
        &mut self,
        stream_id: u32,
        initial_n: u32,
        follows: bool,
        payload: Payload,
    ) -> Result<Option<Event>, ConnectionError> {
        if let Some(pending) = &self.reassembly {
            return Err(ConnectionError::InterleavedFragments {
                pending: pending.stream_id,
                new: stream_id,
            });
        }
        if self.streams.contains_key(&stream_id) {
            return Err(ConnectionError::StreamInUse(stream_id));
        }
        if payload.len() > self.max_request_size {
            return Err(ConnectionError::RequestTooLarge {
                limit: self.max_request_size,
            });
        }
        if follows {
            self.reassembly = Some(Reassembly {
                stream_id,
                initial_n,
                metadata: payload.metadata.map(|m| m.to_vec()),
                data: payload.data.to_vec(),
            });
            return Ok(None);
        }
        self.streams.insert(stream_id, u64::from(initial_n));
        Ok(Some(Event::RequestStream { stream_id, payload }))
    }

    /// A PAYLOAD from the client: the next fragment of the request being reassembled (the
    /// request opens with its last fragment); ignored on other streams.
    fn fragment(
        &mut self,
        stream_id: u32,
        follows: bool,
        payload: &Payload,
    ) -> Result<Option<Event>, ConnectionError> {
        let Some(r) = self
            .reassembly
            .as_mut()
            .filter(|r| r.stream_id == stream_id)
        else {
            // Payloads from the client on other streams (channels) are not used.
            return Ok(None);
        };
        if r.len().saturating_add(payload.len()) > self.max_request_size {
            return Err(ConnectionError::RequestTooLarge {
                limit: self.max_request_size,
            });
        }
        if let Some(m) = &payload.metadata {
            r.metadata.get_or_insert_with(Vec::new).extend_from_slice(m);
        }
        r.data.extend_from_slice(&payload.data);
        if follows {
            return Ok(None);
        }
        let Some(r) = self.reassembly.take() else {
            return Ok(None);
        };
        self.streams.insert(r.stream_id, u64::from(r.initial_n));
        Ok(Some(Event::RequestStream {
            stream_id: r.stream_id,
            payload: Payload {
                metadata: r.metadata.map(Bytes::from),
                data: Bytes::from(r.data),
            },
        }))
    }

    fn cancel(&mut self, stream_id: u32) -> Option<Event> {
        if self
            .reassembly
            .as_ref()
            .is_some_and(|r| r.stream_id == stream_id)
        {
            self.reassembly = None;
            return None;
        }
        self.streams
            .remove(&stream_id)
            .map(|_| Event::Cancel { stream_id })
    }

    /// Payloads `stream_id` may still send; 0 for a stream that is not open.
    pub fn credit(&self, stream_id: u32) -> u64 {
        self.streams.get(&stream_id).copied().unwrap_or(0)
    }

    pub fn is_open(&self, stream_id: u32) -> bool {
        self.streams.contains_key(&stream_id)
    }

    /// Queues PAYLOAD(NEXT) with `data`, spending one credit. Refused without credit.
    pub fn send_next(&mut self, stream_id: u32, data: Bytes) -> Result<(), SendRefused> {
        let credit = self
            .streams
            .get_mut(&stream_id)
            .ok_or(SendRefused::NotOpen(stream_id))?;
        if *credit == 0 {
            return Err(SendRefused::NoCredit(stream_id));
        }
        *credit -= 1;
        self.queue(Frame::Payload {
            stream_id,
            follows: false,
            complete: false,
            next: true,
            payload: Payload::data(data),
        });
        Ok(())
    }

    /// Queues a KEEPALIVE with the respond flag: the peer answers it, which shows the
    /// connection is alive in both directions. Nothing once closed.
    pub fn keepalive(&mut self) {
        if self.phase == Phase::Established {
            self.queue(Frame::Keepalive {
                respond: true,
                last_received_position: 0,
                data: Bytes::new(),
            });
        }
    }

    /// Queues PAYLOAD(COMPLETE) and closes the stream (needs no credit).
    pub fn complete(&mut self, stream_id: u32) {
        if self.streams.remove(&stream_id).is_some() {
            self.queue(Frame::Payload {
                stream_id,
                follows: false,
                complete: true,
                next: false,
                payload: Payload::default(),
            });
        }
    }

    /// Queues a stream ERROR and closes the stream.
    pub fn fail_stream(&mut self, stream_id: u32, code: u32, message: impl Into<String>) {
        if self.streams.remove(&stream_id).is_some() {
            self.queue(Frame::Error {
                stream_id,
                code,
                message: message.into(),
            });
        }
    }

    /// Rejects the SETUP (e.g. authentication failed): queues a connection ERROR with
    /// REJECTED_SETUP and closes the connection.
    pub fn reject_setup(&mut self, message: impl Into<String>) {
        self.close_with(error_code::REJECTED_SETUP, message.into());
    }

    /// Queues a connection ERROR and closes the connection.
    pub fn close_with(&mut self, code: u32, message: String) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        self.streams.clear();
        self.reassembly = None;
        self.queue(Frame::Error {
            stream_id: 0,
            code,
            message,
        });
    }

    /// Closed by an error on either side: transmit what is queued, then close the transport.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.outbox.pop_front()
    }

    fn queue(&mut self, frame: Frame) {
        self.outbox.push_back(frame.to_bytes());
    }
}
