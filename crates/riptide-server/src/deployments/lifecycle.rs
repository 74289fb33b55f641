//! One deployment's life: its replicator runs (restarting after errors, with a backoff that
//! starts small again once a run made progress; every error is kept in the replicator's status
//! for the probes and metrics); a deployment that is not active yet is watched until its
//! replicator activates it, then it serves and the one it replaces is stopped and retired
//! (slot dropped, storage terminated). A serving deployment whose slot is lost (invalidated by
//! `max_slot_wal_keep_size`) keeps serving what storage holds while a new deployment of the
//! same rules replicates from a new snapshot and replaces it.

use std::sync::Arc;
use std::time::Duration;

use riptide_replication::{ReplicationError, Replicator};
use riptide_rules::SyncRules;
use riptide_service::ActiveRules;
use riptide_storage::{BucketStorage, Deployment, DeploymentState};
use tokio_util::sync::CancellationToken;

use super::{Deployments, Running, Slots};
use crate::failpoints::failpoint;

/// How often a watched deployment's state is re-read when no checkpoint event comes.
const ACTIVATION_POLL: Duration = Duration::from_millis(200);
/// The first and the longest wait before a failed replicator restarts.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

impl Deployments {
    /// Starts replicating `d` (restarting after errors); a deployment that is not active yet is
    /// watched and switched to once its replicator activates it.
    pub(super) fn run(self: &Arc<Self>, d: Deployment, rules: Arc<SyncRules>) -> Running {
        let cancel = self.cancel.child_token();
        let replicator = Arc::new(self.replicator());
        let task = tokio::spawn({
            let this = self.clone();
            let (replicator, d, rules, cancel) =
                (replicator.clone(), d.clone(), rules.clone(), cancel.clone());
            async move {
                let id = d.id;
                let ended = replicate(replicator, this.storage.clone(), d, rules, cancel).await;
                if ended == Ended::LeaseLost {
                    // The lease keeper stops every replicator of this process.
                    if let Some(lost) = &this.options.lease_lost {
                        lost.cancel();
                    }
                }
                if ended == Ended::SlotLost {
                    // Not awaited here: a deploy may be waiting for this task while holding
                    // the slots' lock that the recovery takes.
                    tokio::spawn(async move { this.replace_lost(id).await });
                }
            }
        });
        if d.state != DeploymentState::Active {
            tokio::spawn(self.clone().watch_activation(d.id, cancel.clone()));
        }
        Running {
            deployment: d,
            rules,
            replicator,
            cancel,
            task,
        }
    }

