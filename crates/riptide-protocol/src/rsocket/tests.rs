//! Golden bytes (as rsocket-js 1.0 writes them), round trips, the connection state machine,
//! and property tests: the decoder and the connection never panic on arbitrary input.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The SETUP `@powersync/common` sends: keepalive 20 s, lifetime 90 s, JSON MIME types,
/// metadata `{"token":…}`, no data.
fn js_setup_bytes(metadata: &[u8]) -> Vec<u8> {
    let mut b = hex("00000000 0500 0001 0000 00004e20 00015f90");
    for _ in 0..2 {
        b.push(16);
        b.extend_from_slice(b"application/json");
    }
    let len = u32::try_from(metadata.len()).unwrap().to_be_bytes();
    b.extend_from_slice(&len[1..]);
    b.extend_from_slice(metadata);
    b
}

#[test]
fn golden_setup_from_the_js_client() {
    let meta = br#"{"token":"Token a.b.c","user_agent":"powersync-js/1.0"}"#;
    let frame = Frame::decode(Bytes::from(js_setup_bytes(meta))).unwrap();
    let Frame::Setup(setup) = &frame else {
        panic!("{frame:?}")
    };
    assert_eq!((setup.major_version, setup.minor_version), (1, 0));
    assert_eq!((setup.keepalive_ms, setup.lifetime_ms), (20_000, 90_000));
    assert_eq!(setup.metadata_mime, "application/json");
    assert_eq!(setup.data_mime, "application/json");
    assert_eq!(setup.payload.metadata.as_deref(), Some(&meta[..]));
    assert!(setup.payload.data.is_empty());
    assert_eq!(frame.to_bytes().to_vec(), js_setup_bytes(meta));
}

#[test]
fn golden_server_frames() {
    let cases: Vec<(Frame, &str)> = vec![
        (
            Frame::Keepalive {
                respond: false,
                last_received_position: 0,
                data: Bytes::new(),
            },
            "00000000 0c00 0000000000000000",
        ),
        (
            Frame::Payload {
                stream_id: 1,
                follows: false,
                complete: false,
                next: true,
                payload: Payload::data(&b"\x05\x00\x00\x00\x00"[..]),
            },
            "00000001 2820 0500000000",
        ),
        (
            Frame::Payload {
                stream_id: 1,
                follows: false,
                complete: true,
                next: false,
                payload: Payload::default(),
            },
            "00000001 2840",
        ),
        (
            Frame::Error {
                stream_id: 0,
                code: error_code::REJECTED_SETUP,
                message: "[PSYNC_S2101] x".into(),
            },
            "00000000 2c00 00000003 5b505359 4e435f53 32313031 5d2078",
        ),
        (
            Frame::Error {
                stream_id: 3,
                code: error_code::APPLICATION_ERROR,
                message: String::new(),
            },
            "00000003 2c00 00000201",
        ),
        (
            Frame::RequestN { stream_id: 1, n: 1 },
            "00000001 2000 00000001",
        ),
        (Frame::Cancel { stream_id: 5 }, "00000005 2400"),
        (
            Frame::RequestStream {
                stream_id: 1,
                initial_n: 10,
                follows: false,
                payload: Payload {
                    metadata: Some(Bytes::from_static(b"{}")),
                    data: Bytes::from_static(b"[]"),
                },
            },
            "00000001 1900 0000000a 000002 7b7d 5b5d",
        ),
    ];
    for (frame, expected) in cases {
        assert_eq!(frame.to_bytes().to_vec(), hex(expected), "{frame:?}");
        assert_eq!(Frame::decode(Bytes::from(hex(expected))).unwrap(), frame);
    }
}

