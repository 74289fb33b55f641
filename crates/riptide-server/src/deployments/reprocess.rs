//! Reprocessing (`POST /api/admin/v1/reprocess`, `/api/sync-rules/v1/reprocess`): the serving
//! rules deployed again as a new deployment on a new slot, replicated from a fresh snapshot in
//! the background while the serving one keeps serving, then activated like any deploy.

use std::sync::Arc;

use riptide_rules::SyncRules;
use riptide_service::InstanceAdminError;
use riptide_storage::Deployment;

use super::{Deployments, deployment_rules};

impl Deployments {
    /// Starts a new deployment of the serving rules. Refused while a deploy is processing
    /// ([`InstanceAdminError::Busy`]) or when nothing serves
    /// ([`InstanceAdminError::NoActiveRules`]).
    pub async fn reprocess(self: &Arc<Self>) -> Result<Deployment, InstanceAdminError> {
        let mut slots = self.slots.lock().await;
        if slots.next.is_some() {
            return Err(InstanceAdminError::Busy);
        }
        let Some(serving) = &slots.serving else {
            return Err(InstanceAdminError::NoActiveRules);
        };
        let content = serving.deployment.content.clone();
        let rules = SyncRules::parse(&content).map_err(|e| {
            InstanceAdminError::Failed(format!("the serving rules no longer parse: {e}"))
        })?;
        self.replicator().check_source(&rules).await.map_err(|e| {
            InstanceAdminError::Failed(format!(
                "the source database is not ready for the serving rules: {e}"
            ))
        })?;
        let created = self
            .storage
            .create_deployment(&content, &self.options.replicator.slot_prefix)
            .await?;
        let rules = deployment_rules(&created)
            .map_err(|e| InstanceAdminError::Failed(format!("rules stopped parsing: {e}")))?;
        tracing::info!(deployment = created.id, slot = %created.slot_name, "reprocessing: the serving rules replicate again on a new slot; the current deployment serves until it is ready");
        slots.next = Some(self.run(created.clone(), rules));
        Ok(created)
    }
}
