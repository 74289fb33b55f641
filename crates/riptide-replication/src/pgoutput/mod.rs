//! Decoder of the `pgoutput` logical decoding output plugin, protocol versions 1 and 2.
//!
//! Version 2 adds the streaming of large in-progress transactions: Stream Start (`S`), Stop
//! (`E`), Commit (`c`) and Abort (`A`), and inside a Start/Stop block every Relation, Type,
//! Insert, Update, Delete, Truncate and Message carries the xid of the (sub)transaction it
//! belongs to after its tag: [`decode`] reads messages outside such a block,
//! [`decode_in_stream`] inside one.
//!
//! Messages are decoded from the raw bytes of one `XLogData` payload into typed structs. The
//! decoder never panics and never allocates more than the input could hold: every count read
//! from the input is checked against the bytes that remain before anything is reserved. Column
//! values are zero-copy slices of the input [`Bytes`].
//!
//! The message types are here, the decoder in `decode.rs`; `encode.rs` (tests only) builds
//! messages back into bytes.
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
    StreamStart(StreamStart),
    StreamStop,
    StreamCommit(StreamCommit),
    StreamAbort(StreamAbort),
}

/// `S`: the changes up to the next Stream Stop belong to this (top-level) transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamStart {
    pub xid: u32,
    /// The first block of this transaction.
    pub first_segment: bool,
}

/// `c`: a streamed transaction committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCommit {
    pub xid: u32,
    pub flags: u8,
    pub commit_lsn: Lsn,
    pub end_lsn: Lsn,
    pub commit_time: i64,
}

/// `A`: a streamed transaction (`subxid == xid`) or one of its subtransactions aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamAbort {
    pub xid: u32,
    pub subxid: u32,
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

mod decode;
/// Encoders for tests and the fuzz targets' round trips (`--cfg fuzzing`, fuzz/README.md).
#[cfg(any(test, fuzzing))]
pub mod encode;
#[cfg(test)]
mod tests;

pub use decode::{decode, decode_in_stream};
