//! RSocket 1.0 frames as carried over WebSocket: one frame per binary message, without the
//! 3-byte length prefix of the TCP transport (docs/protocol.md §2.5).
//!
//! Header: stream id (u32 BE, top bit reserved), then a u16 of `type << 10 | flags`. Every
//! length inside a frame is checked against the bytes actually present before anything is
//! sliced; payload slices share the input buffer, so decoding never allocates from a length
//! field.

use bytes::{Buf, BufMut, Bytes};

/// Frame type numbers.
pub mod frame_type {
    pub const SETUP: u8 = 0x01;
    pub const LEASE: u8 = 0x02;
    pub const KEEPALIVE: u8 = 0x03;
    pub const REQUEST_RESPONSE: u8 = 0x04;
    pub const REQUEST_FNF: u8 = 0x05;
    pub const REQUEST_STREAM: u8 = 0x06;
    pub const REQUEST_CHANNEL: u8 = 0x07;
    pub const REQUEST_N: u8 = 0x08;
    pub const CANCEL: u8 = 0x09;
    pub const PAYLOAD: u8 = 0x0A;
    pub const ERROR: u8 = 0x0B;
    pub const METADATA_PUSH: u8 = 0x0C;
    pub const RESUME: u8 = 0x0D;
    pub const RESUME_OK: u8 = 0x0E;
    pub const EXT: u8 = 0x3F;
}

/// Flag bits (the low 10 bits of the type/flags word).
pub mod flags {
    /// The frame may be ignored if not understood.
    pub const IGNORE: u16 = 0x200;
    /// Metadata present (u24 length prefix).
    pub const METADATA: u16 = 0x100;
    /// More fragments of this frame follow.
    pub const FOLLOWS: u16 = 0x80;
    /// KEEPALIVE: the receiver must answer.
    pub const RESPOND: u16 = 0x80;
    /// SETUP: a resume token is present.
    pub const RESUME_ENABLE: u16 = 0x80;
    /// SETUP: the client honours LEASE.
    pub const LEASE: u16 = 0x40;
    pub const COMPLETE: u16 = 0x40;
    pub const NEXT: u16 = 0x20;
}

/// Error codes of ERROR frames.
pub mod error_code {
    pub const INVALID_SETUP: u32 = 0x001;
    pub const UNSUPPORTED_SETUP: u32 = 0x002;
    pub const REJECTED_SETUP: u32 = 0x003;
    pub const CONNECTION_ERROR: u32 = 0x101;
    pub const CONNECTION_CLOSE: u32 = 0x102;
    pub const APPLICATION_ERROR: u32 = 0x201;
    pub const REJECTED: u32 = 0x202;
    pub const CANCELED: u32 = 0x203;
    pub const INVALID: u32 = 0x204;
}

const HEADER_LEN: usize = 6;
const MAX_U24: usize = 0xFF_FFFF;

/// Metadata and data of a SETUP, REQUEST_* or PAYLOAD frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    /// Present when the METADATA flag is set (possibly empty).
    pub metadata: Option<Bytes>,
    pub data: Bytes,
}

impl Payload {
    pub fn data(data: impl Into<Bytes>) -> Payload {
        Payload {
            metadata: None,
            data: data.into(),
        }
    }

    pub fn len(&self) -> usize {
        self.metadata.as_ref().map_or(0, Bytes::len) + self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub major_version: u16,
    pub minor_version: u16,
    /// Milliseconds between the client's KEEPALIVE frames.
    pub keepalive_ms: u32,
    /// Milliseconds without a KEEPALIVE after which the peer counts as dead.
    pub lifetime_ms: u32,
    pub resume_token: Option<Bytes>,
    pub lease: bool,
    pub metadata_mime: String,
    pub data_mime: String,
    pub payload: Payload,
}

/// One RSocket frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Setup(Setup),
    Keepalive {
        respond: bool,
        last_received_position: u64,
        data: Bytes,
    },
    RequestStream {
        stream_id: u32,
        initial_n: u32,
        follows: bool,
        payload: Payload,
    },
    RequestN {
        stream_id: u32,
        n: u32,
    },
    Cancel {
        stream_id: u32,
    },
    Payload {
        stream_id: u32,
        follows: bool,
        complete: bool,
        next: bool,
        payload: Payload,
    },
    Error {
        stream_id: u32,
        code: u32,
        message: String,
    },
    /// A well-formed header of a frame type this server does not act on (LEASE,
    /// REQUEST_RESPONSE, REQUEST_FNF, REQUEST_CHANNEL, METADATA_PUSH, RESUME, RESUME_OK, EXT).
    Other {
        stream_id: u32,
        frame_type: u8,
        flags: u16,
    },
}

/// Why bytes are not a valid frame. Never panics, never allocates from a length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame too short: {needed} bytes needed for {what}, {available} available")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    #[error("{frame} frame on stream {stream_id}, expected stream {expected}")]
    WrongStream {
        frame: &'static str,
        stream_id: u32,
        expected: &'static str,
    },
    #[error("{0} is not ASCII")]
    NotAscii(&'static str),
}