#[test]
fn typed_decode_errors() {
    assert!(matches!(
        Frame::decode(Bytes::from_static(b"\0\0")),
        Err(FrameError::Truncated { .. })
    ));
    // Metadata length 0xffffff with 2 bytes present.
    assert!(matches!(
        Frame::decode(Bytes::from(hex("00000001 2920 ffffff 0102"))),
        Err(FrameError::Truncated {
            what: "metadata",
            needed: 0xff_ffff,
            available: 2
        })
    ));
    // Type 0x00 is reserved.
    assert_eq!(
        Frame::decode(Bytes::from(hex("00000001 0000"))),
        Err(FrameError::UnknownType(0))
    );
    // REQUEST_N on stream 0, KEEPALIVE on stream 1.
    assert!(matches!(
        Frame::decode(Bytes::from(hex("00000000 2000 00000001"))),
        Err(FrameError::WrongStream { .. })
    ));
    assert!(matches!(
        Frame::decode(Bytes::from(hex("00000001 0c80 0000000000000000"))),
        Err(FrameError::WrongStream { .. })
    ));
}

const META: &[u8] = br#"{"token":"Token a.b.c"}"#;

fn established() -> ServerConnection {
    let mut c = ServerConnection::new(1024);
    let ev = c.receive(Bytes::from(js_setup_bytes(META))).unwrap();
    assert!(matches!(ev, Some(Event::Setup(_))));
    c
}

