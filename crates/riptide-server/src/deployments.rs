//! Sync-rules deployments of `riptide serve`, without downtime.
//!
//! At most two deployments run: the *serving* one (its rules are the service's
//! [`ActiveRules`]) and the *next* one, replicating its snapshot on its own slot in the
//! background. When the next one's replicator activates it (`storage.activate`, which marks the
//! serving one `Stop` atomically), the service's rules switch to it (open streams move at their
//! next checkpoint, dropping the old buckets and downloading the new), and the old deployment's
//! replicator is stopped, its slot dropped and its storage terminated. A deploy while another is
//! still processing replaces that one.
//!
//! Every deployment's bucket names carry its id (`<id>#definition[…]`), so the buckets of two
//! deployments are never confused: op ids of deployments replicating side by side interleave.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;
use riptide_replication::{ReplicationStatus, Replicator, ReplicatorOptions};
use riptide_rules::{RulesErrors, SyncRules};
use riptide_service::{ActiveRules, CurrentRules, RuleProblem, RulesAdmin, RulesAdminError};
use riptide_storage::{BucketStorage, CheckpointEvent, Deployment, DeploymentState};
use tokio::sync::{Mutex, broadcast, watch};
use tokio_util::sync::CancellationToken;

/// One deployment being replicated.
struct Running {
    deployment: Deployment,
    rules: Arc<SyncRules>,
    replicator: Arc<Replicator>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Slots {
    serving: Option<Running>,
    next: Option<Running>,
}

/// What the deployments need from `riptide serve`.
pub struct DeploymentOptions {
    /// The source database (also where rules are validated against its schema), the
    /// publication and the slot prefix.
    pub replicator: ReplicatorOptions,
    /// `sync_config` of the config file; `None`: rules come from the admin API.
    pub config_rules: Option<String>,
}

/// The deployments of this process. Cheap to share (`Arc`).
pub struct Deployments {
    storage: Arc<dyn BucketStorage>,
    options: DeploymentOptions,
    events: broadcast::Sender<CheckpointEvent>,
    /// Feeds the service; kept alive as long as this (a closed channel ends every stream).
    rules_tx: watch::Sender<Option<ActiveRules>>,
    cancel: CancellationToken,
    /// Held across a whole deploy or switch, so they never interleave.
    slots: Mutex<Slots>,
    /// Counters of the serving deployment's replicator (or the next one's before any serves).
    status: StdMutex<Arc<ReplicationStatus>>,
}

/// The bucket-prefixed rules of a stored deployment.
pub fn deployment_rules(d: &Deployment) -> Result<Arc<SyncRules>, RulesErrors> {
    Ok(Arc::new(
        SyncRules::parse(&d.content)?.with_bucket_prefix(format!("{}#", d.id)),
    ))
}

impl Deployments {
    /// Picks up the stored deployments and the config's rules and starts replicating:
    /// the active deployment keeps serving; rules that differ from it replicate as the next
    /// deployment. Returns the receiver the service reads its rules from.
    pub async fn start(
        storage: Arc<dyn BucketStorage>,
        options: DeploymentOptions,
        events: broadcast::Sender<CheckpointEvent>,
        cancel: CancellationToken,
    ) -> Result<(Arc<Deployments>, watch::Receiver<Option<ActiveRules>>)> {
        let (rules_tx, rules_rx) = watch::channel::<Option<ActiveRules>>(None);
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
            match deployment_rules(&active) {
                Ok(rules) => {
                    this.rules_tx.send_replace(Some(ActiveRules {
                        deployment: active.id,
                        rules: rules.clone(),
                    }));
                    let running = this.run(active, rules);
                    this.set_status(&running);
                    slots.serving = Some(running);
                }
                Err(e) => {
                    tracing::warn!(deployment = active.id, error = %e, "the active deployment's rules no longer parse; replacing it");
                    this.retire(&active).await;
                }
            }
        }
        let serving_content = slots.serving.as_ref().map(|r| r.deployment.content.clone());
        let wanted = this.options.config_rules.clone();
        let mut next = processing;
        if let (Some(wanted), Some(p)) = (&wanted, &next)
            && &p.content != wanted
        {
            tracing::info!(
                deployment = p.id,
                "sync rules changed again; dropping the deployment still processing"
            );
            this.retire(p).await;
            next = None;
        }
        if let Some(wanted) = &wanted
            && serving_content.as_deref() != Some(wanted.as_str())
            && next.is_none()
        {
            let rules = SyncRules::parse(wanted).map_err(|e| anyhow::anyhow!("{e}"))?;
            this.replicator()
                .check_source(&rules)
                .await
                .context("the source database is not ready for replication")?;
            let created = storage
                .create_deployment(wanted, &this.options.replicator.slot_prefix)
                .await?;
            tracing::info!(deployment = created.id, slot = %created.slot_name, "new sync rules deployment; the current one serves until it is ready");
            next = Some(created);
        } else if let Some(wanted) = &wanted
            && serving_content.as_deref() == Some(wanted.as_str())
            && let Some(p) = next.take()
        {
            this.retire(&p).await;
        }
        if let Some(p) = next {
            match deployment_rules(&p) {
                Ok(rules) => {
                    let running = this.run(p, rules);
                    if slots.serving.is_none() {
                        this.set_status(&running);
                    }
                    slots.next = Some(running);
                }
                Err(e) => {
                    tracing::warn!(deployment = p.id, error = %e, "a processing deployment's rules no longer parse; dropping it");
                    this.retire(&p).await;
                }
            }
        }
        if slots.serving.is_none() && slots.next.is_none() {
            tracing::info!(
                "no sync rules deployed yet: deploy them with POST /api/sync-rules/v1/deploy"
            );
        }
        drop(slots);
        Ok((this, rules_rx))
    }