impl Setup {
    /// The body of a SETUP frame with flags `fl`, after the frame header.
    fn decode(mut buf: Bytes, fl: u16) -> Result<Setup, FrameError> {
        need(&buf, 12, "SETUP versions and timers")?;
        let major_version = buf.get_u16();
        let minor_version = buf.get_u16();
        let keepalive_ms = buf.get_u32();
        let lifetime_ms = buf.get_u32();
        let resume_token = if fl & flags::RESUME_ENABLE != 0 {
            need(&buf, 2, "resume token length")?;
            let len = usize::from(buf.get_u16());
            Some(take(&mut buf, len, "resume token")?)
        } else {
            None
        };
        let metadata_mime = mime(&mut buf, "metadata MIME type")?;
        let data_mime = mime(&mut buf, "data MIME type")?;
        let payload = payload(buf, fl)?;
        Ok(Setup {
            major_version,
            minor_version,
            keepalive_ms,
            lifetime_ms,
            resume_token,
            lease: fl & flags::LEASE != 0,
            metadata_mime,
            data_mime,
            payload,
        })
    }
}

impl Frame {
    /// The stream a frame belongs to (0 for connection frames).
    pub fn stream_id(&self) -> u32 {
        match self {
            Frame::Setup(_) | Frame::Keepalive { .. } => 0,
            Frame::RequestStream { stream_id, .. }
            | Frame::RequestN { stream_id, .. }
            | Frame::Cancel { stream_id }
            | Frame::Payload { stream_id, .. }
            | Frame::Error { stream_id, .. }
            | Frame::Other { stream_id, .. } => *stream_id,
        }
    }

    /// Decodes one frame (one WebSocket message). Slices of `buf` are shared, not copied.
    pub fn decode(mut buf: Bytes) -> Result<Frame, FrameError> {
        need(&buf, HEADER_LEN, "frame header")?;
        let stream_id = buf.get_u32() & 0x7FFF_FFFF;
        let type_and_flags = buf.get_u16();
        let ty = (type_and_flags >> 10) as u8;
        let fl = type_and_flags & 0x3FF;
        let stream0 = |frame: &'static str| {
            if stream_id == 0 {
                Ok(())
            } else {
                Err(FrameError::WrongStream {
                    frame,
                    stream_id,
                    expected: "0",
                })
            }
        };
        let stream_n = |frame: &'static str| {
            if stream_id != 0 {
                Ok(())
            } else {
                Err(FrameError::WrongStream {
                    frame,
                    stream_id,
                    expected: "> 0",
                })
            }
        };
        match ty {
            frame_type::SETUP => {
                stream0("SETUP")?;
                Ok(Frame::Setup(Setup::decode(buf, fl)?))
            }
            frame_type::KEEPALIVE => {
                stream0("KEEPALIVE")?;
                need(&buf, 8, "KEEPALIVE position")?;
                let last_received_position = buf.get_u64();
                Ok(Frame::Keepalive {
                    respond: fl & flags::RESPOND != 0,
                    last_received_position,
                    data: buf,
                })
            }
            frame_type::REQUEST_STREAM => {
                stream_n("REQUEST_STREAM")?;
                need(&buf, 4, "REQUEST_STREAM initial request-n")?;
                let initial_n = buf.get_u32();
                Ok(Frame::RequestStream {
                    stream_id,
                    initial_n,
                    follows: fl & flags::FOLLOWS != 0,
                    payload: payload(buf, fl)?,
                })
            }
            frame_type::REQUEST_N => {
                stream_n("REQUEST_N")?;
                need(&buf, 4, "REQUEST_N")?;
                Ok(Frame::RequestN {
                    stream_id,
                    n: buf.get_u32(),
                })
            }
            frame_type::CANCEL => {
                stream_n("CANCEL")?;
                Ok(Frame::Cancel { stream_id })
            }
            frame_type::PAYLOAD => {
                stream_n("PAYLOAD")?;
                Ok(Frame::Payload {
                    stream_id,
                    follows: fl & flags::FOLLOWS != 0,
                    complete: fl & flags::COMPLETE != 0,
                    next: fl & flags::NEXT != 0,
                    payload: payload(buf, fl)?,
                })
            }
            frame_type::ERROR => {
                need(&buf, 4, "ERROR code")?;
                let code = buf.get_u32();
                Ok(Frame::Error {
                    stream_id,
                    code,
                    message: String::from_utf8_lossy(&buf).into_owned(),
                })
            }
            frame_type::LEASE
            | frame_type::REQUEST_RESPONSE
            | frame_type::REQUEST_FNF
            | frame_type::REQUEST_CHANNEL
            | frame_type::METADATA_PUSH
            | frame_type::RESUME
            | frame_type::RESUME_OK
            | frame_type::EXT => Ok(Frame::Other {
                stream_id,
                frame_type: ty,
                flags: fl,
            }),
            other => Err(FrameError::UnknownType(other)),
        }
    }

    /// Appends the encoded frame to `out`. Metadata longer than 2^24-1 bytes and MIME types
    /// longer than 255 bytes are truncated (this server never produces either).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Setup(s) => {
                let mut fl = 0;
                if s.resume_token.is_some() {
                    fl |= flags::RESUME_ENABLE;
                }
                if s.lease {
                    fl |= flags::LEASE;
                }
                if s.payload.metadata.is_some() {
                    fl |= flags::METADATA;
                }
                header(out, 0, frame_type::SETUP, fl);
                out.put_u16(s.major_version);
                out.put_u16(s.minor_version);
                out.put_u32(s.keepalive_ms);
                out.put_u32(s.lifetime_ms);
                if let Some(token) = &s.resume_token {
                    let len = token.len().min(usize::from(u16::MAX));
                    out.put_u16(u16::try_from(len).unwrap_or(u16::MAX));
                    out.extend_from_slice(&token[..len]);
                }
                for mime in [&s.metadata_mime, &s.data_mime] {
                    let len = mime.len().min(255);
                    out.put_u8(u8::try_from(len).unwrap_or(u8::MAX));
                    out.extend_from_slice(&mime.as_bytes()[..len]);
                }
                put_payload(out, &s.payload);
            }
            Frame::Keepalive {
                respond,
                last_received_position,
                data,
            } => {
                header(
                    out,
                    0,
                    frame_type::KEEPALIVE,
                    if *respond { flags::RESPOND } else { 0 },
                );
                out.put_u64(*last_received_position);
                out.extend_from_slice(data);
            }
            Frame::RequestStream {
                stream_id,
                initial_n,
                follows,
                payload,
            } => {
                let mut fl = if *follows { flags::FOLLOWS } else { 0 };
                if payload.metadata.is_some() {
                    fl |= flags::METADATA;
                }
                header(out, *stream_id, frame_type::REQUEST_STREAM, fl);
                out.put_u32(*initial_n);
                put_payload(out, payload);
            }
            Frame::RequestN { stream_id, n } => {
                header(out, *stream_id, frame_type::REQUEST_N, 0);
                out.put_u32(*n);
            }
            Frame::Cancel { stream_id } => header(out, *stream_id, frame_type::CANCEL, 0),
            Frame::Payload {
                stream_id,
                follows,
                complete,
                next,
                payload,
            } => {
                let mut fl = 0;
                if *follows {
                    fl |= flags::FOLLOWS;
                }
                if *complete {
                    fl |= flags::COMPLETE;
                }
                if *next {
                    fl |= flags::NEXT;
                }
                if payload.metadata.is_some() {
                    fl |= flags::METADATA;
                }
                header(out, *stream_id, frame_type::PAYLOAD, fl);
                put_payload(out, payload);
            }
            Frame::Error {
                stream_id,
                code,
                message,
            } => {
                header(out, *stream_id, frame_type::ERROR, 0);
                out.put_u32(*code);
                out.extend_from_slice(message.as_bytes());
            }
            Frame::Other {
                stream_id,
                frame_type,
                flags,
            } => header(out, *stream_id, *frame_type, *flags),
        }
    }

    /// The encoded frame.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::new();
        self.encode(&mut out);
        Bytes::from(out)
    }
}

