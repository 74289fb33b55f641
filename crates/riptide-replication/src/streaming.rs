//! The socket loop: replication events in, acknowledgements out.
//!
//! - Group commit: after a source commit held for its group (see `stream/`), the next event is
//!   taken only if it is already waiting; when none is, the group is committed at once.
//! - Idle deadline: a walsender (or a network in between) that stops answering leaves the
//!   socket open and silent. Postgres sends nothing while a caught-up slot has nothing to
//!   stream, so silence alone proves nothing: after [`StreamOptions::idle_heartbeat`] of it, a
//!   logical message is written to the source (`powersync`/`ping`, as PowerSync's keepalive),
//!   which a live stream delivers within moments (and commits, so the slot's position moves on
//!   an idle source too). After [`StreamOptions::idle_deadline`] of silence the stream is taken
//!   for dead: the run fails and the replicator reconnects. Time spent applying events is not
//!   silence.
//! - Replaying a deferred streamed transaction (`stream/streamed.rs`): with protocol 1, the
//!   session ends ([`ReplicationError::StreamResumes`]) once that transaction's commit is
//!   stored (or, between transactions, after a minute without it: it aborted or runs on), so
//!   that the next one streams again.
//! - Completion: a resumed snapshot is complete once the stream has committed past the end of
//!   its copy (`snapshot/`); storage then marks it done and activates the deployment.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use pgwire_replication::{ReplicationClient, ReplicationEvent};
use riptide_protocol::Lsn;
use riptide_storage::{BucketStorage, DeploymentId};

use crate::connection::{self, QUERY_TIMEOUT, within};
use crate::error::ReplicationError;
use crate::stream::{CHECKPOINT_MESSAGE_PREFIX, StreamOptions, TransactionApplier};

/// Content of the heartbeat message.
const HEARTBEAT: &str = "ping";
/// How long a protocol 1 session replaying a deferred streamed transaction lasts at most when
/// that transaction's commit does not come (it aborted, or runs on): streaming is tried again.
const DEFERRED_SESSION_MAX: Duration = Duration::from_secs(60);
/// How often the loop wakes when nothing happens.
const TICK: Duration = Duration::from_millis(500);

/// A resumed snapshot waiting for the stream to reach the end of its copy.
pub(crate) struct Completion {
    pub storage: Arc<dyn BucketStorage>,
    pub deployment: DeploymentId,
    pub at: Lsn,
}

/// Silence on the stream, and the heartbeat that breaks it.
struct Liveness {
    heartbeat_after: Duration,
    deadline: Duration,
    /// Time spent waiting for an event since the last one.
    silent: Duration,
    /// Whether a heartbeat was written during this silence.
    heartbeat_sent: bool,
    source: riptide_pg::PgConnection,
}

impl Liveness {
    fn heard(&mut self) {
        self.silent = Duration::ZERO;
        self.heartbeat_sent = false;
    }

    /// Waited `waited` without an event: a heartbeat when due; an error past the deadline.
    fn waited(&mut self, waited: Duration) -> Result<(), ReplicationError> {
        self.silent += waited;
        if self.silent >= self.deadline {
            return Err(ReplicationError::StreamSilent {
                seconds: self.silent.as_secs(),
            });
        }
        if self.silent >= self.heartbeat_after && !self.heartbeat_sent {
            self.heartbeat_sent = true;
            tokio::spawn(heartbeat(self.source.clone()));
        }
        Ok(())
    }
}

/// Writes the heartbeat message on its own connection (the loop keeps watching meanwhile).
async fn heartbeat(source: riptide_pg::PgConnection) {
    let result = within("write a heartbeat", QUERY_TIMEOUT, async {
        let client = connection::connect(&source).await?;
        client
            .execute(
                "SELECT pg_logical_emit_message(false, $1, $2)",
                &[&CHECKPOINT_MESSAGE_PREFIX, &HEARTBEAT],
            )
            .await?;
        Ok(())
    })
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "cannot write a heartbeat to the source");
    }
}

