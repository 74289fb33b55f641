//! Encoders that build pgoutput messages, for tests (hand-built messages and round trips,
//! and the synthetic streams of the applier's tests).

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

/// The bytes of `m` as pgoutput sends them.
pub fn message(m: &LogicalMessage) -> Bytes {
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
        LogicalMessage::StreamStart(s) => {
            out.push(b'S');
            out.extend_from_slice(&s.xid.to_be_bytes());
            out.push(u8::from(s.first_segment));
        }
        LogicalMessage::StreamStop => out.push(b'E'),
        LogicalMessage::StreamCommit(c) => {
            out.push(b'c');
            out.extend_from_slice(&c.xid.to_be_bytes());
            out.push(c.flags);
            out.extend_from_slice(&c.commit_lsn.0.to_be_bytes());
            out.extend_from_slice(&c.end_lsn.0.to_be_bytes());
            out.extend_from_slice(&c.commit_time.to_be_bytes());
        }
        LogicalMessage::StreamAbort(a) => {
            out.push(b'A');
            out.extend_from_slice(&a.xid.to_be_bytes());
            out.extend_from_slice(&a.subxid.to_be_bytes());
        }
    }
    Bytes::from(out)
}

/// The bytes of `m` as pgoutput sends them inside a Stream Start/Stop block: the xid after
/// the tag of the messages that carry one.
pub fn message_in_stream(xid: u32, m: &LogicalMessage) -> Bytes {
    let plain = message(m);
    let carries_xid = matches!(
        m,
        LogicalMessage::Relation(_)
            | LogicalMessage::Type(_)
            | LogicalMessage::Insert(_)
            | LogicalMessage::Update(_)
            | LogicalMessage::Delete(_)
            | LogicalMessage::Truncate(_)
            | LogicalMessage::Message(_)
    );
    let Some((tag, rest)) = plain.split_first().filter(|_| carries_xid) else {
        return plain;
    };
    let mut out = Vec::with_capacity(plain.len() + 4);
    out.push(*tag);
    out.extend_from_slice(&xid.to_be_bytes());
    out.extend_from_slice(rest);
    Bytes::from(out)
}
