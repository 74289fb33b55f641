//! The IO half of a sync stream: resolves the connection's buckets, reads checkpoints, bucket
//! states, write checkpoints and bucket data from storage, feeds the [`SessionState`], sends its
//! lines, and waits on the checkpoint bus for the next checkpoint relevant to this stream.
//!
//! Two ways to prepare a checkpoint:
//! - from memory, when the bus events since the last checkpoint follow on without a gap and
//!   carried their ops ([`Follow`]): no storage read at all (the write checkpoint is read only
//!   while a notice for this user/client is pending). This is the steady state of a live
//!   stream: small commits, one API node.
//! - from storage otherwise: the first checkpoint, after a lagging receiver or a lost event,
//!   for a commit of more than `EVENT_OPS_MAX` ops, when lookups or rules changed, or for a
//!   checkpoint still in progress. Checksums come from the running totals in storage.
//!
//! A commit that touches none of the stream's buckets or lookups wakes it only to note the new
//! checkpoint: no query, no line (as the official service, which sends nothing when nothing
//! this client sees changed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use riptide_protocol::{ErrorCode, Lsn, OpId, StreamingSyncRequest, SyncLine};
use riptide_rules::StreamRequest;
use riptide_storage::{CheckpointEvent, StorageCheckpoint, StorageError};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};

/// Ops of one checkpoint after which a newer relevant checkpoint replaces it.
const SWITCH_AFTER_OPS: u64 = 1000;

use super::follow::Follow;
use super::framing::{Disconnected, LineSender, SendError};
use super::pace::Pace;
use super::resolve::{Resolved, resolve, stream_request};
use super::state::{CheckpointInput, SessionState};
use super::wake::{Interest, Registration};
use crate::auth::VerifiedToken;
use crate::state::{ActiveRules, AppState, Inner};
use crate::write_checkpoints::WriteCheckpointNotice;

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Disconnected(#[from] Disconnected),
    #[error("could not encode a sync line")]
    Encode(#[source] bson::error::Error),
    #[error("storage error")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    #[error("no sync rules are active any more")]
    NoRules,
    #[error("the checkpoint bus closed")]
    BusClosed,
}

impl From<SendError> for SessionError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Disconnected(d) => SessionError::Disconnected(d),
            SendError::Bson(b) => SessionError::Encode(b),
        }
    }
}

/// A per-connection limit was exceeded (`PSYNC_S2305`); the stream ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("Too many buckets: {count} (limit {limit})")]
    Buckets { count: usize, limit: usize },
    #[error("Too many parameter query results: {count} (limit {limit})")]
    ParameterResults { count: usize, limit: usize },
}

impl LimitExceeded {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::S2305
    }
}

/// One sync stream's IO loop. Runs until an error, the rules disappear, or it is dropped.
pub struct Session {
    pub state: AppState,
    pub user: VerifiedToken,
    pub request: StreamingSyncRequest,
    pub tx: LineSender,
    pub ops_sent: Arc<AtomicU64>,
}

impl Session {
    pub async fn run(self) -> Result<(), SessionError> {
        let Session {
            state,
            user,
            request,
            tx,
            ops_sent,
        } = self;
        Stream::new(&state.inner, &user, &request, &tx, &ops_sent)
            .run()
            .await
    }
}

/// What one stream's loop keeps from one checkpoint to the next.
struct Stream<'a> {
    inner: &'a Inner,
    user: &'a VerifiedToken,
    client_id: String,
    /// The token, parameters and stream subscriptions the buckets are resolved for.
    request: StreamRequest,
    only: Option<&'a [String]>,
    tx: &'a LineSender,
    ops_sent: &'a AtomicU64,
    /// Subscribed before the first read so no checkpoint between the two is missed.
    bus: BusView,
    /// Waits for the events that concern this stream (see `wake`).
    registration: Registration,
    /// The (`resolutions`, everything) the registered interest was set for.
    interest_of: Option<(u64, bool)>,
    /// How often the buckets were resolved.
    resolutions: u64,
    notices: broadcast::Receiver<WriteCheckpointNotice>,
    rules_rx: watch::Receiver<Option<ActiveRules>>,
    session: SessionState,
    resolved: Option<Resolved>,
    /// A write checkpoint of this user/client that may not be reported yet.
    pending_write: Option<OpId>,
    pace: Pace,
}