fn request(stream_id: u32, n: u32) -> Bytes {
    Frame::RequestStream {
        stream_id,
        initial_n: n,
        follows: false,
        payload: Payload {
            metadata: Some(Bytes::from_static(br#"{"path":"/sync/stream"}"#)),
            data: Bytes::from_static(b"{}"),
        },
    }
    .to_bytes()
}

fn drain(c: &mut ServerConnection) -> Vec<Frame> {
    std::iter::from_fn(|| c.poll_transmit())
        .map(|b| Frame::decode(b).unwrap())
        .collect()
}

#[test]
fn credit_is_honoured_exactly_and_keepalive_answered_without_credit() {
    let mut c = established();
    let ev = c.receive(request(1, 2)).unwrap();
    assert!(matches!(
        ev,
        Some(Event::RequestStream { stream_id: 1, .. })
    ));
    assert_eq!(c.credit(1), 2);
    c.send_next(1, Bytes::from_static(b"a")).unwrap();
    c.send_next(1, Bytes::from_static(b"b")).unwrap();
    assert_eq!(
        c.send_next(1, Bytes::from_static(b"c")),
        Err(SendRefused::NoCredit(1))
    );
    assert_eq!(drain(&mut c).len(), 2);
    // Blocked on credit, a KEEPALIVE(respond) is still answered, respond flag cleared.
    let ka = Frame::Keepalive {
        respond: true,
        last_received_position: 7,
        data: Bytes::from_static(b"ping"),
    };
    c.receive(ka.to_bytes()).unwrap();
    assert_eq!(
        drain(&mut c),
        vec![Frame::Keepalive {
            respond: false,
            last_received_position: 0,
            data: Bytes::from_static(b"ping")
        }]
    );
    // A KEEPALIVE without the respond flag is not answered.
    let quiet = Frame::Keepalive {
        respond: false,
        last_received_position: 0,
        data: Bytes::new(),
    };
    c.receive(quiet.to_bytes()).unwrap();
    assert!(drain(&mut c).is_empty());
    c.receive(Frame::RequestN { stream_id: 1, n: 1 }.to_bytes())
        .unwrap();
    assert_eq!(c.credit(1), 1);
    c.send_next(1, Bytes::from_static(b"c")).unwrap();
    assert_eq!(c.credit(1), 0);
    c.complete(1);
    let frames = drain(&mut c);
    assert!(matches!(
        frames[1],
        Frame::Payload {
            complete: true,
            next: false,
            ..
        }
    ));
    assert_eq!(c.send_next(1, Bytes::new()), Err(SendRefused::NotOpen(1)));
}

#[test]
fn cancel_and_stream_errors() {
    let mut c = established();
    c.receive(request(1, 5)).unwrap();
    let ev = c
        .receive(Frame::Cancel { stream_id: 1 }.to_bytes())
        .unwrap();
    assert_eq!(ev, Some(Event::Cancel { stream_id: 1 }));
    assert_eq!(c.credit(1), 0);
    // Unknown streams: REQUEST_N and CANCEL are ignored.
    assert_eq!(
        c.receive(Frame::RequestN { stream_id: 9, n: 3 }.to_bytes())
            .unwrap(),
        None
    );
    c.receive(request(3, 5)).unwrap();
    assert!(matches!(
        c.receive(request(3, 5)),
        Err(ConnectionError::StreamInUse(3))
    ));
    assert!(c.is_closed());
    let frames = drain(&mut c);
    assert!(matches!(
        frames.last(),
        Some(Frame::Error {
            stream_id: 0,
            code: error_code::CONNECTION_ERROR,
            ..
        })
    ));
}

#[test]
fn first_frame_must_be_setup() {
    let mut c = ServerConnection::new(1024);
    assert_eq!(c.receive(request(1, 1)), Err(ConnectionError::NoSetup));
    assert!(matches!(
        drain(&mut c)[..],
        [Frame::Error {
            stream_id: 0,
            code: error_code::INVALID_SETUP,
            ..
        }]
    ));
    // Closed: further input is ignored.
    assert_eq!(c.receive(Bytes::from_static(b"garbage")), Ok(None));
}

#[test]
fn unsupported_version_and_rejected_setup() {
    let mut bytes = js_setup_bytes(META);
    bytes[7] = 2; // major version 2
    let mut c = ServerConnection::new(1024);
    assert_eq!(
        c.receive(Bytes::from(bytes)),
        Err(ConnectionError::UnsupportedVersion(2))
    );
    let mut c = established();
    c.reject_setup("[PSYNC_S2101] bad token");
    assert!(c.is_closed());
    assert_eq!(
        drain(&mut c),
        vec![Frame::Error {
            stream_id: 0,
            code: error_code::REJECTED_SETUP,
            message: "[PSYNC_S2101] bad token".into()
        }]
    );
}

fn fragment(stream_id: u32, first: bool, follows: bool, meta: &[u8], data: &[u8]) -> Bytes {
    let payload = Payload {
        metadata: (!meta.is_empty()).then(|| Bytes::copy_from_slice(meta)),
        data: Bytes::copy_from_slice(data),
    };
    if first {
        Frame::RequestStream {
            stream_id,
            initial_n: 3,
            follows,
            payload,
        }
    } else {
        Frame::Payload {
            stream_id,
            follows,
            complete: false,
            next: true,
            payload,
        }
    }
    .to_bytes()
}

#[test]
fn fragments_are_reassembled() {
    let mut c = established();
    assert_eq!(
        c.receive(fragment(1, true, true, br#"{"path":"#, b"{\"bu"))
            .unwrap(),
        None
    );
    // A keepalive between fragments is fine.
    c.receive(
        Frame::Keepalive {
            respond: true,
            last_received_position: 0,
            data: Bytes::new(),
        }
        .to_bytes(),
    )
    .unwrap();
    assert_eq!(
        c.receive(fragment(1, false, true, br#""/sync/stream"}"#, b"ckets\""))
            .unwrap(),
        None
    );
    let ev = c.receive(fragment(1, false, false, b"", b":[]}")).unwrap();
    assert_eq!(
        ev,
        Some(Event::RequestStream {
            stream_id: 1,
            payload: Payload {
                metadata: Some(Bytes::from_static(br#"{"path":"/sync/stream"}"#)),
                data: Bytes::from_static(br#"{"buckets":[]}"#),
            }
        })
    );
    assert_eq!(c.credit(1), 3);
}

#[test]
fn fragment_size_is_capped() {
    let mut c = established();
    c.receive(fragment(1, true, true, b"", &[b' '; 600]))
        .unwrap();
    assert_eq!(
        c.receive(fragment(1, false, true, b"", &[b' '; 600])),
        Err(ConnectionError::RequestTooLarge { limit: 1024 })
    );
    assert!(c.is_closed());
    let mut c = established();
    c.receive(fragment(1, true, true, b"", b"x")).unwrap();
    assert!(matches!(
        c.receive(fragment(3, true, false, b"", b"x")),
        Err(ConnectionError::InterleavedFragments { pending: 1, new: 3 })
    ));
}

#[test]
fn peer_error_closes_without_answer() {
    let mut c = established();
    c.receive(request(1, 1)).unwrap();
    let err = Frame::Error {
        stream_id: 0,
        code: error_code::CONNECTION_CLOSE,
        message: "bye".into(),
    };
    assert!(matches!(
        c.receive(err.to_bytes()),
        Err(ConnectionError::PeerError { code: 0x102, .. })
    ));
    assert!(c.is_closed());
    assert!(drain(&mut c).is_empty());
}

fn arb_payload() -> impl Strategy<Value = Payload> {
    (
        prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(m, d)| Payload {
            metadata: m.map(Bytes::from),
            data: Bytes::from(d),
        })
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    let stream = 1u32..0x7FFF_FFFF;
    prop_oneof![
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
            any::<bool>(),
            "[ -~]{0,40}",
            "[ -~]{0,40}",
            arb_payload()
        )
            .prop_map(
                |(ma, mi, k, l, r, lease, mm, dm, payload)| Frame::Setup(Setup {
                    major_version: ma,
                    minor_version: mi,
                    keepalive_ms: k,
                    lifetime_ms: l,
                    resume_token: r.map(Bytes::from),
                    lease,
                    metadata_mime: mm,
                    data_mime: dm,
                    payload,
                })
            ),
        (
            any::<bool>(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..20)
        )
            .prop_map(|(respond, pos, d)| Frame::Keepalive {
                respond,
                last_received_position: pos,
                data: Bytes::from(d)
            }),
        (stream.clone(), any::<u32>(), any::<bool>(), arb_payload()).prop_map(
            |(stream_id, initial_n, follows, payload)| Frame::RequestStream {
                stream_id,
                initial_n,
                follows,
                payload
            }
        ),
        (stream.clone(), any::<u32>()).prop_map(|(stream_id, n)| Frame::RequestN { stream_id, n }),
        stream
            .clone()
            .prop_map(|stream_id| Frame::Cancel { stream_id }),
        (
            stream.clone(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            arb_payload()
        )
            .prop_map(
                |(stream_id, follows, complete, next, payload)| Frame::Payload {
                    stream_id,
                    follows,
                    complete,
                    next,
                    payload
                }
            ),
        (0u32..0x7FFF_FFFF, any::<u32>(), ".{0,40}").prop_map(|(stream_id, code, message)| {
            Frame::Error {
                stream_id,
                code,
                message,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn frames_round_trip(frame in arb_frame()) {
        let bytes = frame.to_bytes();
        prop_assert_eq!(Frame::decode(bytes).unwrap(), frame);
    }

    /// Arbitrary bytes decode to a frame or a typed error, never a panic.
    #[test]
    fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Frame::decode(Bytes::from(bytes));
    }

    /// Valid frames with one byte changed and a random truncation: no panic, and no slice
    /// longer than the input (nothing is allocated from a length field).
    #[test]
    fn mutated_frames_never_panic(frame in arb_frame(), at in any::<prop::sample::Index>(),
                                  byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut bytes = frame.to_bytes().to_vec();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        bytes.truncate(cut.index(bytes.len() + 1));
        let len = bytes.len();
        if let Ok(f) = Frame::decode(Bytes::from(bytes)) {
            let payload_len = match &f {
                Frame::Setup(s) => s.payload.len(),
                Frame::RequestStream { payload, .. } | Frame::Payload { payload, .. } => payload.len(),
                _ => 0,
            };
            prop_assert!(payload_len <= len);
        }
    }

    /// Any sequence of frames (valid or not) fed to a connection: no panic, credit never
    /// exceeded, the outbox only holds decodable frames.
    #[test]
    fn connection_never_panics(frames in prop::collection::vec(
        prop_oneof![
            arb_frame().prop_map(|f| f.to_bytes()),
            prop::collection::vec(any::<u8>(), 0..32).prop_map(Bytes::from),
        ], 0..20), sends in prop::collection::vec(1u32..4, 0..20)) {
        let mut c = ServerConnection::new(256);
        let _ = c.receive(Bytes::from(js_setup_bytes(META)));
        for (i, f) in frames.into_iter().enumerate() {
            let _ = c.receive(f);
            let stream = sends.get(i).copied().unwrap_or(1);
            let before = c.credit(stream);
            let sent = c.send_next(stream, Bytes::from_static(b"x")).is_ok();
            prop_assert_eq!(sent, before > 0);
            while let Some(out) = c.poll_transmit() {
                prop_assert!(Frame::decode(out).is_ok());
            }
        }
    }
}
