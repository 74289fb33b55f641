//! RSocket frames (one WebSocket message each) and the server connection state machine.

use bytes::Bytes;
use riptide_protocol::rsocket::{Event, Frame, ServerConnection};

/// `Frame::decode` never panics, and what it decodes encodes back to bytes that decode to the
/// same frame.
pub fn frame(data: &[u8]) {
    let Ok(frame) = Frame::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let again = Frame::decode(frame.to_bytes()).expect("an encoded frame decodes");
    assert_eq!(again, frame, "frame round trip");
}

/// A connection fed a sequence of messages (split at every `0xFF 0xFE` pair) never panics,
/// every frame it queues for the peer decodes, and once closed it stays closed.
pub fn connection(data: &[u8]) {
    let mut conn = ServerConnection::new(64 * 1024);
    for message in split_messages(data) {
        let was_closed = conn.is_closed();
        let result = conn.receive(Bytes::copy_from_slice(message));
        if was_closed {
            assert!(
                matches!(result, Ok(None)),
                "a closed connection ignores frames"
            );
        }
        match result {
            Ok(Some(Event::RequestStream { stream_id, payload })) => {
                assert!(payload.len() <= 64 * 1024, "reassembly over the cap");
                // Send while the credit allows, as the session does.
                let mut sent = 0;
                while conn.credit(stream_id) > 0 && sent < 4 {
                    conn.send_next(stream_id, Bytes::from_static(b"{}"))
                        .expect("credit allows a send");
                    sent += 1;
                }
            }
            Ok(Some(Event::Setup(_) | Event::Cancel { .. }) | None) => {}
            Err(_) => assert!(conn.is_closed(), "an error closes the connection"),
        }
        while let Some(out) = conn.poll_transmit() {
            Frame::decode(out).expect("the server's own frames decode");
        }
    }
}

fn split_messages(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.windows(2).position(|w| w == [0xFF, 0xFE]) {
            Some(at) => {
                let (head, tail) = rest.split_at(at);
                rest = &tail[2..];
                Some(head)
            }
            None => Some(std::mem::take(&mut rest)),
        }
    })
}
