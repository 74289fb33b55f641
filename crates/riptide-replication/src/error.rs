//! Errors of the replicator.

use riptide_storage::StorageError;

use crate::pgoutput::DecodeError;
use crate::source::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The source database is not set up for replication; each problem names its fix.
    #[error("the source database is not ready for replication: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Source(Vec<SourceError>),
    #[error("could not connect to the source database")]
    Connect(#[source] riptide_pg::PgError),
    #[error("source database query failed")]
    Query(#[from] tokio_postgres::Error),
    #[error("replication stream failed")]
    Stream(#[from] pgwire_replication::PgWireError),
    #[error("bucket storage failed")]
    Storage(#[source] StorageError),
    /// Another node took the replication lease over: storage refused this node's commit
    /// (fencing). The replicator stops and never retries the write.
    #[error(
        "the replication lease {lease} was taken over (this node held epoch {epoch}); stopping"
    )]
    LeaseLost { lease: String, epoch: i64 },
    #[error("undecodable pgoutput message")]
    Decode(#[from] DecodeError),
    /// The stream did something pgoutput never does (a change outside a transaction, a
    /// change to a relation never described, ...).
    #[error("unexpected replication stream: {0}")]
    Protocol(String),
    /// The replication slot of a deployment whose snapshot is done is gone (dropped, or
    /// invalidated by `max_slot_wal_keep_size`): the deployment must replicate from scratch
    /// (`riptide serve` starts a new snapshot of the same rules; see `deployments/`).
    #[error(
        "replication slot {slot} is missing or invalidated (WAL past max_slot_wal_keep_size is gone); the same rules replicate again from a new snapshot"
    )]
    SlotMissing { slot: String },
    /// The source did not answer in time (a connection, or a query between transactions).
    #[error("the source database did not answer within {seconds} s ({what})")]
    Timeout { what: &'static str, seconds: u64 },
    /// The replication stream said nothing, not even to a heartbeat, for this long: the
    /// walsender or the network in between stopped answering.
    #[error("the replication stream was silent for {seconds} s; reconnecting")]
    StreamSilent { seconds: u64 },
    /// A streamed in-progress transaction (pgoutput protocol 2) had to give way to other
    /// work while its storage batch was open (`stream/streamed.rs`): it was rolled back, and
    /// the replicator replays from the acknowledged position with protocol 1 until it has
    /// committed.
    #[error("streamed transaction {xid} deferred; replaying without streaming until it commits")]
    StreamDeferred { xid: u32 },
    /// The transaction a protocol 1 session was replaying for (see `StreamDeferred`)
    /// committed: the replicator streams again.
    #[error("deferred transaction {xid} committed; streaming again")]
    StreamResumes { xid: u32 },
    /// A failpoint of the fault-injection tests fired (feature `failpoints` only).
    #[error("failpoint {0} fired")]
    Failpoint(&'static str),
    /// The tracked tables stored by the replicator (`tables.rs`) cannot be decoded.
    #[error("stored tracked tables cannot be decoded")]
    TrackedDecode(#[source] riptide_rules::RowDecodeError),
    /// A stored tracked table has no valid relation OID.
    #[error("stored tracked table {0} has no valid relation OID")]
    TrackedOid(String),
    /// A catalog answer had an unexpected shape.
    #[error("unexpected catalog answer: {0}")]
    Catalog(String),
}

impl From<StorageError> for ReplicationError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::LeaseLost { lease, epoch } => {
                ReplicationError::LeaseLost { lease, epoch }
            }
            e => ReplicationError::Storage(e),
        }
    }
}

impl ReplicationError {
    /// Whether this node lost the replication lease (fencing refused a write): stop, do not
    /// retry.
    pub fn is_lease_lost(&self) -> bool {
        matches!(
            self,
            ReplicationError::LeaseLost { .. }
                | ReplicationError::Storage(StorageError::LeaseLost { .. })
        )
    }
}
