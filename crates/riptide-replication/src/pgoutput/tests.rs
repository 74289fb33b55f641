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
    ]
}

#[test]
fn round_trips_hand_built_messages() {
    for m in samples() {
        let bytes = encode::message(&m);
        assert_eq!(decode(&bytes).as_ref(), Ok(&m), "{m:?}");
    }
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
        let _ = decode(&Bytes::from(data));
    }

    #[test]
    fn arbitrary_bytes_after_valid_tag_never_panic(
        tag in proptest::sample::select(b"BCORYIUDTM".to_vec()),
        data in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut bytes = vec![tag];
        bytes.extend(data);
        let _ = decode(&Bytes::from(bytes));
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        index in 0usize..13,
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
        let _ = decode(&Bytes::from(bytes));
    }
}
