//! Decoder of the `pgoutput` logical decoding output plugin, protocol version 1.
//!
//! Messages are decoded from the raw bytes of one `XLogData` payload into typed structs. The
//! decoder never panics and never allocates more than the input could hold: every count read
//! from the input is checked against the bytes that remain before anything is reserved. Column
//! values are zero-copy slices of the input [`Bytes`].
//!
//! Reference: <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>.

use bytes::Bytes;
use riptide_protocol::Lsn;

/// Why a pgoutput message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty pgoutput message")]
    Empty,
    #[error("unknown pgoutput message tag {0:#04x}")]
    UnknownTag(u8),
    #[error("pgoutput message {message} truncated: needed {needed} more bytes at offset {offset}")]
    Truncated {
        message: &'static str,
        offset: usize,
        needed: usize,
    },
    #[error("pgoutput message {message}: string at offset {offset} has no terminating NUL")]
    UnterminatedString {
        message: &'static str,
        offset: usize,
    },
    #[error("pgoutput message {message}: string at offset {offset} is not UTF-8")]
    InvalidUtf8 {
        message: &'static str,
        offset: usize,
    },
    #[error("pgoutput message {message}: invalid {what} {value}")]
    Invalid {
        message: &'static str,
        what: &'static str,
        value: i64,
    },
    #[error("pgoutput message {message}: {extra} unexpected trailing bytes")]
    TrailingBytes { message: &'static str, extra: usize },
}

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq)]
pub enum LogicalMessage {
    Begin(Begin),
    Commit(Commit),
    Origin(Origin),
    Relation(Relation),
    Type(TypeMessage),
    Insert(Insert),
    Update(Update),
    Delete(Delete),
    Truncate(Truncate),
    Message(Message),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begin {
    /// LSN of the transaction's commit record.
    pub final_lsn: Lsn,
    /// Commit time, microseconds since 2000-01-01.
    pub commit_time: i64,
    pub xid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// End of the commit record: where streaming resumes after this transaction.
    pub end_lsn: Lsn,
    pub commit_time: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub commit_lsn: Lsn,
    pub name: String,
}

/// Replica identity setting of a relation (`pg_class.relreplident`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// `d`: primary key columns.
    Default,
    /// `n`: nothing.
    Nothing,
    /// `f`: all columns.
    Full,
    /// `i`: columns of a chosen unique index.
    Index,
}

