//! A process that does not hold the lease (an API node, a standby) follows the active
//! deployment in storage: whenever it changes (the holder activated a new one), the service's
//! rules switch to it, as they do in the holder's process (streams move at their next
//! checkpoint). Read when another process's deployment switch is announced (its notification,
//! through the process's `CheckpointListener`: [`follow_hook`]), on every checkpoint event, and
//! at least every [`FOLLOW_POLL`].

use std::sync::Arc;
use std::time::Duration;

use riptide_service::ActiveRules;
use riptide_service::node_notifications::DeploymentHook;
use riptide_storage::{BucketStorage, CheckpointEvent, DeploymentId, DeploymentState};
use tokio::sync::{Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::Node;
use crate::deployments::deployment_rules;

/// How often the active deployment is read when no checkpoint event comes.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

/// The hook [`riptide_service::AppState::notification_sink`] calls on another process's
/// deployment change: wakes [`follow_active`] through `switched`.
pub fn follow_hook(switched: Arc<Notify>) -> DeploymentHook {
    Arc::new(move |deployment: DeploymentId, state: DeploymentState| {
        tracing::debug!(
            deployment,
            state = state.as_str(),
            "deployment changed in another process"
        );
        switched.notify_one();
    })
}

/// Follows the active deployment while `node` does not hold the lease, until `cancel`.
pub async fn follow_active(
    node: Arc<Node>,
    storage: Arc<dyn BucketStorage>,
    events: broadcast::Sender<CheckpointEvent>,
    rules_tx: watch::Sender<Option<ActiveRules>>,
    switched: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut events = events.subscribe();
    loop {
        if node.deployments().is_none() {
            refresh(storage.as_ref(), &rules_tx).await;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = events.recv() => {}
            () = switched.notified() => {}
            () = tokio::time::sleep(FOLLOW_POLL) => {}
        }
    }
}

/// Serves the stored active deployment's rules if they are not served already.
pub(crate) async fn refresh(
    storage: &dyn BucketStorage,
    rules_tx: &watch::Sender<Option<ActiveRules>>,
) {
    let active = match storage.active_deployment().await {
        Ok(Some(active)) => active,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the active deployment");
            return;
        }
    };
    let serving = rules_tx.borrow().as_ref().map(|r| r.deployment);
    if serving == Some(active.id) {
        return;
    }
    match deployment_rules(&active) {
        Ok(rules) => {
            tracing::info!(
                deployment = active.id,
                "sync rules deployment active; clients switch at their next checkpoint"
            );
            rules_tx.send_replace(Some(ActiveRules {
                deployment: active.id,
                rules,
            }));
        }
        Err(e) => {
            tracing::warn!(deployment = active.id, error = %e, "the active deployment's rules do not parse here")
        }
    }
}
