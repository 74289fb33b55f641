//! [`CheckpointListener`]: one per process, `LISTEN`s on [`CHECKPOINT_CHANNEL`] over a
//! dedicated storage connection and hands what *other* processes committed to the node's
//! channels ([`NotificationSink`]). Its own process's notifications are skipped: they already
//! went out in process, with their ops. Another process's small commit of the active deployment
//! is read once here (its ops of the listed buckets, at most [`EVENT_OPS_MAX`]) and handed on
//! with them, so this node's streams serve it from memory as the writing node's do.
//!
//! After the connection is lost (storage restarted, connection terminated, network gone: the
//! connection's keepalives and `tcp_user_timeout` find a silent peer, and so does a `SELECT
//! now()` every 30 s that must answer within 10 s), it reconnects with a
//! cancellable [`Backoff`] and catches up from storage: it reads the active deployment and its
//! checkpoint and delivers one event from the last checkpoint it delivered (`previous`) to that
//! one, its changed buckets read from `bucket_state` and its lookups unknown
//! ([`CheckpointEvent::all_lookups_changed`]), so no stream misses a commit; a switched active
//! deployment is delivered as a deployment change; write checkpoints created meanwhile are
//! delivered again from `riptide.write_checkpoints`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use riptide_pg::{Backoff, Listened, PgConnection, PgError};
use riptide_protocol::{OpId, OpType, OplogEntry};
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use super::{CHECKPOINT_CHANNEL, PgStorage};
use crate::notifications::{CheckpointNotice, Notice, NoticeBody, NotificationSink};
use crate::{
    BucketStorage, CheckpointEvent, CommitOps, DeploymentId, DeploymentState, EVENT_OPS_MAX,
    PageLimit, StorageCheckpoint, StorageError,
};

/// `application_name` of the listening connection (when the connection sets none).
pub const LISTENER_APPLICATION_NAME: &str = "riptide-listener";
/// Write checkpoints created this long before a connection was lost are delivered again on
/// catch-up (a transaction's `now()` is its start, which may precede the loss).
const WRITE_CHECKPOINT_MARGIN: Duration = Duration::from_secs(60);
/// Most write checkpoints delivered again on one catch-up.
const WRITE_CHECKPOINT_CATCH_UP_MAX: i64 = 10_000;

/// Notifications waiting to be handled at most; beyond that they are dropped and the listener
/// catches up from storage instead (each waiting one is at most 8,000 bytes, typically a few
/// hundred: a few MB at most in practice, 32 MB in the worst case).
const NOTICE_QUEUE: usize = 4096;

/// How often an idle listening connection is asked the time: a dead connection is found
/// (besides keepalives), and a catch-up knows since when to look.
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// How long that question may take.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The storage database's clock, asked on the listening connection.
async fn storage_clock(client: &tokio_postgres::Client) -> Result<SystemTime, ListenError> {
    let row = tokio::time::timeout(PING_TIMEOUT, client.query_one("SELECT now()", &[]))
        .await
        .map_err(|_| ListenError::Lost)?
        .map_err(ListenError::Query)?;
    row.try_get(0).map_err(ListenError::Query)
}

/// Bytes of ops a commit's event carries at most (the sessions' in-memory bound).
const COMMIT_OPS_BYTES: usize = 4 * 1024 * 1024;

