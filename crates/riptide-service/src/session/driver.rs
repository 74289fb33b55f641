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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use riptide_protocol::{ErrorCode, OpId, StreamingSyncRequest};
use riptide_rules::RequestParameters;
use riptide_storage::{BucketStorage, CheckpointEvent, StorageCheckpoint, StorageError};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// Ops of one checkpoint after which a newer relevant checkpoint replaces it.
const SWITCH_AFTER_OPS: u64 = 1000;

use super::follow::Follow;
use super::framing::{Disconnected, LineSender, SendError};
use super::pace::Pace;
use super::state::{CheckpointInput, SessionBucket, SessionState};
use super::wake::Interest;
use crate::auth::VerifiedToken;
use crate::limits::Limits;
use crate::state::{ActiveRules, AppState};

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

/// The buckets of a connection under one deployment of the rules.
struct Resolved {
    deployment: i64,
    rules: Arc<dyn crate::bucket_rules::BucketRules>,
    buckets: Vec<SessionBucket>,
    names: HashSet<String>,
    lookups: HashSet<Vec<u8>>,
}

/// Reads of the parameter lookups retried because a commit landed while they were read; after
/// that many the newest read is used (the bus event of the commit resolves the stream again).
const CONSISTENT_LOOKUP_ATTEMPTS: usize = 8;