    async fn watch_activation(self: Arc<Self>, id: i64, cancel: CancellationToken) {
        let mut events = self.events.subscribe();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = events.recv() => {}
                () = tokio::time::sleep(ACTIVATION_POLL) => {}
            }
            match self.storage.deployment(id).await {
                Ok(d) if d.state == DeploymentState::Active => {
                    self.promote(id).await;
                    return;
                }
                Ok(d) if d.state == DeploymentState::Processing => {}
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(deployment = id, error = %e, "cannot read deployment state")
                }
            }
        }
    }

    /// The next deployment `id` became active: serve it and retire the previous one.
    async fn promote(self: &Arc<Self>, id: i64) {
        let mut slots = self.slots.lock().await;
        if slots.next.as_ref().map(|n| n.deployment.id) != Some(id) {
            return; // replaced meanwhile
        }
        let Some(mut next) = slots.next.take() else {
            return;
        };
        if let Ok(d) = self.storage.deployment(id).await {
            next.deployment = d;
        }
        let old = self.switch_to(&mut slots, next);
        drop(slots);
        if let Some(old) = old {
            self.stop_and_retire(old).await;
        }
    }

    /// Makes `next` the serving deployment; returns the one it replaces.
    pub(super) fn switch_to(&self, slots: &mut Slots, next: Running) -> Option<Running> {
        tracing::info!(
            deployment = next.deployment.id,
            "sync rules deployment active; clients switch at their next checkpoint"
        );
        self.rules_tx.send_replace(Some(ActiveRules {
            deployment: next.deployment.id,
            rules: next.rules.clone(),
        }));
        self.set_status(&next);
        slots.serving.replace(next)
    }

    pub(super) async fn stop_and_retire(&self, r: Running) {
        r.cancel.cancel();
        let _ = r.task.await;
        failpoint!("deployments::after_activation");
        self.retire(&r.deployment).await;
        self.drop_orphan_slots().await;
    }

    /// The serving deployment `id` lost its slot: a new deployment of the same rules
    /// replicates from a new snapshot and replaces it once ready; `id` serves what storage
    /// holds meanwhile. Nothing when another deployment is on its way already.
    async fn replace_lost(self: Arc<Self>, id: i64) {
        let mut slots = self.slots.lock().await;
        let serving = slots.serving.as_ref().map(|s| s.deployment.clone());
        let Some(serving) = serving.filter(|s| s.id == id) else {
            return;
        };
        if slots.next.is_some() {
            return;
        }
        let created = match self
            .storage
            .create_deployment(&serving.content, &self.options.replicator.slot_prefix)
            .await
        {
            Ok(created) => created,
            Err(e) => {
                tracing::error!(deployment = id, error = %e, "cannot create a deployment to replace the one whose slot is lost");
                return;
            }
        };
        match super::deployment_rules(&created) {
            Ok(rules) => {
                tracing::warn!(deployment = id, replacement = created.id, slot = %created.slot_name, "replication slot lost: the same rules replicate again from a new snapshot; the current data serves until then");
                slots.next = Some(self.run(created, rules));
            }
            Err(e) => {
                tracing::error!(deployment = created.id, error = %e, "the rules no longer parse");
                self.retire(&created).await;
            }
        }
    }

    /// Drops a deployment's slot and terminates its storage (errors are logged: a leftover
    /// slot is dropped again at the next start-up only if still recorded, so say so loudly).
    pub(super) async fn retire(&self, d: &Deployment) {
        if let Err(e) = self.replicator().drop_slot(&d.slot_name).await {
            tracing::error!(deployment = d.id, slot = %d.slot_name, error = %e, "cannot drop the replaced deployment's replication slot; it is dropped again at the next start or switch");
        }
        failpoint!("deployments::after_slot_drop");
        if let Err(e) = self.storage.terminate(d.id).await {
            tracing::error!(deployment = d.id, error = %e, "cannot terminate the replaced deployment");
        } else {
            tracing::info!(deployment = d.id, slot = %d.slot_name, "replaced sync rules deployment removed");
        }
    }

    /// Stops every replicator (after `cancel` fired) and waits for them.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let mut slots = self.slots.lock().await;
        for r in [slots.serving.take(), slots.next.take()]
            .into_iter()
            .flatten()
        {
            r.cancel.cancel();
            let _ = r.task.await;
        }
    }
}

/// Why a deployment's replication ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Cancelled, or the deployment was terminated.
    Stopped,
    /// The slot of a deployment whose snapshot is done is gone: it cannot replicate again.
    SlotLost,
    /// Storage refused a write: another process holds the replication lease now.
    LeaseLost,
}

/// Runs replication for one deployment until cancelled, restarting after errors. Every error
/// goes to the replicator's status (the probes and metrics report it); the wait before a
/// restart doubles up to [`MAX_RETRY`] and starts at [`FIRST_RETRY`] again after a run that
/// committed something.
async fn replicate(
    replicator: Arc<Replicator>,
    storage: Arc<dyn BucketStorage>,
    deployment: Deployment,
    rules: Arc<SyncRules>,
    cancel: CancellationToken,
) -> Ended {
    let id = deployment.id;
    let status = replicator.status();
    let mut backoff = FIRST_RETRY;
    while !cancel.is_cancelled() {
        let current = match storage.deployment(id).await {
            Ok(d) if d.state == DeploymentState::Terminated => break,
            Ok(d) => d,
            Err(e) => {
                tracing::error!(deployment = id, error = %e, "cannot read deployment");
                deployment.clone()
            }
        };
        let commits = status.commits();
        match replicator.run(current, rules.clone(), cancel.clone()).await {
            Ok(()) => break,
            Err(e) => {
                status.failed(&e);
                if e.is_lease_lost() {
                    tracing::error!(deployment = id, error = %e, "replication stopped: the lease was taken over");
                    return Ended::LeaseLost;
                }
                if matches!(e, ReplicationError::SlotMissing { .. }) {
                    tracing::error!(deployment = id, error = %e, "replication slot lost");
                    return Ended::SlotLost;
                }
                if status.commits() > commits {
                    backoff = FIRST_RETRY;
                }
                tracing::error!(deployment = id, error = %e, "replication failed; retrying in {backoff:?}");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_RETRY);
            }
        }
    }
    Ended::Stopped
}
