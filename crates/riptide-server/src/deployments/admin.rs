//! The admin API's side of the deployments: deploy (replacing whatever is still processing),
//! validate against the source schema, and the current state.

use std::error::Error;
use std::sync::Arc;

use async_trait::async_trait;
use riptide_replication::ReplicationSource;
use riptide_rules::SyncRules;
use riptide_service::{CurrentRules, RuleProblem, RulesAdmin, RulesAdminError};
use riptide_storage::{BucketStorage, Deployment, DeploymentState};

use super::{DeploymentOptions, Deployments, Running, Slots, deployment_rules};
use crate::roles::Node;
use crate::schema_check;

impl Deployments {
    /// Deploys `content` (already validated): see [`RulesAdmin::deploy`].
    pub async fn deploy(self: &Arc<Self>, content: &str) -> Result<Deployment, RulesAdminError> {
        let mut slots = self.slots.lock().await;
        if let Some(next) = &slots.next
            && next.deployment.content == content
        {
            return Ok(self.storage.deployment(next.deployment.id).await?);
        }
        let rules = SyncRules::parse(content).map_err(|e| {
            RulesAdminError::Invalid(
                e.0.iter()
                    .map(|e| RuleProblem::located(e.message.clone(), e.line, e.column))
                    .collect(),
            )
        })?;
        // Whatever is processing is replaced.
        if let Some(next) = slots.next.take() {
            self.replace_processing(&mut slots, next).await?;
        }
        if let Some(serving) = &slots.serving
            && serving.deployment.content == content
        {
            return Ok(self.storage.deployment(serving.deployment.id).await?);
        }
        if let Err(e) = self.replicator().check_source(&rules).await {
            return Err(RulesAdminError::Invalid(vec![RuleProblem::unlocated(
                format!("the source database is not ready for these rules: {e}"),
            )]));
        }
        let created = self
            .storage
            .create_deployment(content, &self.options.replicator.slot_prefix)
            .await?;
        let rules = deployment_rules(&created)
            .map_err(|e| RulesAdminError::Failed(format!("rules stopped parsing: {e}")))?;
        tracing::info!(deployment = created.id, slot = %created.slot_name, "new sync rules deployment; the current one serves until it is ready");
        let running = self.run(created.clone(), rules);
        if slots.serving.is_none() {
            self.set_status(&running);
        }
        slots.next = Some(running);
        Ok(created)
    }

    /// Stops the deployment still processing. If it activated just before it stopped, it
    /// serves now and resumes; otherwise it is retired.
    async fn replace_processing(
        self: &Arc<Self>,
        slots: &mut Slots,
        next: Running,
    ) -> Result<(), RulesAdminError> {
        next.cancel.cancel();
        let _ = next.task.await;
        let d = self.storage.deployment(next.deployment.id).await?;
        if d.state == DeploymentState::Active {
            let resumed = self.run(d, next.rules.clone());
            if let Some(old) = self.switch_to(slots, resumed) {
                self.stop_and_retire(old).await;
            }
        } else {
            tracing::info!(
                deployment = d.id,
                "a newer deploy replaces the deployment still processing"
            );
            self.retire(&d).await;
        }
        Ok(())
    }

    /// Every problem of `content` (see [`validate`]).
    pub async fn validate(&self, content: &str) -> Result<Vec<RuleProblem>, RulesAdminError> {
        validate(&self.options.replicator, content).await
    }

    /// The serving and the next deployment, as stored now.
    pub async fn current(&self) -> Result<CurrentRules, RulesAdminError> {
        let slots = self.slots.lock().await;
        let mut out = CurrentRules::default();
        if let Some(s) = &slots.serving {
            out.current = Some(self.storage.deployment(s.deployment.id).await?);
        }
        if let Some(n) = &slots.next {
            out.next = Some(self.storage.deployment(n.deployment.id).await?);
        }
        Ok(out)
    }
}

/// Every problem of `content`: syntax (located), then tables and columns against the source
/// database.
pub async fn validate(
    replicator: &ReplicationSource,
    content: &str,
) -> Result<Vec<RuleProblem>, RulesAdminError> {
    let rules = match SyncRules::parse(content) {
        Ok(r) => r,
        Err(errors) => {
            return Ok(errors
                .0
                .into_iter()
                .map(|e| RuleProblem::located(e.message, e.line, e.column))
                .collect());
        }
    };
    let problems =
        schema_check::schema_problems(&rules, &replicator.connection, &replicator.publication)
            .await
            .map_err(|e| {
                RulesAdminError::Failed(format!("cannot check the rules: {}", chain(&e)))
            })?;
    Ok(problems
        .into_iter()
        .map(|p| RuleProblem::located(p.message, p.line, p.column))
        .collect())
}

/// An error and its causes, `: `-separated (what the admin API's log and body carry).
fn chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// The admin API's hook. Deploys go to this process's deployments while it holds the
/// replication lease; elsewhere they are refused (send them to the holder: `riptide status`
/// names it) and the current state is read from storage.
pub struct Admin {
    pub node: Arc<Node>,
    /// Unfenced: reads only.
    pub storage: Arc<dyn BucketStorage>,
    pub options: DeploymentOptions,
}

/// Why a process that does not hold the lease refuses a deploy.
pub(crate) const NOT_THE_HOLDER: &str = "this process does not hold the replication lease: \
     send deploys, reprocessing and compaction runs to the process that does (see `riptide status`)";

impl Admin {
    /// The serving and the next deployment: the holder's view, or storage's elsewhere.
    pub async fn current_rules(&self) -> Result<CurrentRules, RulesAdminError> {
        if let Some(d) = self.node.deployments() {
            return d.current().await;
        }
        Ok(CurrentRules {
            current: self.storage.active_deployment().await?,
            next: self.storage.processing_deployment().await?,
        })
    }
}

#[async_trait]
impl RulesAdmin for Admin {
    fn managed_by_config(&self) -> bool {
        self.options.config_rules.is_some()
    }

    async fn validate(&self, content: &str) -> Result<Vec<RuleProblem>, RulesAdminError> {
        validate(&self.options.replicator, content).await
    }

    async fn deploy(&self, content: &str) -> Result<Deployment, RulesAdminError> {
        if self.managed_by_config() {
            return Err(RulesAdminError::ManagedByConfig);
        }
        match self.node.deployments() {
            Some(d) => d.deploy(content).await,
            None => Err(RulesAdminError::NotHolder(NOT_THE_HOLDER)),
        }
    }

    async fn current(&self) -> Result<CurrentRules, RulesAdminError> {
        self.current_rules().await
    }
}
