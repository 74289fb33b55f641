//! A deployment switched by another process on the same storage (its notification, through
//! the process's `CheckpointListener`): the service's rules follow the stored active
//! deployment. This process's own switches never come here (the listener skips them).

use std::sync::Arc;

use riptide_service::ActiveRules;
use riptide_storage::{DeploymentId, DeploymentState};

use super::{Deployments, deployment_rules};

impl Deployments {
    /// The hook [`riptide_service::AppState::notification_sink`] calls on another process's
    /// deployment change: reads the active deployment from storage (in a task) and serves its
    /// rules if they are not the ones served.
    pub fn follow_hook(self: &Arc<Self>) -> riptide_service::node_notifications::DeploymentHook {
        let this = Arc::downgrade(self);
        Arc::new(move |deployment: DeploymentId, state: DeploymentState| {
            let Some(this) = this.upgrade() else {
                return;
            };
            tracing::debug!(
                deployment,
                state = state.as_str(),
                "deployment changed in another process"
            );
            tokio::spawn(async move { this.follow_stored_active().await });
        })
    }

    /// Serves the stored active deployment's rules if another one is served now.
    async fn follow_stored_active(&self) {
        // Held like a switch of this process's own, so the two never interleave.
        let _slots = self.slots.lock().await;
        let active = match self.storage.active_deployment().await {
            Ok(Some(active)) => active,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the active deployment another process switched to");
                return;
            }
        };
        if self.rules_tx.borrow().as_ref().map(|r| r.deployment) == Some(active.id) {
            return;
        }
        match deployment_rules(&active) {
            Ok(rules) => {
                tracing::info!(
                    deployment = active.id,
                    "another process activated a deployment; serving its rules"
                );
                self.rules_tx.send_replace(Some(ActiveRules {
                    deployment: active.id,
                    rules,
                }));
            }
            Err(e) => {
                tracing::warn!(deployment = active.id, error = %e, "the deployment another process activated has rules that do not parse");
            }
        }
    }
}
