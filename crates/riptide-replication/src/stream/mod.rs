//! Streaming: replication events → storage batches, one per source transaction or per group
//! of consecutive ones.
//!
//! [`TransactionApplier`] is driven by the events of a replication session (see
//! `replicator.rs` for the socket loop). It keeps relation metadata per relation id, opens a
//! storage batch at the first relevant change of a transaction, buffers changes in chunks of
//! [`StreamOptions::chunk_rows`] (filling unchanged TOAST columns from stored rows, one lookup
//! per table per chunk), evaluates the rules once per row, saves each chunk and commits at the
//! transaction's end LSN. It returns the LSN that may be acknowledged to Postgres, which is
//! only ever one storage has just committed.
//!
//! Group commit: at a source commit the storage batch may stay open ([`TransactionApplier::
//! holding`]) so that the next source transaction continues it, when the socket loop already
//! has the next transaction's events in hand. The loop calls [`TransactionApplier::release`]
//! as soon as no event is waiting, so a lone commit is stored at once, while a burst of small
//! transactions costs one storage commit instead of one each (a storage commit is about ten
//! round trips). The group's checkpoint is at its last commit: every source transaction is
//! still applied whole, and a checkpoint never splits one.
//!
//! The applier's parts, one concern each:
//! - `streamed.rs`: Stream Start, Stop, Commit and Abort (protocol 2): a large transaction
//!   applied to its own storage batch while it runs, visible at its commit;
//! - `transaction.rs`: Begin, Commit, non-transactional messages and idle time: when a
//!   transaction is skipped, held for its group or committed, and what is acknowledged;
//! - `changes.rs`: Relation, Insert, Update, Delete and Truncate messages → pending changes;
//! - `flush.rs`: a chunk of pending changes → evaluated storage operations, saved;
//! - `toast.rs`: where the values of unchanged TOAST columns come from (the old tuple, this
//!   transaction, storage, or a re-read from the source);
//! - `live_tables.rs`: the catalog checks and resyncs of live table changes (`tables.rs`);
//! - `options.rs`: [`StreamOptions`].

mod changes;
mod flush;
mod live_tables;
mod options;
mod streamed;
mod toast;
mod transaction;

#[cfg(test)]
mod harness;
#[cfg(test)]
mod recording_storage;
#[cfg(test)]
mod streamed_tests;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use riptide_protocol::Lsn;
use riptide_rules::SyncRules;
use riptide_storage::{BucketStorage, CheckpointEvent, DeploymentId};
use tokio::sync::broadcast;

use crate::error::ReplicationError;
use crate::pgoutput::{self, LogicalMessage};
use crate::schema::{TableSchema, TypeMap};
use crate::status::ReplicationStatus;
use crate::tables::Gate;

pub use options::StreamOptions;

use live_tables::Tracking;
use transaction::OpenTransaction;

/// Prefix of the logical messages that advance checkpoints (write checkpoints).
pub const CHECKPOINT_MESSAGE_PREFIX: &str = "powersync";

pub struct TransactionApplier {
    storage: Arc<dyn BucketStorage>,
    deployment: DeploymentId,
    rules: Arc<SyncRules>,
    used_tables: HashSet<String>,
    types: Arc<TypeMap>,
    relations: HashMap<u32, Arc<TableSchema>>,
    /// Relations described inside each streamed transaction's blocks, by its xid.
    stream_relations: HashMap<u32, HashMap<u32, Arc<TableSchema>>>,
    /// The open transaction: a committed one being received, a held group, or the streamed
    /// transaction whose block is open.
    tx: Option<OpenTransaction>,
    /// The streamed transaction whose block is open (Stream Start … Stop), by xid.
    in_stream: Option<u32>,
    /// The streamed transaction applied as it arrives, between its blocks (`streamed.rs`).
    eager: Option<OpenTransaction>,
    /// The xid the change being applied carries (its subtransaction's, inside a block).
    change_xid: Option<u32>,
    /// Everything up to here is in storage.
    resume_lsn: Lsn,
    /// End of the newest transaction that had nothing for storage, not yet recorded.
    unrecorded: Option<Lsn>,
    last_commit: Instant,
    options: StreamOptions,
    status: Arc<ReplicationStatus>,
    events: broadcast::Sender<CheckpointEvent>,
    /// The source, for re-reading rows whose unchanged TOAST values storage does not have.
    source: Option<riptide_pg::PgConnection>,
    /// Lazily opened ordinary connection for those re-reads and the catalog checks.
    reader: Option<tokio_postgres::Client>,
    /// Live table-set tracking (`tables.rs`); `None` without a source and publication.
    tracking: Option<Tracking>,
    /// Relation OIDs whose changes are (partly) ignored; almost always empty.
    gates: HashMap<u32, Gate>,
}