/// A checkpoint prepared from storage, or why not.
enum FromStorage {
    Lines(Vec<SyncLine>),
    /// Storage has no checkpoint yet.
    NoCheckpoint,
    /// No bucket set: start the iteration over.
    Unresolved,
}

impl<'a> Stream<'a> {
    fn new(
        inner: &'a Inner,
        user: &'a VerifiedToken,
        request: &'a StreamingSyncRequest,
        tx: &'a LineSender,
        ops_sent: &'a AtomicU64,
    ) -> Self {
        Stream {
            inner,
            user,
            client_id: request.client_id.clone().unwrap_or_default(),
            request: stream_request(&user.claims, request),
            only: request.only.as_deref(),
            tx,
            ops_sent,
            bus: BusView::new(inner.events.subscribe()),
            registration: inner.wake.register(&inner.events),
            interest_of: None,
            resolutions: 0,
            notices: inner.write_checkpoints.subscribe(),
            rules_rx: inner.rules.clone(),
            session: SessionState::new(Vec::new(), &request.buckets)
                .with_page_bytes(inner.options.limits.max_data_page_bytes),
            resolved: None,
            pending_write: None,
            pace: Pace::new(inner.options.checkpoint_interval),
        }
    }

    /// One checkpoint per iteration: the active rules, what the bus queued, the newest
    /// checkpoint (from the bus's ops or from storage), its lines and data sent, then a wait
    /// for the next relevant event.
    async fn run(&mut self) -> Result<(), SessionError> {
        // A write checkpoint taken before this stream opened (a client that reconnected after
        // requesting it, e.g. across a service restart) is looked for at every checkpoint
        // until reported, like one announced while the stream is open: replication may not
        // have reached it yet.
        if !self.client_id.is_empty() {
            self.pending_write = self
                .inner
                .storage
                .write_checkpoint(&self.user.user_id, &self.client_id, Lsn(u64::MAX))
                .await?;
        }
        loop {
            // 1. The rules serving now, and the pace of checkpoints.
            let active = self.active_rules()?;
            if let Some(due) = self.pace.due() {
                tokio::time::sleep_until(due.into()).await;
            }

            // 2. A commit is announced on the bus after it is durable, so storage may hold
            //    commits whose events this session has not seen yet. Take what is queued
            //    first (the checkpoint read next covers all of it); if that checkpoint is
            //    still ahead of everything seen, its newest commits may have changed this
            //    stream's parameter lookups: resolve the buckets again.
            self.drain(&active)?;

            // 3. The newest checkpoint, served from the ops the bus carried when they cover
            //    everything since the last one (no storage read), else read from storage.
            let begun = match self.checkpoint_from_memory().await? {
                Some(lines) => Some((lines, true)),
                None => match self.checkpoint_from_storage(&active).await? {
                    FromStorage::Lines(lines) => Some((lines, false)),
                    FromStorage::NoCheckpoint => None,
                    FromStorage::Unresolved => continue,
                },
            };

            // 4. Its lines and bucket data sent, unless a newer checkpoint replaces it (or
            //    compaction past it abandons it: storage already has a newer one).
            if let Some((lines, from_memory)) = begun {
                if self.send_checkpoint(&active, &lines, from_memory).await? {
                    continue;
                }
                self.settle_pending_write();
            }

            // 5. Wait for something relevant to this stream.
            if self.update_interest(&active)? {
                continue;
            }
            self.wait(&active).await?;
        }
    }

    /// The active rules. A new deployment or new rules resolve the buckets again and start
    /// following the bus afresh.
    fn active_rules(&mut self) -> Result<ActiveRules, SessionError> {
        let active = self.rules_rx.borrow_and_update().clone();
        let Some(active) = active else {
            return Err(SessionError::NoRules);
        };
        let same_rules = self.resolved.as_ref().is_some_and(|r| {
            r.deployment == active.deployment && Arc::ptr_eq(&r.rules, &active.rules)
        });
        if !same_rules {
            self.bus.resolve_needed = true;
            self.bus.seen = None;
            self.bus.follow.reset();
        }
        Ok(active)
    }