impl ReplicaIdentity {
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'd' => ReplicaIdentity::Default,
            b'n' => ReplicaIdentity::Nothing,
            b'f' => ReplicaIdentity::Full,
            b'i' => ReplicaIdentity::Index,
            _ => return None,
        })
    }

    pub fn as_byte(self) -> u8 {
        match self {
            ReplicaIdentity::Default => b'd',
            ReplicaIdentity::Nothing => b'n',
            ReplicaIdentity::Full => b'f',
            ReplicaIdentity::Index => b'i',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity (flag bit 1).
    pub is_key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    pub replica_identity: ReplicaIdentity,
    pub columns: Vec<RelationColumn>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMessage {
    pub id: u32,
    pub namespace: String,
    pub name: String,
}

/// One column of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    /// `n`: SQL NULL.
    Null,
    /// `u`: an unchanged TOASTed value that was not sent.
    Unchanged,
    /// `t`: text format value.
    Text(Bytes),
    /// `b`: binary format value.
    Binary(Bytes),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TupleData(pub Vec<TupleValue>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    pub relation_id: u32,
    pub new: TupleData,
}

/// The old row sent with an UPDATE or DELETE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// `K`: only the replica identity columns (others are NULL).
    Key(TupleData),
    /// `O`: the whole old row (REPLICA IDENTITY FULL).
    Full(TupleData),
}

impl OldTuple {
    pub fn tuple(&self) -> &TupleData {
        match self {
            OldTuple::Key(t) | OldTuple::Full(t) => t,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub relation_id: u32,
    /// Present when the key changed (`K`) or with REPLICA IDENTITY FULL (`O`).
    pub old: Option<OldTuple>,
    pub new: TupleData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub relation_id: u32,
    pub old: OldTuple,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    /// Bit 1: CASCADE, bit 2: RESTART IDENTITY.
    pub options: u8,
    pub relation_ids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub transactional: bool,
    pub lsn: Lsn,
    pub prefix: String,
    pub content: Bytes,
}

/// A cursor over one message's bytes.
struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let out = rest.get(..n).ok_or_else(|| DecodeError::Truncated {
            message: self.message,
            offset: self.pos,
            needed: n.saturating_sub(rest.len()),
        })?;
        self.pos += n;
        Ok(out)
    }

    fn take_bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        self.take(n)?;
        Ok(self.buf.slice(start..start + n))
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let [b] = *self.array::<1>()?;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], DecodeError> {
        let s = self.take(N)?;
        // `take` returned exactly N bytes.
        s.try_into().map_err(|_| DecodeError::Truncated {
            message: self.message,
            offset: self.pos,
            needed: N,
        })
    }

    fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(*self.array::<2>()?))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(*self.array::<4>()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(*self.array::<4>()?))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(*self.array::<8>()?))
    }

    fn lsn(&mut self) -> Result<Lsn, DecodeError> {
        Ok(Lsn(u64::from_be_bytes(*self.array::<8>()?)))
    }

    fn cstr(&mut self) -> Result<String, DecodeError> {
        let start = self.pos;
        let rest = self.buf.get(start..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::UnterminatedString {
                message: self.message,
                offset: start,
            })?;
        let s = std::str::from_utf8(rest.get(..len).unwrap_or_default()).map_err(|_| {
            DecodeError::InvalidUtf8 {
                message: self.message,
                offset: start,
            }
        })?;
        self.pos += len + 1;
        Ok(s.to_owned())
    }

    /// A non-negative count, checked to be satisfiable with `min_size` bytes per element.
    fn count(
        &mut self,
        raw: i64,
        what: &'static str,
        min_size: usize,
    ) -> Result<usize, DecodeError> {
        let n = usize::try_from(raw).map_err(|_| DecodeError::Invalid {
            message: self.message,
            what,
            value: raw,
        })?;
        let needed = n.saturating_mul(min_size);
        if needed > self.remaining() {
            return Err(DecodeError::Truncated {
                message: self.message,
                offset: self.pos,
                needed: needed - self.remaining(),
            });
        }
        Ok(n)
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes {
                message: self.message,
                extra,
            }),
        }
    }

    fn tuple(&mut self) -> Result<TupleData, DecodeError> {
        let raw = self.i16()?;
        let n = self.count(i64::from(raw), "column count", 1)?;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            let value = match self.u8()? {
                b'n' => TupleValue::Null,
                b'u' => TupleValue::Unchanged,
                kind @ (b't' | b'b') => {
                    let raw = self.i32()?;
                    let len = self.count(i64::from(raw), "value length", 1)?;
                    let data = self.take_bytes(len)?;
                    if kind == b't' {
                        TupleValue::Text(data)
                    } else {
                        TupleValue::Binary(data)
                    }
                }
                other => {
                    return Err(DecodeError::Invalid {
                        message: self.message,
                        what: "tuple value kind",
                        value: i64::from(other),
                    });
                }
            };
            values.push(value);
        }
        Ok(TupleData(values))
    }

    fn submessage_tag(&mut self) -> Result<u8, DecodeError> {
        self.u8()
    }
}

