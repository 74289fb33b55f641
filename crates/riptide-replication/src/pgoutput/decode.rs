//! The decoder: a bounds-checked cursor over one message's bytes, and the body of each
//! message kind.

use bytes::Bytes;
use riptide_protocol::Lsn;

use super::{
    Begin, Commit, DecodeError, Delete, Insert, LogicalMessage, Message, OldTuple, Origin,
    Relation, RelationColumn, ReplicaIdentity, StreamAbort, StreamCommit, StreamStart, Truncate,
    TupleData, TupleValue, TypeMessage, Update,
};

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

/// Decodes one pgoutput message outside a streamed transaction's block.
pub fn decode(data: &Bytes) -> Result<LogicalMessage, DecodeError> {
    decode_at(data, false).map(|(_, message)| message)
}

/// Decodes one pgoutput message inside a Stream Start/Stop block: with the xid of the
/// (sub)transaction it belongs to, for the messages that carry one (row changes, Relation,
/// Type, Message), `None` for the others (Stream Stop, Origin).
pub fn decode_in_stream(data: &Bytes) -> Result<(Option<u32>, LogicalMessage), DecodeError> {
    decode_at(data, true)
}

fn decode_at(data: &Bytes, in_stream: bool) -> Result<(Option<u32>, LogicalMessage), DecodeError> {
    let (&tag, _) = data.split_first().ok_or(DecodeError::Empty)?;
    // Inside a block: the change-like messages and Stream Stop; Origin after a first
    // Stream Start. Outside: the transaction boundaries and the stream's own messages.
    let message = match (tag, in_stream) {
        (b'B', false) => "Begin",
        (b'C', false) => "Commit",
        (b'O', _) => "Origin",
        (b'R', _) => "Relation",
        (b'Y', _) => "Type",
        (b'I', _) => "Insert",
        (b'U', _) => "Update",
        (b'D', _) => "Delete",
        (b'T', _) => "Truncate",
        (b'M', _) => "Message",
        (b'S', false) => "Stream Start",
        (b'E', true) => "Stream Stop",
        (b'c', false) => "Stream Commit",
        (b'A', false) => "Stream Abort",
        (other, _) => return Err(DecodeError::UnknownTag(other)),
    };
    let mut r = Reader {
        buf: data,
        pos: 1,
        message,
    };
    let xid = match tag {
        b'R' | b'Y' | b'I' | b'U' | b'D' | b'T' | b'M' if in_stream => Some(r.u32()?),
        _ => None,
    };
    let decoded = match tag {
        b'B' => LogicalMessage::Begin(r.begin()?),
        b'C' => LogicalMessage::Commit(r.commit()?),
        b'O' => LogicalMessage::Origin(r.origin()?),
        b'R' => LogicalMessage::Relation(r.relation()?),
        b'Y' => LogicalMessage::Type(r.type_message()?),
        b'I' => LogicalMessage::Insert(r.insert()?),
        b'U' => LogicalMessage::Update(r.update()?),
        b'D' => LogicalMessage::Delete(r.delete()?),
        b'T' => LogicalMessage::Truncate(r.truncate()?),
        b'M' => LogicalMessage::Message(r.logical_message()?),
        b'S' => LogicalMessage::StreamStart(r.stream_start()?),
        b'E' => LogicalMessage::StreamStop,
        b'c' => LogicalMessage::StreamCommit(r.stream_commit()?),
        // b'A'
        _ => LogicalMessage::StreamAbort(r.stream_abort()?),
    };
    r.finish()?;
    Ok((xid, decoded))
}

