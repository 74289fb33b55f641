//! The applier's test harness: synthetic pgoutput messages (built with `pgoutput::encode`),
//! and the applier over the in-memory storage wrapped to record each storage commit or to
//! fail ([`RecordingStorage`]). Every acknowledgement the harness sees is checked against the
//! recorded commits: an LSN is acknowledged only once storage has committed it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use riptide_protocol::Lsn;
use riptide_rules::{Row, SqliteValue, SyncRules};
use riptide_storage::{BucketStorage, DeploymentId};
use tokio::sync::broadcast;

use super::recording_storage::RecordingStorage;
use super::{StreamOptions, TransactionApplier};
use crate::error::ReplicationError;
use crate::pgoutput::{
    Begin, Commit, Delete, Insert, LogicalMessage, Message, OldTuple, Relation, RelationColumn,
    ReplicaIdentity, StreamAbort, StreamCommit, StreamStart, Truncate, TupleData, TupleValue,
    Update, encode,
};
use crate::row_image::encode_key;
use crate::schema::TypeMap;
use crate::status::ReplicationStatus;

pub(super) const RULES: &str = "
bucket_definitions:
  global:
    data:
      - SELECT id, title, body FROM todos
";

/// Relation ids of the tables the tests use.
pub(super) const TODOS: u32 = 16_385;
pub(super) const OTHER: u32 = 16_390;

pub(super) const TEXT: u32 = 25;

// --- synthetic pgoutput ------------------------------------------------------------------

pub(super) fn relation(id: u32, name: &str, columns: &[(&str, bool)]) -> LogicalMessage {
    LogicalMessage::Relation(Relation {
        id,
        namespace: "public".into(),
        name: name.into(),
        replica_identity: ReplicaIdentity::Default,
        columns: columns
            .iter()
            .map(|&(name, is_key)| RelationColumn {
                is_key,
                name: name.into(),
                type_oid: TEXT,
                type_modifier: -1,
            })
            .collect(),
    })
}

/// `todos (id text PRIMARY KEY, title text, body text)`.
pub(super) fn todos() -> LogicalMessage {
    relation(
        TODOS,
        "todos",
        &[("id", true), ("title", false), ("body", false)],
    )
}

/// A table the rules do not use.
pub(super) fn other() -> LogicalMessage {
    relation(OTHER, "other", &[("id", true), ("v", false)])
}

/// The Begin of a transaction whose commit record starts at `final_lsn`.
pub(super) fn begin(final_lsn: u64) -> LogicalMessage {
    LogicalMessage::Begin(Begin {
        final_lsn: Lsn(final_lsn),
        commit_time: 0,
        xid: 1,
    })
}

/// The Commit of a transaction whose commit record starts at `end_lsn - 8`.
pub(super) fn commit(end_lsn: u64) -> LogicalMessage {
    LogicalMessage::Commit(Commit {
        flags: 0,
        commit_lsn: Lsn(end_lsn - 8),
        end_lsn: Lsn(end_lsn),
        commit_time: 0,
    })
}

pub(super) fn stream_start(xid: u32) -> LogicalMessage {
    LogicalMessage::StreamStart(StreamStart {
        xid,
        first_segment: false,
    })
}

pub(super) fn stream_commit(xid: u32, end_lsn: u64) -> LogicalMessage {
    LogicalMessage::StreamCommit(StreamCommit {
        xid,
        flags: 0,
        commit_lsn: Lsn(end_lsn - 8),
        end_lsn: Lsn(end_lsn),
        commit_time: 0,
    })
}

pub(super) fn stream_abort(xid: u32, subxid: u32) -> LogicalMessage {
    LogicalMessage::StreamAbort(StreamAbort { xid, subxid })
}

pub(super) fn t(s: &str) -> TupleValue {
    TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()))
}

pub(super) fn insert(relation_id: u32, values: Vec<TupleValue>) -> LogicalMessage {
    LogicalMessage::Insert(Insert {
        relation_id,
        new: TupleData(values),
    })
}

pub(super) fn todo(id: &str, title: &str, body: &str) -> LogicalMessage {
    insert(TODOS, vec![t(id), t(title), t(body)])
}

pub(super) fn update(
    relation_id: u32,
    old: Option<OldTuple>,
    new: Vec<TupleValue>,
) -> LogicalMessage {
    LogicalMessage::Update(Update {
        relation_id,
        old,
        new: TupleData(new),
    })
}

pub(super) fn delete(relation_id: u32, key: Vec<TupleValue>) -> LogicalMessage {
    LogicalMessage::Delete(Delete {
        relation_id,
        old: OldTuple::Key(TupleData(key)),
    })
}

pub(super) fn truncate(relation_ids: Vec<u32>) -> LogicalMessage {
    LogicalMessage::Truncate(Truncate {
        options: 0,
        relation_ids,
    })
}

pub(super) fn message(transactional: bool, lsn: u64, prefix: &str) -> LogicalMessage {
    LogicalMessage::Message(Message {
        transactional,
        lsn: Lsn(lsn),
        prefix: prefix.into(),
        content: Bytes::new(),
    })
}

/// A body long enough to be remembered within its transaction (TOAST candidate).
pub(super) fn big(c: char) -> String {
    std::iter::repeat_n(c, 2_000).collect()
}

// --- harness -------------------------------------------------------------------------------

/// Group commit off, nothing recorded for idle transactions within the test.
pub(super) fn options() -> StreamOptions {
    StreamOptions {
        chunk_rows: 100,
        idle_commit_interval: Duration::from_secs(3600),
        catalog_check_interval: Duration::from_secs(3600),
        group_max_transactions: 1,
        group_max_age: Duration::from_secs(3600),
        ..StreamOptions::default()
    }
}