/// Decodes one pgoutput message.
pub fn decode(data: &Bytes) -> Result<LogicalMessage, DecodeError> {
    let (&tag, _) = data.split_first().ok_or(DecodeError::Empty)?;
    let message = match tag {
        b'B' => "Begin",
        b'C' => "Commit",
        b'O' => "Origin",
        b'R' => "Relation",
        b'Y' => "Type",
        b'I' => "Insert",
        b'U' => "Update",
        b'D' => "Delete",
        b'T' => "Truncate",
        b'M' => "Message",
        other => return Err(DecodeError::UnknownTag(other)),
    };
    let mut r = Reader {
        buf: data,
        pos: 1,
        message,
    };
    let decoded = match tag {
        b'B' => LogicalMessage::Begin(Begin {
            final_lsn: r.lsn()?,
            commit_time: r.i64()?,
            xid: r.u32()?,
        }),
        b'C' => LogicalMessage::Commit(Commit {
            flags: r.u8()?,
            commit_lsn: r.lsn()?,
            end_lsn: r.lsn()?,
            commit_time: r.i64()?,
        }),
        b'O' => LogicalMessage::Origin(Origin {
            commit_lsn: r.lsn()?,
            name: r.cstr()?,
        }),
        b'R' => {
            let id = r.u32()?;
            let namespace = r.cstr()?;
            let name = r.cstr()?;
            let ident = r.u8()?;
            let replica_identity =
                ReplicaIdentity::from_byte(ident).ok_or(DecodeError::Invalid {
                    message,
                    what: "replica identity",
                    value: i64::from(ident),
                })?;
            let raw = r.i16()?;
            // flags(1) + name(>=1) + type oid(4) + type modifier(4)
            let n = r.count(i64::from(raw), "column count", 10)?;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                let flags = r.u8()?;
                columns.push(RelationColumn {
                    is_key: flags & 1 != 0,
                    name: r.cstr()?,
                    type_oid: r.u32()?,
                    type_modifier: r.i32()?,
                });
            }
            LogicalMessage::Relation(Relation {
                id,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'Y' => LogicalMessage::Type(TypeMessage {
            id: r.u32()?,
            namespace: r.cstr()?,
            name: r.cstr()?,
        }),
        b'I' => {
            let relation_id = r.u32()?;
            match r.submessage_tag()? {
                b'N' => {}
                other => {
                    return Err(DecodeError::Invalid {
                        message,
                        what: "tuple marker",
                        value: i64::from(other),
                    });
                }
            }
            LogicalMessage::Insert(Insert {
                relation_id,
                new: r.tuple()?,
            })
        }
        b'U' => {
            let relation_id = r.u32()?;
            let mut old = None;
            let mut marker = r.submessage_tag()?;
            if marker == b'K' || marker == b'O' {
                let tuple = r.tuple()?;
                old = Some(if marker == b'K' {
                    OldTuple::Key(tuple)
                } else {
                    OldTuple::Full(tuple)
                });
                marker = r.submessage_tag()?;
            }
            if marker != b'N' {
                return Err(DecodeError::Invalid {
                    message,
                    what: "tuple marker",
                    value: i64::from(marker),
                });
            }
            LogicalMessage::Update(Update {
                relation_id,
                old,
                new: r.tuple()?,
            })
        }
        b'D' => {
            let relation_id = r.u32()?;
            let old = match r.submessage_tag()? {
                b'K' => OldTuple::Key(r.tuple()?),
                b'O' => OldTuple::Full(r.tuple()?),
                other => {
                    return Err(DecodeError::Invalid {
                        message,
                        what: "tuple marker",
                        value: i64::from(other),
                    });
                }
            };
            LogicalMessage::Delete(Delete { relation_id, old })
        }
        b'T' => {
            let raw = r.i32()?;
            let options = r.u8()?;
            let n = r.count(i64::from(raw), "relation count", 4)?;
            let mut relation_ids = Vec::with_capacity(n);
            for _ in 0..n {
                relation_ids.push(r.u32()?);
            }
            LogicalMessage::Truncate(Truncate {
                options,
                relation_ids,
            })
        }
        _ => {
            // b'M'
            let flags = r.u8()?;
            let lsn = r.lsn()?;
            let prefix = r.cstr()?;
            let raw = r.i32()?;
            let len = r.count(i64::from(raw), "content length", 1)?;
            LogicalMessage::Message(Message {
                transactional: flags & 1 != 0,
                lsn,
                prefix,
                content: r.take_bytes(len)?,
            })
        }
    };
    r.finish()?;
    Ok(decoded)
}

/// Encoders that build pgoutput messages, for tests (hand-built messages and round trips).
#[cfg(test)]
pub(crate) mod encode {
    use super::*;

    fn cstr(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    fn tuple(out: &mut Vec<u8>, t: &TupleData) {
        out.extend_from_slice(&(t.0.len() as i16).to_be_bytes());
        for v in &t.0 {
            match v {
                TupleValue::Null => out.push(b'n'),
                TupleValue::Unchanged => out.push(b'u'),
                TupleValue::Text(b) | TupleValue::Binary(b) => {
                    out.push(if matches!(v, TupleValue::Text(_)) {
                        b't'
                    } else {
                        b'b'
                    });
                    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    out.extend_from_slice(b);
                }
            }
        }
    }

    fn old(out: &mut Vec<u8>, o: &OldTuple) {
        match o {
            OldTuple::Key(t) => {
                out.push(b'K');
                tuple(out, t);
            }
            OldTuple::Full(t) => {
                out.push(b'O');
                tuple(out, t);
            }
        }
    }

    pub(crate) fn message(m: &LogicalMessage) -> Bytes {
        let mut out = Vec::new();
        match m {
            LogicalMessage::Begin(b) => {
                out.push(b'B');
                out.extend_from_slice(&b.final_lsn.0.to_be_bytes());
                out.extend_from_slice(&b.commit_time.to_be_bytes());
                out.extend_from_slice(&b.xid.to_be_bytes());
            }
            LogicalMessage::Commit(c) => {
                out.push(b'C');
                out.push(c.flags);
                out.extend_from_slice(&c.commit_lsn.0.to_be_bytes());
                out.extend_from_slice(&c.end_lsn.0.to_be_bytes());
                out.extend_from_slice(&c.commit_time.to_be_bytes());
            }
            LogicalMessage::Origin(o) => {
                out.push(b'O');
                out.extend_from_slice(&o.commit_lsn.0.to_be_bytes());
                cstr(&mut out, &o.name);
            }
            LogicalMessage::Relation(r) => {
                out.push(b'R');
                out.extend_from_slice(&r.id.to_be_bytes());
                cstr(&mut out, &r.namespace);
                cstr(&mut out, &r.name);
                out.push(r.replica_identity.as_byte());
                out.extend_from_slice(&(r.columns.len() as i16).to_be_bytes());
                for c in &r.columns {
                    out.push(u8::from(c.is_key));
                    cstr(&mut out, &c.name);
                    out.extend_from_slice(&c.type_oid.to_be_bytes());
                    out.extend_from_slice(&c.type_modifier.to_be_bytes());
                }
            }
            LogicalMessage::Type(t) => {
                out.push(b'Y');
                out.extend_from_slice(&t.id.to_be_bytes());
                cstr(&mut out, &t.namespace);
                cstr(&mut out, &t.name);
            }
            LogicalMessage::Insert(i) => {
                out.push(b'I');
                out.extend_from_slice(&i.relation_id.to_be_bytes());
                out.push(b'N');
                tuple(&mut out, &i.new);
            }
            LogicalMessage::Update(u) => {
                out.push(b'U');
                out.extend_from_slice(&u.relation_id.to_be_bytes());
                if let Some(o) = &u.old {
                    old(&mut out, o);
                }
                out.push(b'N');
                tuple(&mut out, &u.new);
            }
            LogicalMessage::Delete(d) => {
                out.push(b'D');
                out.extend_from_slice(&d.relation_id.to_be_bytes());
                old(&mut out, &d.old);
            }
            LogicalMessage::Truncate(t) => {
                out.push(b'T');
                out.extend_from_slice(&(t.relation_ids.len() as i32).to_be_bytes());
                out.push(t.options);
                for id in &t.relation_ids {
                    out.extend_from_slice(&id.to_be_bytes());
                }
            }
            LogicalMessage::Message(m) => {
                out.push(b'M');
                out.push(u8::from(m.transactional));
                out.extend_from_slice(&m.lsn.0.to_be_bytes());
                cstr(&mut out, &m.prefix);
                out.extend_from_slice(&(m.content.len() as i32).to_be_bytes());
                out.extend_from_slice(&m.content);
            }
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
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
}