/// Why one listening session ended.
#[derive(Debug, thiserror::Error)]
enum ListenError {
    #[error("cannot connect the listening connection")]
    Connect(#[source] PgError),
    #[error("listening connection failed")]
    Query(#[source] tokio_postgres::Error),
    #[error("storage read failed")]
    Storage(#[source] StorageError),
    #[error("listening connection lost")]
    Lost,
}

/// Listens for other processes' commits on the storage database; see the module docs.
pub struct CheckpointListener {
    connection: PgConnection,
    storage: PgStorage,
    backoff: Backoff,
}

/// What the listener remembers across reconnects.
#[derive(Default)]
struct Seen {
    /// Newest checkpoint seen (delivered, or own) per deployment.
    checkpoints: HashMap<DeploymentId, StorageCheckpoint>,
    /// The active deployment as last known.
    active: Option<DeploymentId>,
    /// Whether a first connection was made (the first sets the baseline, delivering nothing).
    connected: bool,
    /// The storage clock when the last connection was last known alive.
    alive_at: Option<SystemTime>,
}

impl CheckpointListener {
    /// A listener on its own connection made from `connection` (the storage's: TLS,
    /// keepalives and timeouts as configured), reading catch-ups through `storage`'s pool and
    /// skipping notifications carrying `storage`'s [`PgStorage::node_id`].
    pub fn new(connection: &PgConnection, storage: &PgStorage) -> CheckpointListener {
        CheckpointListener {
            connection: connection
                .clone()
                .with_default_application_name(LISTENER_APPLICATION_NAME),
            storage: storage.clone(),
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
        }
    }

    /// Reconnects after `backoff`'s delays (default: 0.2 s doubling to 10 s).
    pub fn with_backoff(mut self, backoff: Backoff) -> CheckpointListener {
        self.backoff = backoff;
        self
    }

    /// Runs [`CheckpointListener::run`] in a task.
    pub fn spawn(
        self,
        sink: Arc<dyn NotificationSink>,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(sink, cancel))
    }

    /// Listens and delivers to `sink` until `cancel` fires, reconnecting (and catching up)
    /// after every failure.
    pub async fn run(mut self, sink: Arc<dyn NotificationSink>, cancel: CancellationToken) {
        let mut seen = Seen::default();
        loop {
            let ended = tokio::select! {
                () = cancel.cancelled() => return,
                ended = self.session(&mut seen, sink.as_ref()) => ended,
            };
            if let Err(e) = ended {
                tracing::warn!(error = %e, "checkpoint listener lost its connection; reconnecting");
                sink.reconnecting();
            }
            if self.backoff.wait(&cancel).await.is_err() {
                return;
            }
        }
    }

    /// One connection: `LISTEN`, catch up, then deliver notifications until it fails.
    async fn session(
        &mut self,
        seen: &mut Seen,
        sink: &dyn NotificationSink,
    ) -> Result<(), ListenError> {
        let (client, mut messages) = self
            .connection
            .connect_listening(NOTICE_QUEUE)
            .await
            .map_err(ListenError::Connect)?;
        client
            .batch_execute(&format!("LISTEN {CHECKPOINT_CHANNEL}"))
            .await
            .map_err(ListenError::Query)?;
        // Listening from here on: whatever commits next is notified, whatever committed
        // before is in storage.
        let now = storage_clock(&client).await?;
        self.catch_up(seen, sink).await?;
        seen.connected = true;
        seen.alive_at = Some(now);
        self.backoff.reset();
        tracing::debug!(node = %self.storage.node_id(), "checkpoint listener listening");
        sink.listening();
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let message = tokio::select! {
                message = messages.recv() => message,
                _ = ping.tick() => {
                    // Proves the connection alive (or fails it) and dates it for a catch-up.
                    seen.alive_at = Some(storage_clock(&client).await?);
                    continue;
                }
            };
            let n = match message {
                None => break,
                Some(Listened::Message(AsyncMessage::Notification(n))) => n,
                Some(Listened::Message(_)) => continue,
                Some(Listened::Overflowed) => {
                    // Notifications were dropped while this fell behind: what they said is in
                    // storage, so catch up as after a reconnect (later duplicates are skipped).
                    tracing::warn!(
                        queue = NOTICE_QUEUE,
                        "checkpoint listener fell behind; catching up from storage"
                    );
                    sink.overflowed();
                    self.catch_up(seen, sink).await?;
                    continue;
                }
            };
            if n.channel() != CHECKPOINT_CHANNEL {
                continue;
            }
            match Notice::parse(n.payload()) {
                Ok(notice) => {
                    if let Some(at) = notice.sent_at {
                        seen.alive_at = Some(at);
                    }
                    self.handle(seen, sink, notice).await?;
                }
                Err(e) => {
                    tracing::warn!(error = %e, pid = n.process_id(), "bad notification ignored");
                    sink.bad_notification();
                }
            }
        }
        drop(client);
        Err(ListenError::Lost)
    }

    /// Hands one notice on (unless this process wrote it), keeping track of what was seen.
    async fn handle(
        &self,
        seen: &mut Seen,
        sink: &dyn NotificationSink,
        notice: Notice,
    ) -> Result<(), ListenError> {
        let own = notice.node == self.storage.node_id();
        match notice.body {
            NoticeBody::Checkpoint(c) => {
                let last = seen.checkpoints.get(&c.deployment).copied();
                if last.is_some_and(|l| c.checkpoint <= l) {
                    return Ok(()); // covered by a catch-up already
                }
                if !own {
                    let event = self.event(seen, c.clone()).await?;
                    sink.checkpoint(event, notice.sent_at);
                }
                seen.checkpoints.insert(c.deployment, c.checkpoint);
            }
            NoticeBody::WriteCheckpoint {
                user_id,
                client_id,
                id,
            } => {
                if !own {
                    sink.write_checkpoint(user_id, client_id, id, notice.sent_at);
                }
            }
            NoticeBody::Deployment { deployment, state } => {
                match state {
                    DeploymentState::Active => seen.active = Some(deployment),
                    DeploymentState::Stop | DeploymentState::Terminated => {
                        seen.checkpoints.remove(&deployment);
                        if seen.active == Some(deployment) {
                            seen.active = None;
                        }
                    }
                    DeploymentState::Processing => {}
                }
                if !own {
                    sink.deployment(deployment, state, notice.sent_at);
                }
            }
        }
        Ok(())
    }

    /// The in-process event of another process's commit. A bucket list left out is read back
    /// from storage for the active deployment (nobody streams another one's buckets).
    async fn event(
        &self,
        seen: &Seen,
        mut c: CheckpointNotice,
    ) -> Result<CheckpointEvent, ListenError> {
        let active = seen.active == Some(c.deployment);
        let (changed_buckets, listed) = match c.changed_buckets.take() {
            Some(b) => (b, true),
            None if active => (
                self.storage
                    .changed_buckets_since(c.deployment, c.previous)
                    .await
                    .map_err(ListenError::Storage)?,
                false,
            ),
            None => (Vec::new(), false),
        };
        // The commit's ops, read once here for every session of the node (a small commit of
        // the deployment they stream), so they serve it from memory as on the writing node.
        let ops = if active && listed {
            self.commit_ops(&c, &changed_buckets).await
        } else {
            None
        };
        Ok(CheckpointEvent {
            deployment: c.deployment,
            checkpoint: c.checkpoint,
            previous: c.previous,
            changed_buckets,
            all_lookups_changed: c.changed_lookups.is_none(),
            changed_lookups: c.changed_lookups.unwrap_or_default(),
            ops,
        })
    }

    /// The ops a small commit wrote to `buckets` (its `previous < op_id <= checkpoint`), as
    /// [`CheckpointEvent::ops`] carries them; `None` when there are more than
    /// [`EVENT_OPS_MAX`], when compaction already rewrote some (a MOVE or CLEAR in the range:
    /// the stream reads storage, as it would anyway), or when the read fails.
    async fn commit_ops(&self, c: &CheckpointNotice, buckets: &[String]) -> Option<Arc<CommitOps>> {
        if buckets.is_empty() || buckets.len() > EVENT_OPS_MAX {
            return None;
        }
        let mut wanted: Vec<(String, OpId)> =
            buckets.iter().map(|b| (b.clone(), c.previous)).collect();
        wanted.sort();
        let limit = PageLimit {
            ops: EVENT_OPS_MAX + 1,
            bytes: COMMIT_OPS_BYTES,
        };
        let chunks = match self
            .storage
            .bucket_data_page(c.deployment, c.checkpoint.op_id, &wanted, limit)
            .await
        {
            Ok(chunks) => chunks,
            Err(e) => {
                tracing::warn!(error = %e, deployment = c.deployment, "cannot read another process's commit; its streams read storage");
                return None;
            }
        };
        let whole = chunks.len() == wanted.len() && chunks.iter().all(|ch| !ch.has_more);
        let as_written = chunks.iter().flat_map(|ch| &ch.ops).all(|op| {
            matches!(op.op, OpType::Put | OpType::Remove)
                && op.op_id > c.previous
                && op.op_id <= c.checkpoint.op_id
        });
        if !whole || !as_written {
            return None;
        }
        let mut ops: Vec<(String, OplogEntry)> = chunks
            .into_iter()
            .flat_map(|ch| {
                let bucket = ch.bucket;
                ch.ops.into_iter().map(move |op| (bucket.clone(), op))
            })
            .collect();
        ops.sort_by_key(|(_, op)| op.op_id);
        CommitOps::collect(ops).map(Arc::new)
    }

    /// What committed while not listening: the active deployment (a switch is delivered),
    /// one event from its last seen checkpoint to its current one, and the write checkpoints
    /// created since the connection was last known alive. The first connection only records
    /// where things stand.
    async fn catch_up(
        &self,
        seen: &mut Seen,
        sink: &dyn NotificationSink,
    ) -> Result<(), ListenError> {
        let active = self
            .storage
            .active_deployment()
            .await
            .map_err(ListenError::Storage)?;
        let Some(active) = active else {
            seen.active = None;
            return Ok(());
        };
        if seen.connected && seen.active != Some(active.id) {
            sink.deployment(active.id, DeploymentState::Active, None);
        }
        seen.active = Some(active.id);
        let Some(current) = active.checkpoint else {
            return self.write_checkpoints_since(seen, sink).await;
        };
        let last = seen.checkpoints.get(&active.id).copied();
        if seen.connected
            && let Some(last) = last
            && current > last
        {
            let changed_buckets = self
                .storage
                .changed_buckets_since(active.id, last.op_id)
                .await
                .map_err(ListenError::Storage)?;
            tracing::info!(deployment = active.id, from = %last.op_id, to = %current.op_id, "checkpoint listener caught up from storage");
            sink.checkpoint(
                CheckpointEvent {
                    deployment: active.id,
                    checkpoint: current,
                    previous: last.op_id,
                    changed_buckets,
                    changed_lookups: Vec::new(),
                    all_lookups_changed: true,
                    ops: None,
                },
                None,
            );
        }
        seen.checkpoints
            .insert(active.id, last.map_or(current, |l| l.max(current)));
        self.write_checkpoints_since(seen, sink).await
    }

    /// Delivers again the newest write checkpoint of every user/client created since the
    /// connection was last known alive (a margin before), after a reconnect.
    async fn write_checkpoints_since(
        &self,
        seen: &Seen,
        sink: &dyn NotificationSink,
    ) -> Result<(), ListenError> {
        let Some(alive_at) = seen.alive_at.filter(|_| seen.connected) else {
            return Ok(());
        };
        let since = alive_at
            .checked_sub(WRITE_CHECKPOINT_MARGIN)
            .unwrap_or(alive_at);
        let client = self
            .storage
            .pool()
            .get()
            .await
            .map_err(|e| ListenError::Storage(e.into()))?;
        let rows = client
            .query(
                "SELECT user_id, client_id, max(id) FROM riptide.write_checkpoints \
                 WHERE created_at >= $1 GROUP BY user_id, client_id LIMIT $2",
                &[&since, &WRITE_CHECKPOINT_CATCH_UP_MAX],
            )
            .await
            .map_err(ListenError::Query)?;
        for row in rows {
            let (Ok(user_id), Ok(client_id), Ok(id)) = (
                row.try_get::<_, String>(0),
                row.try_get::<_, String>(1),
                row.try_get::<_, i64>(2),
            ) else {
                continue;
            };
            sink.write_checkpoint(user_id, client_id, OpId(id), None);
        }
        Ok(())
    }
}