    /// Takes what the bus queued ([`BusView::drain`]): whether it calls for a new checkpoint.
    fn drain(&mut self, active: &ActiveRules) -> Result<bool, SessionError> {
        self.bus.drain(
            active.deployment,
            self.resolved.as_ref(),
            self.pending_write.is_some(),
        )
    }

    /// The next checkpoint from the ops the bus carried, when they cover everything since
    /// the last one and the bucket set is still right.
    async fn checkpoint_from_memory(&mut self) -> Result<Option<Vec<SyncLine>>, SessionError> {
        if self.bus.resolve_needed || !self.session.is_idle() {
            return Ok(None);
        }
        let (Some(r), Some(checkpoint)) = (self.resolved.as_ref(), self.bus.follow.known()) else {
            return Ok(None);
        };
        // Only a write checkpoint announced to this process can have become visible (the
        // notice keeps `pending_write` set until it is reported).
        let write_checkpoint = if self.pending_write.is_some() {
            self.inner
                .storage
                .write_checkpoint(&self.user.user_id, &self.client_id, checkpoint.lsn)
                .await?
        } else {
            self.session.reported_write_checkpoint()
        };
        let new_ops = self.bus.follow.ops_of(&r.names);
        let Some(lines) = self.session.checkpoint_from_ops(
            checkpoint.op_id,
            r.buckets.clone(),
            write_checkpoint,
            &new_ops,
        ) else {
            return Ok(None);
        };
        self.inner.metrics.checkpoint_from_memory();
        self.bus.follow.rebase(checkpoint);
        Ok(Some(lines))
    }

    /// The newest checkpoint read from storage, with the bucket set resolved again when it
    /// may have changed, and checksums from the running totals.
    async fn checkpoint_from_storage(
        &mut self,
        active: &ActiveRules,
    ) -> Result<FromStorage, SessionError> {
        let storage = self.inner.storage.as_ref();
        let Some(mut checkpoint) = storage.checkpoint(active.deployment).await? else {
            return Ok(FromStorage::NoCheckpoint);
        };
        if self.bus.seen < Some(checkpoint) {
            self.bus.resolve_needed = true;
        }
        if self.bus.resolve_needed {
            let (r, streams, at) = resolve(
                storage,
                active,
                &self.request,
                self.only,
                &self.inner.options.limits,
                checkpoint,
            )
            .await?;
            self.session.set_streams(streams);
            self.resolved = Some(r);
            self.resolutions += 1;
            self.bus.resolve_needed = false;
            // The bucket set belongs to `at` (see `resolve`): send that checkpoint.
            checkpoint = at;
            self.bus.seen = self.bus.seen.max(Some(checkpoint));
        }
        let Some(r) = self.resolved.as_ref() else {
            return Ok(FromStorage::Unresolved);
        };
        let names: Vec<String> = r.buckets.iter().map(|b| b.name.clone()).collect();
        let states = storage
            .bucket_states(active.deployment, checkpoint.op_id, &names)
            .await?;
        let write_checkpoint = storage
            .write_checkpoint(&self.user.user_id, &self.client_id, checkpoint.lsn)
            .await?;
        self.inner.metrics.checkpoint_from_storage();
        // The states and bucket set are exact at this checkpoint: follow from it.
        self.bus.follow.rebase(checkpoint);
        Ok(FromStorage::Lines(self.session.begin_checkpoint(
            CheckpointInput {
                checkpoint: checkpoint.op_id,
                buckets: r.buckets.clone(),
                states,
                write_checkpoint,
            },
        )))
    }

