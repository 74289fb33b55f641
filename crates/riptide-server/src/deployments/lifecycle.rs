//! One deployment's life: its replicator runs (restarting after errors); a deployment that is
//! not active yet is watched until its replicator activates it, then it serves and the one it
//! replaces is stopped and retired (slot dropped, storage terminated).

use std::sync::Arc;
use std::time::Duration;

use riptide_replication::Replicator;
use riptide_rules::SyncRules;
use riptide_service::ActiveRules;
use riptide_storage::{BucketStorage, Deployment, DeploymentState};
use tokio_util::sync::CancellationToken;

use super::{Deployments, Running, Slots};

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
        let task = tokio::spawn(replicate(
            replicator.clone(),
            self.storage.clone(),
            d.clone(),
            rules.clone(),
            cancel.clone(),
        ));
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
        self.retire(&r.deployment).await;
    }

    /// Drops a deployment's slot and terminates its storage (errors are logged: a leftover
    /// slot is dropped again at the next start-up only if still recorded, so say so loudly).
    pub(super) async fn retire(&self, d: &Deployment) {
        if let Err(e) = self.replicator().drop_slot(&d.slot_name).await {
            tracing::error!(deployment = d.id, slot = %d.slot_name, error = %e, "cannot drop the replaced deployment's replication slot; drop it by hand: SELECT pg_drop_replication_slot('{}')", d.slot_name);
        }
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

/// Runs replication for one deployment until cancelled, restarting after errors.
async fn replicate(
    replicator: Arc<Replicator>,
    storage: Arc<dyn BucketStorage>,
    deployment: Deployment,
    rules: Arc<SyncRules>,
    cancel: CancellationToken,
) {
    let id = deployment.id;
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
        match replicator.run(current, rules.clone(), cancel.clone()).await {
            Ok(()) => break,
            Err(e) => {
                tracing::error!(deployment = id, error = %e, "replication failed; retrying in {backoff:?}");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_RETRY);
            }
        }
    }
}