impl TransactionApplier {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        storage: Arc<dyn BucketStorage>,
        deployment: DeploymentId,
        rules: Arc<SyncRules>,
        types: Arc<TypeMap>,
        resume_lsn: Lsn,
        options: StreamOptions,
        status: Arc<ReplicationStatus>,
        events: broadcast::Sender<CheckpointEvent>,
    ) -> Self {
        let used_tables = rules
            .source_tables()
            .iter()
            .map(riptide_rules::TableRef::qualified)
            .collect();
        TransactionApplier {
            storage,
            deployment,
            rules,
            used_tables,
            types,
            relations: HashMap::new(),
            stream_relations: HashMap::new(),
            tx: None,
            in_stream: None,
            eager: None,
            change_xid: None,
            resume_lsn,
            unrecorded: None,
            last_commit: Instant::now(),
            options,
            status,
            events,
            source: None,
            reader: None,
            tracking: None,
            gates: HashMap::new(),
        }
    }

    /// Lets the applier re-read rows from the source by key when an update leaves TOAST
    /// columns unchanged and neither the transaction nor storage has their values.
    pub fn with_source(mut self, source: riptide_pg::PgConnection) -> Self {
        self.source = Some(source);
        self
    }

    /// Raw pgoutput bytes of one XLogData message. Returns the LSN to acknowledge, if
    /// storage committed.
    pub async fn data(&mut self, data: &Bytes) -> Result<Option<Lsn>, ReplicationError> {
        let message = if self.in_stream.is_some() {
            let (xid, message) = pgoutput::decode_in_stream(data)?;
            self.change_xid = xid;
            message
        } else {
            pgoutput::decode(data)?
        };
        match message {
            LogicalMessage::Begin(b) => self.begin(b.final_lsn).map(|()| None),
            LogicalMessage::Commit(c) => self.commit(c.end_lsn).await,
            LogicalMessage::Message(m) => self.message(m.transactional, m.lsn, &m.prefix).await,
            LogicalMessage::Relation(r) => {
                self.relation(&r);
                Ok(None)
            }
            LogicalMessage::Type(_) | LogicalMessage::Origin(_) => Ok(None),
            LogicalMessage::Insert(i) => self.insert(&i).await,
            LogicalMessage::Update(u) => self.update(&u).await,
            LogicalMessage::Delete(d) => self.delete(&d).await,
            LogicalMessage::Truncate(t) => self.truncate(&t).await,
            LogicalMessage::StreamStart(s) => self.stream_start(s).await,
            LogicalMessage::StreamStop => self.stream_stop().map(|()| None),
            LogicalMessage::StreamCommit(c) => self.stream_commit(c).await,
            LogicalMessage::StreamAbort(a) => self.stream_abort(a).map(|()| None),
        }
    }

    /// The ordinary connection to the source (for TOAST re-reads and catalog checks), opened
    /// on first use and again after it closed. `None` without a source.
    async fn reader(&mut self) -> Result<Option<&tokio_postgres::Client>, ReplicationError> {
        let Some(source) = &self.source else {
            return Ok(None);
        };
        if self
            .reader
            .as_ref()
            .is_none_or(tokio_postgres::Client::is_closed)
        {
            self.reader = Some(crate::connection::connect(source).await?);
        }
        Ok(self.reader.as_ref())
    }
}