/// Resolves the buckets of a request at `checkpoint`: `parameter_lookups` →
/// `parameter_results` → `resolve_buckets`, enforcing the limits. `only` restricts to the
/// listed buckets.
///
/// Lookups are not versioned, so they are read between two reads of the checkpoint: a commit
/// writes its lookups and advances the checkpoint in one storage transaction, so when both
/// reads agree the lookups are exactly those of that checkpoint. Otherwise a commit landed in
/// between, and the read repeats at the newer checkpoint. Returns the checkpoint the bucket
/// set belongs to (without this, a client could get the bucket set of a newer commit with the
/// data of an older checkpoint, e.g. a group's buckets already revoked while its membership
/// rows still show the membership).
async fn resolve(
    storage: &dyn BucketStorage,
    active: &ActiveRules,
    params: &RequestParameters,
    only: Option<&[String]>,
    limits: &Limits,
    mut checkpoint: StorageCheckpoint,
) -> Result<(Resolved, Vec<(String, u8)>, StorageCheckpoint), SessionError> {
    let lookups = active.rules.parameter_lookups(params);
    let mut results = HashMap::new();
    if !lookups.is_empty() {
        for _ in 0..CONSISTENT_LOOKUP_ATTEMPTS {
            results = storage
                .parameter_results(active.deployment, &lookups)
                .await?;
            match storage.checkpoint(active.deployment).await? {
                Some(after) if after != checkpoint => checkpoint = after,
                _ => break,
            }
        }
    }
    let count: usize = results.values().map(Vec::len).sum();
    if count > limits.max_parameter_query_results {
        return Err(LimitExceeded::ParameterResults {
            count,
            limit: limits.max_parameter_query_results,
        }
        .into());
    }
    let mut descriptions = active.rules.resolve_buckets(params, &results);
    if let Some(only) = only {
        descriptions.retain(|b| only.contains(&b.name));
    }
    if descriptions.len() > limits.max_buckets_per_connection {
        return Err(LimitExceeded::Buckets {
            count: descriptions.len(),
            limit: limits.max_buckets_per_connection,
        }
        .into());
    }
    let definitions = active.rules.definitions();
    let index: HashMap<&str, usize> = definitions
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (name.as_str(), i))
        .collect();
    let buckets: Vec<SessionBucket> = descriptions
        .into_iter()
        .map(|b| SessionBucket {
            definition: index.get(b.definition.as_str()).copied().unwrap_or(0),
            priority: b.priority.min(3),
            name: b.name,
        })
        .collect();
    let resolved = Resolved {
        deployment: active.deployment,
        rules: active.rules.clone(),
        names: buckets.iter().map(|b| b.name.clone()).collect(),
        buckets,
        lookups: lookups.into_iter().collect(),
    };
    Ok((resolved, definitions, checkpoint))
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
        let inner = &state.inner;
        let storage = inner.storage.as_ref();
        let limits = inner.options.limits;
        // Subscribe before the first read so no checkpoint between the two is missed.
        let mut bus = BusView::new(inner.events.subscribe());
        // Waits for the events that concern this stream (see `wake`).
        let registration = inner.wake.register(&inner.events);
        let mut interest_of: Option<(u64, bool)> = None;
        let mut resolutions: u64 = 0;
        let mut notices = inner.write_checkpoints.subscribe();
        let mut rules_rx = inner.rules.clone();

        let client_id = request.client_id.clone().unwrap_or_default();
        let params = RequestParameters::new(
            user.claims.clone(),
            request.parameters.clone().unwrap_or_default(),
        );
        let only = request.only.as_deref();
        let mut session = SessionState::new(Vec::new(), &request.buckets);
        let mut resolved: Option<Resolved> = None;
        // A write checkpoint of this user/client that may not be reported yet.
        let mut pending_write: Option<OpId> = None;
        let mut pace = Pace::new(inner.options.checkpoint_interval);

        loop {
            let active = rules_rx.borrow_and_update().clone();
            let Some(active) = active else {
                return Err(SessionError::NoRules);
            };
            let same_rules = resolved.as_ref().is_some_and(|r| {
                r.deployment == active.deployment && Arc::ptr_eq(&r.rules, &active.rules)
            });
            if !same_rules {
                bus.resolve_needed = true;
                bus.seen = None;
                bus.follow.reset();
            }
            if let Some(due) = pace.due() {
                tokio::time::sleep_until(due.into()).await;
            }

            // A commit is announced on the bus after it is durable, so storage may hold
            // commits whose events this session has not seen yet. Take what is queued first
            // (the checkpoint read next covers all of it); if that checkpoint is still ahead of
            // everything seen, its newest commits may have changed this stream's parameter
            // lookups: resolve the buckets again.
            bus.drain(
                active.deployment,
                resolved.as_ref(),
                pending_write.is_some(),
            )?;

            // The newest checkpoint, served from the ops the bus carried when they cover
            // everything since the last one (no storage read), else read from storage.
            let mut begun = None;
            if !bus.resolve_needed
                && session.is_idle()
                && let Some(r) = resolved.as_ref()
                && let Some(checkpoint) = bus.follow.known()
            {
                // Only a write checkpoint announced to this process can have become visible
                // (the notice keeps `pending_write` set until it is reported).
                let write_checkpoint = if pending_write.is_some() {
                    storage
                        .write_checkpoint(&user.user_id, &client_id, checkpoint.lsn)
                        .await?
                } else {
                    session.reported_write_checkpoint()
                };
                let new_ops = bus.follow.ops_of(&r.names);
                if let Some(lines) = session.checkpoint_from_ops(
                    checkpoint.op_id,
                    r.buckets.clone(),
                    write_checkpoint,
                    &new_ops,
                ) {
                    inner.metrics.checkpoint_from_memory();
                    bus.follow.rebase(checkpoint);
                    begun = Some(lines);
                }
            }
            let from_memory = begun.is_some();
            if begun.is_none()
                && let Some(mut checkpoint) = storage.checkpoint(active.deployment).await?
            {
                if bus.seen < Some(checkpoint) {
                    bus.resolve_needed = true;
                }
                if bus.resolve_needed {
                    let (r, definitions, at) =
                        resolve(storage, &active, &params, only, &limits, checkpoint).await?;
                    session.set_streams(SessionState::streams_for(&definitions));
                    resolved = Some(r);
                    resolutions += 1;
                    bus.resolve_needed = false;
                    // The bucket set belongs to `at` (see `resolve`): send that checkpoint.
                    checkpoint = at;
                    bus.seen = bus.seen.max(Some(checkpoint));
                }
                let Some(r) = resolved.as_ref() else {
                    continue;
                };
                let names: Vec<String> = r.buckets.iter().map(|b| b.name.clone()).collect();
                let states = storage
                    .bucket_states(active.deployment, checkpoint.op_id, &names)
                    .await?;
                let write_checkpoint = storage
                    .write_checkpoint(&user.user_id, &client_id, checkpoint.lsn)
                    .await?;
                inner.metrics.checkpoint_from_storage();
                // The states and bucket set are exact at this checkpoint: follow from it.
                bus.follow.rebase(checkpoint);
                begun = Some(session.begin_checkpoint(CheckpointInput {
                    checkpoint: checkpoint.op_id,
                    buckets: r.buckets.clone(),
                    states,
                    write_checkpoint,
                }));
            }
            if let Some(lines) = begun {
                if !lines.is_empty() {
                    pace.sent(Instant::now());
                }
                let before = session.ops_sent_total();
                tx.send_all(&lines).await?;
                if from_memory {
                    let sent = session.ops_sent_total() - before;
                    ops_sent.fetch_add(sent, Ordering::Relaxed);
                    inner.metrics.ops_sent(sent);
                }
                let mut newer_checkpoint = false;
                while let Some(fetch) = session.next_fetch() {
                    let chunks = storage
                        .bucket_data(
                            active.deployment,
                            fetch.checkpoint,
                            &fetch.buckets,
                            fetch.limit,
                        )
                        .await?;
                    let before = session.ops_sent_total();
                    tx.send_all(&session.on_data(&fetch, chunks)).await?;
                    let sent = session.ops_sent_total() - before;
                    ops_sent.fetch_add(sent, Ordering::Relaxed);
                    inner.metrics.ops_sent(sent);
                    // docs/protocol.md §3.6: a group read from storage completes only if no
                    // compaction rewrote its buckets past this checkpoint meanwhile.
                    if let Some(check) = session.compaction_check() {
                        let points = storage
                            .compaction_points(active.deployment, &check.buckets)
                            .await?;
                        tx.send_all(&session.on_compaction_points(&check, &points))
                            .await?;
                        if session.invalidated().is_some() {
                            inner.metrics.checkpoint_invalidated();
                        }
                    }
                    // docs/protocol.md §1.4 point 6: once a large checkpoint is well under way,
                    // a newer relevant checkpoint replaces it (data sent so far stays valid).
                    if session.ops_sent_for_pending() >= SWITCH_AFTER_OPS && !session.is_idle() {
                        newer_checkpoint = bus.drain(
                            active.deployment,
                            resolved.as_ref(),
                            pending_write.is_some(),
                        )?;
                        if newer_checkpoint {
                            break;
                        }
                    }
                }
                // An abandoned checkpoint (compacted past it): storage already has a newer one.
                if newer_checkpoint || session.invalidated().is_some() {
                    continue;
                }
                match pending_write {
                    Some(OpId(i64::MAX)) => pending_write = None,
                    Some(id) if session.reported_write_checkpoint() >= Some(id) => {
                        pending_write = None;
                    }
                    _ => {}
                }
            }

            // Wait for something relevant to this stream: woken by the index for the events
            // that touch its buckets or lookups (every event while it has none resolved yet or
            // a write checkpoint pending), it reads what its receiver queued.
            let everything = pending_write.is_some() || resolved.is_none();
            if interest_of != Some((resolutions, everything)) {
                registration.set_interest(match resolved.as_ref() {
                    Some(r) if !everything => Interest::Some {
                        buckets: r.names.iter().cloned().collect(),
                        lookups: r.lookups.iter().cloned().collect(),
                    },
                    _ => Interest::Everything,
                });
                interest_of = Some((resolutions, everything));
                // Events published before the new interest took effect were dispatched by the
                // old one, which may not have woken this stream for them (a write checkpoint's
                // commit landing while its notice was being handled, a commit to a bucket just
                // added): judge what is queued now instead of waiting for the next event.
                let relevant = bus.drain(
                    active.deployment,
                    resolved.as_ref(),
                    pending_write.is_some(),
                )?;
                if relevant {
                    continue;
                }
            }
            loop {
                tokio::select! {
                    () = registration.notified() => {
                        let wake = bus.drain(active.deployment, resolved.as_ref(), pending_write.is_some())?;
                        if wake {
                            break;
                        }
                    },
                    changed = rules_rx.changed() => {
                        if changed.is_err() {
                            return Err(SessionError::NoRules);
                        }
                        break;
                    }
                    notice = notices.recv() => match notice {
                        Ok(n) => {
                            if n.user_id == user.user_id && n.client_id == client_id {
                                pending_write = Some(pending_write.map_or(n.id, |p| p.max(n.id)));
                                break;
                            }
                        }
                        Err(RecvError::Lagged(_)) => {
                            pending_write = Some(OpId(i64::MAX));
                            break;
                        }
                        // The notifier lives as long as the state; keep waiting on the rest.
                        Err(RecvError::Closed) => {
                            notices = inner.write_checkpoints.subscribe();
                        }
                    },
                }
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
        let lookups_changed = event.changed_lookups.iter().any(|l| r.lookups.contains(l));
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

/// How long a stream lived, for logs.
pub fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
