//! RSocket over WebSocket, the transport older `@powersync/web` releases and React Native use
//! by default (docs/protocol.md §2): the [`frame`] codec, the server [`connection`] state machine
//! (credit accounting, keepalive answers, fragment reassembly) and the PowerSync [`request`]
//! payloads. No IO: the service's WebSocket route drives these.

pub mod connection;
pub mod frame;
pub mod request;

pub use connection::{ConnectionError, Event, SendRefused, ServerConnection};
pub use frame::{Frame, FrameError, Payload, Setup, error_code, flags, frame_type};
pub use request::{
    MAX_REQUEST_BYTES, PayloadMime, RequestError, RouteMetadata, SetupMetadata, decode,
    decode_sync_request,
};

#[cfg(test)]
mod tests;
