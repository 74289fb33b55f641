//! The background compactor: every [`CompactorConfig::interval`] it compacts the buckets of the
//! active deployment that have had at least [`CompactorConfig::threshold`] ops superseded since
//! their last compaction (storage counts them as it writes), so a churning bucket is compacted
//! within about one interval. Compaction runs a bucket at a time in short storage transactions
//! and leaves a bucket an open replication transaction is writing for the next round
//! (`riptide_storage::compaction`), so it never holds up replication or streams.
//!
//! [`compact_active`] is one run, shared with `POST /api/compact/v1/run` (the admin API) and
//! recorded in the compaction metrics either way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use riptide_storage::{
    BucketStorage, CompactLimits, CompactOptions, CompactStats, DeploymentId, StorageError,
    compact_deployment,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::ServiceMetrics;
use crate::state::AppState;

/// Settings of the background compactor (config file section `compaction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactorConfig {
    /// Compact automatically. Default on.
    pub enabled: bool,
    /// Superseded ops since its last compaction at which a bucket is compacted. Default 1,000.
    pub threshold: i64,
    /// How often the active deployment is checked for such buckets. Default 30 s, so a bucket
    /// past the threshold is compacted within about a minute even after a long round.
    pub interval: Duration,
    pub limits: CompactLimits,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        CompactorConfig {
            enabled: true,
            threshold: 1_000,
            interval: Duration::from_secs(30),
            limits: CompactLimits::default(),
        }
    }
}

/// Compacts the active deployment's buckets that `options` selects and records the run in the
/// compaction metrics. `None` when no deployment is active.
pub async fn compact_active(
    storage: &dyn BucketStorage,
    metrics: &ServiceMetrics,
    options: &CompactOptions,
) -> Result<Option<(DeploymentId, CompactStats)>, StorageError> {
    let Some(deployment) = storage.active_deployment().await? else {
        return Ok(None);
    };
    let started = Instant::now();
    let result = compact_deployment(storage, deployment.id, options).await;
    let elapsed = started.elapsed();
    match &result {
        Ok(done) => {
            metrics.compaction_run(done, elapsed, false);
            if done.buckets > 0 || done.buckets_busy > 0 {
                tracing::info!(
                    deployment = deployment.id,
                    buckets = done.buckets,
                    ops_moved = done.ops_moved,
                    ops_removed = done.ops_removed,
                    bytes_reclaimed = done.bytes_reclaimed,
                    buckets_busy = done.buckets_busy,
                    ms = elapsed.as_millis() as u64,
                    "compacted buckets"
                );
            }
        }
        Err(_) => metrics.compaction_run(&CompactStats::default(), elapsed, true),
    }
    result.map(|done| Some((deployment.id, done)))
}

/// Runs rounds every `config.interval` until `cancel` fires (the first one after one interval).
/// Does nothing when the compactor is disabled. A failed round is logged and the next one
/// runs as planned.
pub async fn run(
    storage: Arc<dyn BucketStorage>,
    metrics: Arc<ServiceMetrics>,
    config: CompactorConfig,
    cancel: CancellationToken,
) {
    if !config.enabled {
        tracing::info!("automatic compaction is off");
        return;
    }
    let options = CompactOptions {
        min_superseded: config.threshold.max(1),
        buckets: Vec::new(),
        limits: config.limits,
    };
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + config.interval,
        config.interval.max(Duration::from_millis(1)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Dropping a run between its storage calls is safe: each transaction commits or rolls
        // back on its own.
        tokio::select! {
            () = cancel.cancelled() => return,
            result = compact_active(storage.as_ref(), &metrics, &options) => {
                if let Err(e) = result {
                    tracing::warn!(error = %crate::error::error_chain(&e), "compaction round failed");
                }
            }
        }
    }
}

/// Starts [`run`] on the state's storage and metrics.
pub fn spawn(
    state: &AppState,
    config: CompactorConfig,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(run(
        state.inner.storage.clone(),
        state.metrics().clone(),
        config,
        cancel,
    ))
}