/// Runs the loop until the stream fails (or forever: the caller cancels).
pub(crate) async fn stream(
    mut session: ReplicationClient,
    mut applier: TransactionApplier,
    options: &StreamOptions,
    source: riptide_pg::PgConnection,
    mut completion: Option<Completion>,
    deferred: Option<u32>,
) -> Result<(), ReplicationError> {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut liveness = Liveness {
        heartbeat_after: options.idle_heartbeat,
        deadline: options.idle_deadline,
        silent: Duration::ZERO,
        heartbeat_sent: false,
        source,
    };
    let mut waiting: Option<ReplicationEvent> = None;
    // The xid of the transaction being received (protocol 1 Begin … Commit).
    let mut receiving: Option<u32> = None;
    let session_started = Instant::now();
    loop {
        let event = match waiting.take() {
            Some(event) => Some(event),
            None => {
                let started = Instant::now();
                let received = tokio::select! {
                    event = session.recv() => Some(event?.ok_or_else(|| {
                        ReplicationError::Protocol("replication stream ended".into())
                    })?),
                    _ = tick.tick() => None,
                };
                match &received {
                    Some(_) => liveness.heard(),
                    None => liveness.waited(started.elapsed())?,
                }
                received
            }
        };
        // Between transactions: a commit, or an idle tick.
        let (between, committed_xid) = match &event {
            Some(ReplicationEvent::Begin { xid, .. }) => {
                receiving = Some(*xid);
                (false, None)
            }
            Some(ReplicationEvent::Commit { .. }) => (true, receiving.take()),
            None => (true, None),
            _ => (false, None),
        };
        let resumes = deferred.is_some()
            && between
            && (committed_xid == deferred || session_started.elapsed() >= DEFERRED_SESSION_MAX);
        let mut ack = apply(&mut applier, event).await?;
        if let (true, Some(xid)) = (resumes, deferred) {
            ack = applier.release().await?.or(ack);
            if let Some(lsn) = ack {
                session.update_applied_lsn(pgwire_replication::Lsn(lsn.0));
            }
            return Err(ReplicationError::StreamResumes { xid });
        }
        if applier.holding() {
            // `recv` is a channel receive: polling it once loses nothing.
            match session.recv().now_or_never() {
                Some(event) => {
                    waiting = Some(event?.ok_or_else(|| {
                        ReplicationError::Protocol("replication stream ended".into())
                    })?);
                }
                None => ack = applier.release().await?.or(ack),
            }
        }
        if let Some(lsn) = ack {
            session.update_applied_lsn(pgwire_replication::Lsn(lsn.0));
            if let Some(c) = completion.take_if(|c| lsn >= c.at) {
                c.storage.complete_snapshot(c.deployment).await?;
                tracing::info!(lsn = %lsn, "snapshot consistent; deployment active");
            }
        }
    }
}

/// One event (or an idle tick, `None`) through the applier. Returns the LSN to acknowledge.
async fn apply(
    applier: &mut TransactionApplier,
    event: Option<ReplicationEvent>,
) -> Result<Option<Lsn>, ReplicationError> {
    Ok(match event {
        None => applier.on_idle().await?,
        Some(ReplicationEvent::Begin { final_lsn, .. }) => {
            applier.begin(Lsn(final_lsn.0))?;
            None
        }
        Some(ReplicationEvent::XLogData { data, .. }) => applier.data(&data).await?,
        Some(ReplicationEvent::Commit { end_lsn, .. }) => applier.commit(Lsn(end_lsn.0)).await?,
        Some(ReplicationEvent::Message {
            transactional,
            lsn,
            prefix,
            ..
        }) => applier.message(transactional, Lsn(lsn.0), &prefix).await?,
        // The walsender sends keepalives between transactions while acknowledgements lag
        // (often more than one a transaction): they must not end a group.
        Some(ReplicationEvent::KeepAlive { .. }) if applier.holding() => None,
        Some(ReplicationEvent::KeepAlive { .. }) => applier.on_idle().await?,
        Some(ReplicationEvent::StoppedAt { .. }) => {
            return Err(ReplicationError::Protocol(
                "replication stream stopped".into(),
            ));
        }
    })
}