/// The body of each message kind, after its tag.
impl Reader<'_> {
    fn invalid(&self, what: &'static str, value: impl Into<i64>) -> DecodeError {
        DecodeError::Invalid {
            message: self.message,
            what,
            value: value.into(),
        }
    }

    fn begin(&mut self) -> Result<Begin, DecodeError> {
        Ok(Begin {
            final_lsn: self.lsn()?,
            commit_time: self.i64()?,
            xid: self.u32()?,
        })
    }

    fn commit(&mut self) -> Result<Commit, DecodeError> {
        Ok(Commit {
            flags: self.u8()?,
            commit_lsn: self.lsn()?,
            end_lsn: self.lsn()?,
            commit_time: self.i64()?,
        })
    }

    fn origin(&mut self) -> Result<Origin, DecodeError> {
        Ok(Origin {
            commit_lsn: self.lsn()?,
            name: self.cstr()?,
        })
    }

    fn relation(&mut self) -> Result<Relation, DecodeError> {
        let id = self.u32()?;
        let namespace = self.cstr()?;
        let name = self.cstr()?;
        let ident = self.u8()?;
        let replica_identity = ReplicaIdentity::from_byte(ident)
            .ok_or_else(|| self.invalid("replica identity", ident))?;
        let raw = self.i16()?;
        // flags(1) + name(>=1) + type oid(4) + type modifier(4)
        let n = self.count(i64::from(raw), "column count", 10)?;
        let mut columns = Vec::with_capacity(n);
        for _ in 0..n {
            let flags = self.u8()?;
            columns.push(RelationColumn {
                is_key: flags & 1 != 0,
                name: self.cstr()?,
                type_oid: self.u32()?,
                type_modifier: self.i32()?,
            });
        }
        Ok(Relation {
            id,
            namespace,
            name,
            replica_identity,
            columns,
        })
    }

    fn type_message(&mut self) -> Result<TypeMessage, DecodeError> {
        Ok(TypeMessage {
            id: self.u32()?,
            namespace: self.cstr()?,
            name: self.cstr()?,
        })
    }

    fn insert(&mut self) -> Result<Insert, DecodeError> {
        let relation_id = self.u32()?;
        match self.submessage_tag()? {
            b'N' => {}
            other => return Err(self.invalid("tuple marker", other)),
        }
        Ok(Insert {
            relation_id,
            new: self.tuple()?,
        })
    }

    fn update(&mut self) -> Result<Update, DecodeError> {
        let relation_id = self.u32()?;
        let mut old = None;
        let mut marker = self.submessage_tag()?;
        if marker == b'K' || marker == b'O' {
            let tuple = self.tuple()?;
            old = Some(if marker == b'K' {
                OldTuple::Key(tuple)
            } else {
                OldTuple::Full(tuple)
            });
            marker = self.submessage_tag()?;
        }
        if marker != b'N' {
            return Err(self.invalid("tuple marker", marker));
        }
        Ok(Update {
            relation_id,
            old,
            new: self.tuple()?,
        })
    }

    fn delete(&mut self) -> Result<Delete, DecodeError> {
        let relation_id = self.u32()?;
        let old = match self.submessage_tag()? {
            b'K' => OldTuple::Key(self.tuple()?),
            b'O' => OldTuple::Full(self.tuple()?),
            other => return Err(self.invalid("tuple marker", other)),
        };
        Ok(Delete { relation_id, old })
    }

    fn truncate(&mut self) -> Result<Truncate, DecodeError> {
        let raw = self.i32()?;
        let options = self.u8()?;
        let n = self.count(i64::from(raw), "relation count", 4)?;
        let mut relation_ids = Vec::with_capacity(n);
        for _ in 0..n {
            relation_ids.push(self.u32()?);
        }
        Ok(Truncate {
            options,
            relation_ids,
        })
    }

    fn logical_message(&mut self) -> Result<Message, DecodeError> {
        let flags = self.u8()?;
        let lsn = self.lsn()?;
        let prefix = self.cstr()?;
        let raw = self.i32()?;
        let len = self.count(i64::from(raw), "content length", 1)?;
        Ok(Message {
            transactional: flags & 1 != 0,
            lsn,
            prefix,
            content: self.take_bytes(len)?,
        })
    }

    fn stream_start(&mut self) -> Result<StreamStart, DecodeError> {
        let xid = self.u32()?;
        let first = self.u8()?;
        if first > 1 {
            return Err(self.invalid("first-segment flag", first));
        }
        Ok(StreamStart {
            xid,
            first_segment: first == 1,
        })
    }

    fn stream_commit(&mut self) -> Result<StreamCommit, DecodeError> {
        Ok(StreamCommit {
            xid: self.u32()?,
            flags: self.u8()?,
            commit_lsn: self.lsn()?,
            end_lsn: self.lsn()?,
            commit_time: self.i64()?,
        })
    }

    fn stream_abort(&mut self) -> Result<StreamAbort, DecodeError> {
        Ok(StreamAbort {
            xid: self.u32()?,
            subxid: self.u32()?,
        })
    }
}