pub(super) struct Harness {
    pub(super) storage: RecordingStorage,
    deployment: DeploymentId,
    pub(super) applier: TransactionApplier,
    /// Every LSN the applier returned for acknowledgement, in order.
    pub(super) acks: Vec<Lsn>,
}

impl Harness {
    pub(super) async fn new(options: StreamOptions) -> Harness {
        Harness::resuming(options, Lsn::ZERO).await
    }

    pub(super) async fn resuming(options: StreamOptions, resume: Lsn) -> Harness {
        let storage = RecordingStorage::default();
        let deployment = storage.create_deployment(RULES, "t_").await.unwrap().id;
        Harness::over(storage, deployment, options, resume)
    }

    /// A new applier over the same storage, as after a restart of the process: the old
    /// applier (and any batch it had open) is dropped first.
    pub(super) fn restart(self, options: StreamOptions, resume: Lsn) -> Harness {
        let Harness {
            storage,
            deployment,
            applier,
            ..
        } = self;
        drop(applier);
        Harness::over(storage, deployment, options, resume)
    }

    fn over(
        storage: RecordingStorage,
        deployment: DeploymentId,
        options: StreamOptions,
        resume: Lsn,
    ) -> Harness {
        let rules = Arc::new(SyncRules::parse(RULES).unwrap());
        let (events, _) = broadcast::channel(16);
        let applier = TransactionApplier::new(
            Arc::new(storage.clone()),
            deployment,
            rules,
            Arc::new(TypeMap::default()),
            resume,
            options,
            Arc::new(ReplicationStatus::default()),
            events,
        );
        Harness {
            storage,
            deployment,
            applier,
            acks: Vec::new(),
        }
    }

    /// Feeds one message; checks and records what it acknowledged.
    pub(super) async fn send(
        &mut self,
        m: LogicalMessage,
    ) -> Result<Option<Lsn>, ReplicationError> {
        let ack = self.applier.data(&encode::message(&m)).await?;
        self.acked(ack);
        Ok(ack)
    }

    /// Waits until no storage batch is open: a dropped batch whose save was in flight
    /// goes when its (aborted) task does.
    pub(super) async fn batches_closed(&self) -> bool {
        for _ in 0..1_000 {
            if self.storage.log().open == 0 {
                return true;
            }
            tokio::task::yield_now().await;
        }
        false
    }

    /// Feeds one message inside a Stream Start/Stop block, as (sub)transaction `xid`'s.
    pub(super) async fn send_in(
        &mut self,
        xid: u32,
        m: LogicalMessage,
    ) -> Result<Option<Lsn>, ReplicationError> {
        let ack = self
            .applier
            .data(&encode::message_in_stream(xid, &m))
            .await?;
        self.acked(ack);
        Ok(ack)
    }

    /// One block of streamed transaction `xid`: Stream Start, `changes` (each with the xid
    /// of its (sub)transaction), Stream Stop.
    pub(super) async fn block(
        &mut self,
        xid: u32,
        changes: Vec<(u32, LogicalMessage)>,
    ) -> Result<(), ReplicationError> {
        self.send(stream_start(xid)).await?;
        for (sub, m) in changes {
            self.send_in(sub, m).await?;
        }
        self.send_in(xid, LogicalMessage::StreamStop).await?;
        Ok(())
    }

    pub(super) async fn feed(&mut self, messages: Vec<LogicalMessage>) -> Option<Lsn> {
        let mut last = None;
        for m in messages {
            last = self.send(m).await.unwrap();
        }
        last
    }

    /// Begin, `changes`, Commit; returns what the commit acknowledged.
    pub(super) async fn transaction(
        &mut self,
        final_lsn: u64,
        end_lsn: u64,
        changes: Vec<LogicalMessage>,
    ) -> Option<Lsn> {
        let mut messages = vec![begin(final_lsn)];
        messages.extend(changes);
        messages.push(commit(end_lsn));
        self.feed(messages).await
    }

    /// What the socket loop does when no event is waiting.
    pub(super) async fn release(&mut self) -> Option<Lsn> {
        let ack = self.applier.release().await.unwrap();
        self.acked(ack);
        ack
    }

    pub(super) async fn idle(&mut self) -> Option<Lsn> {
        let ack = self.applier.on_idle().await.unwrap();
        self.acked(ack);
        ack
    }

    /// The invariant: an acknowledged LSN is that of the newest storage commit.
    pub(super) fn acked(&mut self, ack: Option<Lsn>) {
        let Some(lsn) = ack else {
            return;
        };
        let commits = self.storage.commits();
        assert_eq!(
            commits.last(),
            Some(&lsn),
            "acknowledged {lsn} but storage committed {commits:?}"
        );
        assert!(
            self.acks.last().is_none_or(|last| *last < lsn),
            "acknowledgements go forward: {lsn} after {:?}",
            self.acks
        );
        self.acks.push(lsn);
    }

    /// The stored row of `todos` with id `id`.
    pub(super) async fn row(&self, id: &str) -> Option<Row> {
        let key = encode_key([Some(id.as_bytes())]);
        let rows = self
            .storage
            .current_rows(self.deployment, "public.todos", std::slice::from_ref(&key))
            .await
            .unwrap();
        rows.get(&key).map(|bytes| Row::decode(bytes).unwrap())
    }

    pub(super) async fn text(&self, id: &str, column: &str) -> Option<SqliteValue> {
        self.row(id).await.and_then(|r| r.get(column).cloned())
    }
}

pub(super) fn text(s: &str) -> Option<SqliteValue> {
    Some(SqliteValue::Text(s.into()))
}