    /// Sends a checkpoint's lines, then its bucket data page by page. Returns whether it was
    /// left incomplete: a newer relevant checkpoint replaced it, or compaction past it made
    /// it unservable (docs/protocol.md §3.6).
    async fn send_checkpoint(
        &mut self,
        active: &ActiveRules,
        lines: &[SyncLine],
        from_memory: bool,
    ) -> Result<bool, SessionError> {
        if !lines.is_empty() {
            self.pace.sent(Instant::now());
        }
        let before = self.session.ops_sent_total();
        self.tx.send_all(lines).await?;
        if from_memory {
            self.count_sent(before);
        }
        while let Some(fetch) = self.session.next_fetch() {
            let chunks = self
                .inner
                .storage
                .bucket_data_page(
                    active.deployment,
                    fetch.checkpoint,
                    &fetch.buckets,
                    fetch.page_limit(),
                )
                .await?;
            note_byte_limited(&self.inner.metrics, &fetch, &chunks);
            let before = self.session.ops_sent_total();
            self.tx
                .send_all(&self.session.on_data(&fetch, chunks))
                .await?;
            self.count_sent(before);
            // docs/protocol.md §3.6: a group read from storage completes only if no compaction
            // rewrote its buckets past this checkpoint meanwhile. If one did, the checkpoint is
            // abandoned: storage already has a newer one.
            if self.check_compaction(active).await? {
                return Ok(true);
            }
            // docs/protocol.md §1.4 point 6: once a large checkpoint is well under way, a
            // newer relevant checkpoint replaces it (data sent so far stays valid).
            if self.session.ops_sent_for_pending() >= SWITCH_AFTER_OPS
                && !self.session.is_idle()
                && self.drain(active)?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Runs the compaction check due before a group read from storage completes, sending its
    /// completion line if it passes. Returns whether the checkpoint was abandoned instead.
    async fn check_compaction(&mut self, active: &ActiveRules) -> Result<bool, SessionError> {
        let Some(check) = self.session.compaction_check() else {
            return Ok(false);
        };
        let points = self
            .inner
            .storage
            .compaction_points(active.deployment, &check.buckets)
            .await?;
        self.tx
            .send_all(&self.session.on_compaction_points(&check, &points))
            .await?;
        if self.session.invalidated().is_some() {
            self.inner.metrics.checkpoint_invalidated();
            return Ok(true);
        }
        Ok(false)
    }

    /// Counts the ops sent since the session's total was `before`.
    fn count_sent(&self, before: u64) {
        let sent = self.session.ops_sent_total() - before;
        self.ops_sent.fetch_add(sent, Ordering::Relaxed);
        self.inner.metrics.ops_sent(sent);
    }

    /// After a checkpoint: the pending write checkpoint is settled once reported (or, after
    /// lost notices, once any checkpoint was sent).
    fn settle_pending_write(&mut self) {
        match self.pending_write {
            Some(OpId(i64::MAX)) => self.pending_write = None,
            Some(id) if self.session.reported_write_checkpoint() >= Some(id) => {
                self.pending_write = None;
            }
            _ => {}
        }
    }

    /// Registers what wakes this stream: the events that touch its buckets or lookups, or
    /// every event while it has none resolved yet or a write checkpoint pending. Returns
    /// whether what is queued already calls for a new checkpoint.
    fn update_interest(&mut self, active: &ActiveRules) -> Result<bool, SessionError> {
        let everything = self.pending_write.is_some() || self.resolved.is_none();
        if self.interest_of == Some((self.resolutions, everything)) {
            return Ok(false);
        }
        self.registration
            .set_interest(match self.resolved.as_ref() {
                Some(r) if !everything => Interest::Some {
                    buckets: r.names.iter().cloned().collect(),
                    lookups: r.lookups.iter().cloned().collect(),
                },
                _ => Interest::Everything,
            });
        self.interest_of = Some((self.resolutions, everything));
        // Events published before the new interest took effect were dispatched by the old
        // one, which may not have woken this stream for them (a write checkpoint's commit
        // landing while its notice was being handled, a commit to a bucket just added): judge
        // what is queued now instead of waiting for the next event.
        self.drain(active)
    }

    /// Waits until the index wakes this stream for a relevant event, the rules change, or a
    /// write checkpoint of this user/client is announced.
    async fn wait(&mut self, active: &ActiveRules) -> Result<(), SessionError> {
        loop {
            tokio::select! {
                () = self.registration.notified() => {
                    let wake = self.bus.drain(
                        active.deployment,
                        self.resolved.as_ref(),
                        self.pending_write.is_some(),
                    )?;
                    if wake {
                        return Ok(());
                    }
                },
                changed = self.rules_rx.changed() => {
                    return changed.map_err(|_| SessionError::NoRules);
                }
                notice = self.notices.recv() => match notice {
                    Ok(n) => {
                        if n.user_id == self.user.user_id && n.client_id == self.client_id {
                            self.pending_write =
                                Some(self.pending_write.map_or(n.id, |p| p.max(n.id)));
                            return Ok(());
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        self.pending_write = Some(OpId(i64::MAX));
                        return Ok(());
                    }
                    // The notifier lives as long as the state; keep waiting on the rest.
                    Err(RecvError::Closed) => {
                        self.notices = self.inner.write_checkpoints.subscribe();
                    }
                },
            }
        }
    }
}

/// What a stream knows from the checkpoint bus: its receiver, and what the events it took
/// told it.
struct BusView {
    events: broadcast::Receiver<CheckpointEvent>,
    /// The newest checkpoint of the active deployment this session has accounted for: seen
    /// announced on the bus, or read from storage when it last resolved its buckets.
    seen: Option<StorageCheckpoint>,
    /// The ops of its buckets the bus carried since its last checkpoint (see `follow`).
    follow: Follow,
    /// An event changed one of its parameter lookups (or it lost track): resolve its buckets
    /// again.
    resolve_needed: bool,
}

impl BusView {
    fn new(events: broadcast::Receiver<CheckpointEvent>) -> BusView {
        BusView {
            events,
            seen: None,
            follow: Follow::default(),
            resolve_needed: true,
        }
    }

    /// Takes every queued event and judges each with [`Self::judge`]. Returns whether one of
    /// them calls for a new checkpoint; a lagged receiver does (it no longer knows what
    /// changed, so it resolves again and reads storage).
    fn drain(
        &mut self,
        deployment: i64,
        resolved: Option<&Resolved>,
        pending_write: bool,
    ) -> Result<bool, SessionError> {
        let mut relevant = false;
        loop {
            match self.events.try_recv() {
                Ok(event) => relevant |= self.judge(&event, deployment, resolved, pending_write),
                Err(TryRecvError::Lagged(_)) => {
                    self.resolve_needed = true;
                    self.follow.reset();
                    relevant = true;
                }
                Err(TryRecvError::Empty) => return Ok(relevant),
                Err(TryRecvError::Closed) => return Err(SessionError::BusClosed),
            }
        }
    }

    /// Whether a checkpoint event concerns this stream. Also advances `seen` and `follow`, and
    /// sets `resolve_needed` when the event changed one of the stream's lookups.
    fn judge(
        &mut self,
        event: &CheckpointEvent,
        deployment: i64,
        resolved: Option<&Resolved>,
        pending_write: bool,
    ) -> bool {
        if event.deployment != deployment {
            return false;
        }
        self.seen = self.seen.max(Some(event.checkpoint));
        let Some(r) = resolved else {
            self.follow.reset();
            return true;
        };
        let lookups_changed = (event.all_lookups_changed && !r.lookups.is_empty())
            || event.changed_lookups.iter().any(|l| r.lookups.contains(l));
        let buckets_changed = event.changed_buckets.iter().any(|b| r.names.contains(b));
        if lookups_changed {
            self.resolve_needed = true;
            self.follow.reset();
        } else {
            self.follow.on_event(event, buckets_changed);
        }
        lookups_changed || buckets_changed || pending_write
    }
}

/// Counts a page that ended at its byte budget before its op bound.
fn note_byte_limited(
    metrics: &crate::metrics::ServiceMetrics,
    fetch: &super::state::Fetch,
    chunks: &[riptide_storage::BucketChunk],
) {
    let ops: usize = chunks.iter().map(|c| c.ops.len()).sum();
    if ops < fetch.limit {
        let bytes: usize = chunks
            .iter()
            .flat_map(|c| &c.ops)
            .map(riptide_storage::op_bytes)
            .sum();
        if bytes >= fetch.max_bytes {
            metrics.data_page_byte_limited();
        }
    }
}

/// How long a stream lived, for logs.
pub fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
