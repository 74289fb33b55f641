use super::*;
use proptest::prelude::*;

fn text(s: &str) -> TupleValue {
    TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()))
}

fn samples() -> Vec<LogicalMessage> {
    vec![
        LogicalMessage::Begin(Begin {
            final_lsn: Lsn(0x16_B374_D848),
            commit_time: 770_000_000_000_000,
            xid: 742,
        }),
        LogicalMessage::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(0x100),
            end_lsn: Lsn(0x130),
            commit_time: 5,
        }),
        LogicalMessage::Origin(Origin {
            commit_lsn: Lsn(7),
            name: "node_a".into(),
        }),
        LogicalMessage::Relation(Relation {
            id: 16385,
            namespace: "public".into(),
            name: "todos".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![
                RelationColumn {
                    is_key: true,
                    name: "id".into(),
                    type_oid: 2950,
                    type_modifier: -1,
                },
                RelationColumn {
                    is_key: false,
                    name: "déscription".into(),
                    type_oid: 25,
                    type_modifier: -1,
                },
            ],
        }),
        LogicalMessage::Type(TypeMessage {
            id: 90000,
            namespace: "public".into(),
            name: "mood".into(),
        }),
        LogicalMessage::Insert(Insert {
            relation_id: 16385,
            new: TupleData(vec![text("a"), TupleValue::Null, text("")]),
        }),
        LogicalMessage::Update(Update {
            relation_id: 16385,
            old: None,
            new: TupleData(vec![text("a"), TupleValue::Unchanged]),
        }),
        LogicalMessage::Update(Update {
            relation_id: 16385,
            old: Some(OldTuple::Key(TupleData(vec![text("a"), TupleValue::Null]))),
            new: TupleData(vec![text("b"), text("x")]),
        }),
        LogicalMessage::Update(Update {
            relation_id: 1,
            old: Some(OldTuple::Full(TupleData(vec![text("a"), text("y")]))),
            new: TupleData(vec![
                text("a"),
                TupleValue::Binary(Bytes::from_static(&[0, 1])),
            ]),
        }),
        LogicalMessage::Delete(Delete {
            relation_id: 16385,
            old: OldTuple::Key(TupleData(vec![text("a"), TupleValue::Null])),
        }),
        LogicalMessage::Delete(Delete {
            relation_id: 16385,
            old: OldTuple::Full(TupleData(vec![text("a"), text("b")])),
        }),
        LogicalMessage::Truncate(Truncate {
            options: 1,
            relation_ids: vec![1, 2, 3],
        }),
        LogicalMessage::Message(Message {
            transactional: false,
            lsn: Lsn(99),
            prefix: "powersync".into(),
            content: Bytes::from_static(b"ping"),
        }),
        LogicalMessage::StreamStart(StreamStart {
            xid: 7_000,
            first_segment: true,
        }),
        LogicalMessage::StreamStart(StreamStart {
            xid: u32::MAX,
            first_segment: false,
        }),
        LogicalMessage::StreamCommit(StreamCommit {
            xid: 7_000,
            flags: 0,
            commit_lsn: Lsn(0x2_0000),
            end_lsn: Lsn(0x2_0030),
            commit_time: 770_000_000_000_001,
        }),
        LogicalMessage::StreamAbort(StreamAbort {
            xid: 7_000,
            subxid: 7_001,
        }),
    ]
}

/// Whether `m` may appear inside a Stream Start/Stop block.
fn streamable(m: &LogicalMessage) -> bool {
    !matches!(
        m,
        LogicalMessage::Begin(_)
            | LogicalMessage::Commit(_)
            | LogicalMessage::StreamStart(_)
            | LogicalMessage::StreamCommit(_)
            | LogicalMessage::StreamAbort(_)
    )
}

#[test]
fn round_trips_hand_built_messages() {
    for m in samples() {
        let bytes = encode::message(&m);
        assert_eq!(decode(&bytes).as_ref(), Ok(&m), "{m:?}");
    }
}

#[test]
fn round_trips_messages_inside_a_stream_block() {
    for m in samples().into_iter().filter(streamable) {
        let bytes = encode::message_in_stream(7_001, &m);
        let expected_xid = (!matches!(m, LogicalMessage::Origin(_))).then_some(7_001);
        assert_eq!(
            decode_in_stream(&bytes).as_ref(),
            Ok(&(expected_xid, m.clone())),
            "{m:?}"
        );
        // Outside a block the xid is read as the message's first field: never the same.
        if expected_xid.is_some() {
            assert_ne!(decode(&bytes).as_ref(), Ok(&m), "{m:?}");
        }
    }
    let stop = encode::message(&LogicalMessage::StreamStop);
    assert_eq!(
        decode_in_stream(&stop),
        Ok((None, LogicalMessage::StreamStop))
    );
    assert_eq!(decode(&stop), Err(DecodeError::UnknownTag(b'E')));
}

#[test]
fn stream_boundaries_only_outside_a_block() {
    for m in samples().into_iter().filter(|m| !streamable(m)) {
        let bytes = encode::message(&m);
        let (&tag, _) = bytes.split_first().unwrap();
        assert_eq!(
            decode_in_stream(&bytes),
            Err(DecodeError::UnknownTag(tag)),
            "{m:?}"
        );
    }
}

