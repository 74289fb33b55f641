//! The lease keeper: a standby polls `riptide.leases` every renewal interval and takes the
//! lease once its holder's heartbeat is older than the lease duration (`PgStorage::
//! acquire_lease`, one statement on the database clock); the holder starts the deployments and
//! the compactor on a storage fenced at its epoch and renews every interval. It steps down —
//! stops every replicator and the compactor, and becomes a standby again — when a renewal finds
//! the lease taken over, when storage stayed unreachable for a whole lease duration (another
//! process may hold it by then), or when fencing refused one of its writes
//! (`StorageError::LeaseLost`, reported by a replicator through `DeploymentOptions::
//! lease_lost`). On shutdown it stops the replicators first, then releases the lease so a
//! standby takes over at once.

use std::sync::Arc;
use std::time::Instant;

use riptide_service::{ActiveRules, CompactorConfig, ServiceMetrics};
use riptide_storage::{CheckpointEvent, Fence, PgStorage};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::{LeaseConfig, Node, REPLICATION_LEASE};
use crate::deployments::{DeploymentError, DeploymentOptions, Deployments};

/// Everything a lease holder starts, and where it reports.
pub struct LeaseKeeper {
    pub node: Arc<Node>,
    /// The storage, unfenced (the keeper fences a copy per epoch).
    pub storage: PgStorage,
    pub lease: LeaseConfig,
    pub deployments: DeploymentOptions,
    pub events: broadcast::Sender<CheckpointEvent>,
    pub rules_tx: watch::Sender<Option<ActiveRules>>,
    pub compaction: CompactorConfig,
    pub metrics: Arc<ServiceMetrics>,
}

/// What a holder runs: its deployments and compactor, stopped by `cancel`; `lost` fires when a
/// write was refused by fencing.
pub struct Leadership {
    fence: Fence,
    deployments: Arc<Deployments>,
    cancel: CancellationToken,
    lost: CancellationToken,
}

/// Why the holder stopped holding.
enum StepDown {
    Shutdown,
    Lost,
}

impl LeaseKeeper {
    /// Tries once to take the lease and start leading (start-up: errors of the deployments'
    /// start, such as rules the source is not ready for, are the caller's). `None`: another
    /// process holds it (or storage could not be asked): a standby.
    pub async fn try_lead(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Option<Leadership>, DeploymentError> {
        let holder = &self.node.id;
        let epoch = match self.acquire().await {
            Ok(Some(epoch)) => epoch,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the replication lease; standing by");
                return Ok(None);
            }
        };
        let fence = Fence {
            lease: REPLICATION_LEASE.into(),
            epoch,
            duration: self.lease.duration,
        };
        tracing::info!(
            node = %holder,
            epoch,
            "took the replication lease; replicating"
        );
        match self.lead(fence.clone(), cancel).await {
            Ok(leadership) => Ok(Some(leadership)),
            Err(e) => {
                if let Err(release) = self.storage.release_lease(&fence, holder).await {
                    tracing::warn!(error = %release, "cannot release the replication lease");
                }
                Err(e)
            }
        }
    }

    /// Takes the lease if it expired, or if its holder was a process of this machine that is
    /// gone (a restart after a crash need not wait for the lease to expire).
    async fn acquire(&self) -> Result<Option<i64>, riptide_storage::StorageError> {
        let holder = &self.node.id;
        let storage = &self.storage;
        if let Some(epoch) = storage
            .acquire_lease(REPLICATION_LEASE, holder, self.lease.duration)
            .await?
        {
            return Ok(Some(epoch));
        }
        match storage.lease(REPLICATION_LEASE).await? {
            Some(l) if super::nodes::gone_from_this_host(&l.holder) => {
                tracing::info!(previous = %l.holder, "the lease holder was a process of this machine that is gone; taking the lease now");
                storage
                    .take_lease_from(REPLICATION_LEASE, holder, l.epoch)
                    .await
            }
            _ => Ok(None),
        }
    }

    /// Starts the deployments and the compactor on a storage fenced at `fence`.
    async fn lead(
        &self,
        fence: Fence,
        cancel: &CancellationToken,
    ) -> Result<Leadership, DeploymentError> {
        let leader_cancel = cancel.child_token();
        let lost = CancellationToken::new();
        let fenced = Arc::new(self.storage.fenced(fence.clone()));
        let mut options = self.deployments.clone();
        options.lease_lost = Some(lost.clone());
        let deployments = Deployments::start(
            fenced.clone(),
            options,
            self.events.clone(),
            self.rules_tx.clone(),
            leader_cancel.clone(),
        )
        .await?;
        tokio::spawn(riptide_service::compactor::run(
            fenced,
            self.metrics.clone(),
            self.compaction,
            leader_cancel.clone(),
        ));
        self.node
            .set_leading(Some((deployments.clone(), fence.epoch)));
        self.node
            .takeovers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Leadership {
            fence,
            deployments,
            cancel: leader_cancel,
            lost,
        })
    }

    /// Holds `first` (if any) and then competes for the lease until `cancel` fires.
    pub async fn run(self, first: Option<Leadership>, cancel: CancellationToken) {
        let mut leading = first;
        loop {
            if let Some(leadership) = leading.take()
                && let StepDown::Shutdown = self.hold(leadership, &cancel).await
            {
                return;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.lease.renew) => {}
            }
            match self.try_lead(&cancel).await {
                Ok(l) => leading = l,
                Err(e) => {
                    tracing::error!(error = %e, "took the replication lease but cannot start replicating; released it");
                }
            }
        }
    }

    /// Renews the lease every interval until it is lost or `cancel` fires, then stops
    /// everything the holder runs.
    async fn hold(&self, l: Leadership, cancel: &CancellationToken) -> StepDown {
        let holder = &self.node.id;
        let mut renewed = Instant::now();
        let why = loop {
            tokio::select! {
                () = cancel.cancelled() => break StepDown::Shutdown,
                () = l.lost.cancelled() => {
                    tracing::error!(epoch = l.fence.epoch, "a write was refused: another process holds the replication lease; standing by");
                    break StepDown::Lost;
                }
                () = tokio::time::sleep(self.lease.renew) => {}
            }
            match self.storage.renew_lease(&l.fence, holder).await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => {
                    tracing::error!(
                        epoch = l.fence.epoch,
                        "the replication lease was taken over; standing by"
                    );
                    break StepDown::Lost;
                }
                Err(e) if renewed.elapsed() >= self.lease.duration => {
                    tracing::error!(error = %e, epoch = l.fence.epoch, "cannot renew the replication lease for a whole lease duration; standing by");
                    break StepDown::Lost;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the replication lease; retrying");
                }
            }
        };
        self.node.set_leading(None);
        l.cancel.cancel();
        l.deployments.shutdown().await;
        match why {
            StepDown::Shutdown => match self.storage.release_lease(&l.fence, holder).await {
                Ok(_) => tracing::info!("replication lease released"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot release the replication lease; a standby takes it when it expires")
                }
            },
            StepDown::Lost => {
                self.node
                    .losses
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        why
    }
}