fn header(out: &mut Vec<u8>, stream_id: u32, ty: u8, fl: u16) {
    out.put_u32(stream_id & 0x7FFF_FFFF);
    out.put_u16((u16::from(ty & 0x3F) << 10) | (fl & 0x3FF));
}

fn put_payload(out: &mut Vec<u8>, payload: &Payload) {
    if let Some(metadata) = &payload.metadata {
        let len = metadata.len().min(MAX_U24);
        let l = u32::try_from(len).unwrap_or(0);
        out.extend_from_slice(&l.to_be_bytes()[1..]);
        out.extend_from_slice(&metadata[..len]);
    }
    out.extend_from_slice(&payload.data);
}

fn need(buf: &Bytes, n: usize, what: &'static str) -> Result<(), FrameError> {
    if buf.len() < n {
        return Err(FrameError::Truncated {
            what,
            needed: n,
            available: buf.len(),
        });
    }
    Ok(())
}

fn take(buf: &mut Bytes, len: usize, what: &'static str) -> Result<Bytes, FrameError> {
    need(buf, len, what)?;
    Ok(buf.split_to(len))
}

fn mime(buf: &mut Bytes, what: &'static str) -> Result<String, FrameError> {
    need(buf, 1, what)?;
    let len = usize::from(buf.get_u8());
    let bytes = take(buf, len, what)?;
    if !bytes.is_ascii() {
        return Err(FrameError::NotAscii(what));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn payload(mut buf: Bytes, fl: u16) -> Result<Payload, FrameError> {
    let metadata = if fl & flags::METADATA != 0 {
        need(&buf, 3, "metadata length")?;
        let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
        buf.advance(3);
        Some(take(&mut buf, len, "metadata")?)
    } else {
        None
    };
    Ok(Payload {
        metadata,
        data: buf,
    })
}