#[test]
fn decodes_exact_stream_wire_bytes() {
    // Stream Start of xid 742, first segment; Insert of subtransaction 743 inside it;
    // Stream Commit; Stream Abort of subtransaction 743.
    let start: &[u8] = &[b'S', 0, 0, 2, 230, 1];
    assert_eq!(
        decode(&Bytes::from_static(start)),
        Ok(LogicalMessage::StreamStart(StreamStart {
            xid: 742,
            first_segment: true
        }))
    );
    let insert: &[u8] = &[
        b'I', 0, 0, 2, 231, 0, 0, 0x40, 0x01, b'N', 0, 1, b't', 0, 0, 0, 1, b'7',
    ];
    assert_eq!(
        decode_in_stream(&Bytes::from_static(insert)),
        Ok((
            Some(743),
            LogicalMessage::Insert(Insert {
                relation_id: 16385,
                new: TupleData(vec![text("7")]),
            })
        ))
    );
    let mut commit = vec![b'c', 0, 0, 2, 230, 0];
    commit.extend_from_slice(&0x100_u64.to_be_bytes());
    commit.extend_from_slice(&0x130_u64.to_be_bytes());
    commit.extend_from_slice(&5_i64.to_be_bytes());
    assert_eq!(
        decode(&Bytes::from(commit)),
        Ok(LogicalMessage::StreamCommit(StreamCommit {
            xid: 742,
            flags: 0,
            commit_lsn: Lsn(0x100),
            end_lsn: Lsn(0x130),
            commit_time: 5,
        }))
    );
    let abort: &[u8] = &[b'A', 0, 0, 2, 230, 0, 0, 2, 231];
    assert_eq!(
        decode(&Bytes::from_static(abort)),
        Ok(LogicalMessage::StreamAbort(StreamAbort {
            xid: 742,
            subxid: 743
        }))
    );
    // A first-segment flag other than 0 or 1.
    assert!(decode(&Bytes::from_static(&[b'S', 0, 0, 2, 230, 2])).is_err());
}

#[test]
fn every_truncation_is_an_error() {
    for m in samples() {
        let bytes = encode::message(&m);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes.slice(..cut)).is_err(), "{m:?} cut at {cut}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(matches!(
            decode(&Bytes::from(longer)),
            Err(DecodeError::TrailingBytes { .. })
        ));
    }
    for m in samples().into_iter().filter(streamable) {
        let bytes = encode::message_in_stream(9, &m);
        for cut in 0..bytes.len() {
            assert!(
                decode_in_stream(&bytes.slice(..cut)).is_err(),
                "{m:?} cut at {cut}"
            );
        }
    }
}

#[test]
fn decodes_exact_wire_bytes() {
    // Insert into relation 16385: two columns, text '42' and NULL.
    let raw: &[u8] = &[
        b'I', 0, 0, 0x40, 0x01, b'N', 0, 2, b't', 0, 0, 0, 2, b'4', b'2', b'n',
    ];
    let m = decode(&Bytes::from_static(raw)).unwrap();
    assert_eq!(
        m,
        LogicalMessage::Insert(Insert {
            relation_id: 16385,
            new: TupleData(vec![text("42"), TupleValue::Null]),
        })
    );
}

#[test]
fn huge_counts_do_not_allocate() {
    // Column count 32767 with no data; value length i32::MAX; negative counts.
    let cases: Vec<Vec<u8>> = vec![
        vec![b'I', 0, 0, 0, 1, b'N', 0x7f, 0xff],
        vec![b'I', 0, 0, 0, 1, b'N', 0, 1, b't', 0x7f, 0xff, 0xff, 0xff],
        vec![b'I', 0, 0, 0, 1, b'N', 0xff, 0xff],
        vec![b'T', 0x7f, 0xff, 0xff, 0xff, 0],
        vec![b'T', 0xff, 0xff, 0xff, 0xff, 0],
        vec![b'R', 0, 0, 0, 1, b'a', 0, b'b', 0, b'd', 0x7f, 0xff],
        vec![b'X'],
        vec![],
    ];
    for c in cases {
        assert!(decode(&Bytes::from(c.clone())).is_err(), "{c:?}");
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let bytes = Bytes::from(data);
        let _ = decode(&bytes);
        let _ = decode_in_stream(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_valid_tag_never_panic(
        tag in proptest::sample::select(b"BCORYIUDTMSEcA".to_vec()),
        data in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut bytes = vec![tag];
        bytes.extend(data);
        let bytes = Bytes::from(bytes);
        let _ = decode(&bytes);
        let _ = decode_in_stream(&bytes);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        index in 0usize..17,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let m = &samples()[index % samples().len()];
        let mut bytes = encode::message(m).to_vec();
        for (at, v) in flips {
            let len = bytes.len();
            if let Some(b) = bytes.get_mut(at % len) {
                *b = v;
            }
        }
        let bytes = Bytes::from(bytes);
        let _ = decode(&bytes);
        let _ = decode_in_stream(&bytes);
    }
}