    /// A replicator with this process's options (one per deployment: its own counters).
    fn replicator(&self) -> Replicator {
        Replicator::new(
            self.options.replicator.clone(),
            self.storage.clone(),
            self.events.clone(),
        )
    }

    /// The counters `/metrics` and the dashboard show.
    pub fn status(&self) -> Arc<ReplicationStatus> {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_status(&self, running: &Running) {
        let status = running.replicator.status();
        match self.status.lock() {
            Ok(mut s) => *s = status,
            Err(poisoned) => *poisoned.into_inner() = status,
        }
    }

    /// Starts replicating `d` (restarting after errors); a deployment that is not active yet is
    /// watched and switched to once its replicator activates it.
    fn run(self: &Arc<Self>, d: Deployment, rules: Arc<SyncRules>) -> Running {
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
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
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
    fn switch_to(&self, slots: &mut Slots, next: Running) -> Option<Running> {
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

    async fn stop_and_retire(&self, r: Running) {
        r.cancel.cancel();
        let _ = r.task.await;
        self.retire(&r.deployment).await;
    }

    /// Drops a deployment's slot and terminates its storage (errors are logged: a leftover
    /// slot is dropped again at the next start-up only if still recorded, so say so loudly).
    async fn retire(&self, d: &Deployment) {
        if let Err(e) = self.replicator().drop_slot(&d.slot_name).await {
            tracing::error!(deployment = d.id, slot = %d.slot_name, error = %e, "cannot drop the replaced deployment's replication slot; drop it by hand: SELECT pg_drop_replication_slot('{}')", d.slot_name);
        }
        if let Err(e) = self.storage.terminate(d.id).await {
            tracing::error!(deployment = d.id, error = %e, "cannot terminate the replaced deployment");
        } else {
            tracing::info!(deployment = d.id, slot = %d.slot_name, "replaced sync rules deployment removed");
        }
    }

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
            next.cancel.cancel();
            let _ = next.task.await;
            let d = self.storage.deployment(next.deployment.id).await?;
            if d.state == DeploymentState::Active {
                // It activated just before it was stopped: it serves now; resume it.
                let rules = next.rules.clone();
                let resumed = self.run(d, rules);
                if let Some(old) = self.switch_to(&mut slots, resumed) {
                    self.stop_and_retire(old).await;
                }
            } else {
                tracing::info!(
                    deployment = d.id,
                    "a newer deploy replaces the deployment still processing"
                );
                self.retire(&d).await;
            }
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

    /// Every problem of `content`: syntax (located), then tables and columns against the source
    /// database.
    pub async fn validate(&self, content: &str) -> Result<Vec<RuleProblem>, RulesAdminError> {
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
        let problems = crate::schema_check::schema_problems(
            &rules,
            &self.options.replicator.source,
            &self.options.replicator.publication,
        )
        .await
        .map_err(|e| RulesAdminError::Failed(format!("cannot check the rules: {e:#}")))?;
        Ok(problems
            .into_iter()
            .map(|p| RuleProblem::located(p.message, p.line, p.column))
            .collect())
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

/// The admin API's hook.
pub struct Admin(pub Arc<Deployments>);

#[async_trait]
impl RulesAdmin for Admin {
    fn managed_by_config(&self) -> bool {
        self.0.options.config_rules.is_some()
    }

    async fn validate(&self, content: &str) -> Result<Vec<RuleProblem>, RulesAdminError> {
        self.0.validate(content).await
    }

    async fn deploy(&self, content: &str) -> Result<Deployment, RulesAdminError> {
        if self.managed_by_config() {
            return Err(RulesAdminError::ManagedByConfig);
        }
        self.0.deploy(content).await
    }

    async fn current(&self) -> Result<CurrentRules, RulesAdminError> {
        self.0.current().await
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
    let mut backoff = Duration::from_millis(500);
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
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
