//! Start-up: the stored deployments meet the config's rules. The active deployment keeps
//! serving; a processing one resumes unless the config's rules replaced it (one with the
//! serving rules replaces a deployment whose slot was lost); config rules that differ from
//! what serves become a new deployment. Nothing here needs the source to be up: the stored
//! deployment serves while the replicators retry it. Slots a replaced deployment left behind
//! are dropped in the background.

use std::sync::{Arc, Mutex as StdMutex};

use riptide_replication::ReplicationStatus;
use riptide_rules::SyncRules;
use riptide_service::ActiveRules;
use riptide_storage::{BucketStorage, CheckpointEvent, Deployment};
use tokio::sync::{Mutex, MutexGuard, broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::{DeploymentError, DeploymentOptions, Deployments, Slots, deployment_rules};

/// Whether `e` says the source could not be reached (rather than that it is not set up).
pub fn unreachable(e: &riptide_replication::ReplicationError) -> bool {
    use riptide_replication::ReplicationError as E;
    match e {
        // TLS trust, host name and sslmode mistakes do not fix themselves: start-up stops.
        E::Connect(c) => c.is_transient(),
        E::Timeout { .. } => true,
        E::Query(q) => q.is_closed() || q.as_db_error().is_none(),
        _ => false,
    }
}

impl Deployments {
    /// Picks up the stored deployments and the config's rules and starts replicating:
    /// the active deployment keeps serving; rules that differ from it replicate as the next
    /// deployment. The service reads its rules from `rules_tx`'s receivers.
    pub async fn start(
        storage: Arc<dyn BucketStorage>,
        options: DeploymentOptions,
        events: broadcast::Sender<CheckpointEvent>,
        rules_tx: watch::Sender<Option<ActiveRules>>,
        cancel: CancellationToken,
    ) -> Result<Arc<Deployments>, DeploymentError> {
        let this = Arc::new(Deployments {
            storage: storage.clone(),
            options,
            events,
            rules_tx,
            cancel,
            slots: Mutex::new(Slots::default()),
            status: StdMutex::new(Arc::new(ReplicationStatus::default())),
        });
        let active = storage.active_deployment().await?;
        let processing = storage.processing_deployment().await?;
        let mut slots = this.slots.lock().await;
        if let Some(active) = active {
            this.serve_stored(&mut slots, active).await;
        }
        if let Some(next) = this.next_at_start(&slots, processing).await? {
            this.run_next(&mut slots, next).await;
        }
        if slots.serving.is_none() && slots.next.is_none() {
            tracing::info!(
                "no sync rules deployed yet: deploy them with POST /api/sync-rules/v1/deploy"
            );
        }
        drop(slots);
        tokio::spawn({
            let this = this.clone();
            async move { this.drop_orphan_slots().await }
        });
        Ok(this)
    }

    /// Serves the stored active deployment, or retires it if its rules no longer parse.
    async fn serve_stored(self: &Arc<Self>, slots: &mut MutexGuard<'_, Slots>, active: Deployment) {
        match deployment_rules(&active) {
            Ok(rules) => {
                // A process taking the lease over already serves them (`roles/follow.rs`):
                // its streams are not told of a change that is none.
                self.rules_tx.send_if_modified(|current| {
                    if current.as_ref().map(|r| r.deployment) == Some(active.id) {
                        return false;
                    }
                    *current = Some(ActiveRules {
                        deployment: active.id,
                        rules: rules.clone(),
                    });
                    true
                });
                let running = self.run(active, rules);
                self.set_status(&running);
                slots.serving = Some(running);
            }
            Err(e) => {
                tracing::warn!(deployment = active.id, error = %e, "the active deployment's rules no longer parse; replacing it");
                self.retire(&active).await;
            }
        }
    }

    /// The deployment to replicate next: the processing one if the config's rules are still
    /// the same (or the config has none), a new one for changed config rules, none when the
    /// serving deployment already has them.
    async fn next_at_start(
        &self,
        slots: &Slots,
        processing: Option<Deployment>,
    ) -> Result<Option<Deployment>, DeploymentError> {
        let serving_content = slots
            .serving
            .as_ref()
            .map(|r| r.deployment.content.as_str());
        let Some(wanted) = self.options.config_rules.as_deref() else {
            return Ok(processing);
        };
        let mut next = processing;
        if let Some(p) = &next
            && p.content != wanted
        {
            tracing::info!(
                deployment = p.id,
                "sync rules changed again; dropping the deployment still processing"
            );
            self.retire(p).await;
            next = None;
        }
        if serving_content == Some(wanted) {
            // A processing deployment of the serving rules replaces a deployment whose slot
            // was lost (`lifecycle.rs`): it goes on.
            return Ok(next);
        }
        if next.is_some() {
            return Ok(next);
        }
        self.create_for_config(wanted).await.map(Some)
    }

    /// A new deployment for the config's rules, once the source is ready for them (or
    /// without the check while the source cannot be reached: its replicator then reports
    /// what is wrong, and retries).
    async fn create_for_config(&self, wanted: &str) -> Result<Deployment, DeploymentError> {
        let rules = SyncRules::parse(wanted)?;
        match self.replicator().check_source(&rules).await {
            Ok(()) => {}
            Err(e) if unreachable(&e) => {
                tracing::warn!(error = %e, "the source database cannot be reached; the new rules replicate once it can");
            }
            Err(e) => return Err(DeploymentError::SourceNotReady(e)),
        }
        let created = self
            .storage
            .create_deployment(wanted, &self.options.replicator.slot_prefix)
            .await?;
        tracing::info!(deployment = created.id, slot = %created.slot_name, "new sync rules deployment; the current one serves until it is ready");
        Ok(created)
    }

    /// Replicates `next` in the background, or drops it if its rules no longer parse.
    async fn run_next(self: &Arc<Self>, slots: &mut MutexGuard<'_, Slots>, next: Deployment) {
        match deployment_rules(&next) {
            Ok(rules) => {
                let running = self.run(next, rules);
                if slots.serving.is_none() {
                    self.set_status(&running);
                }
                slots.next = Some(running);
            }
            Err(e) => {
                tracing::warn!(deployment = next.id, error = %e, "a processing deployment's rules no longer parse; dropping it");
                self.retire(&next).await;
            }
        }
    }
}
