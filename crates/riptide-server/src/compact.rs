//! `riptide compact --config FILE`: compacts the active deployment's buckets now, on the storage
//! the config names, with the library function the service's background compactor runs
//! (`riptide_storage::compact_deployment`). The CLI parses the flags and prints the report.

use std::time::{Duration, Instant};

/// What to compact and how ([`compact_now`]'s options), and what it did.
pub use riptide_storage::{CompactOptions, CompactStats};
use riptide_storage::{DeploymentId, StorageError, compact_deployment};

use crate::config::ServeConfig;
use crate::serve::{ServeError, connect_storage};

/// What a compaction pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactReport {
    /// The active deployment compacted; `None` when none is active (nothing was done).
    pub deployment: Option<DeploymentId>,
    pub done: CompactStats,
    pub elapsed: Duration,
}

/// Why a compaction pass could not run.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Storage(#[from] ServeError),
    #[error("compaction failed")]
    Compact(#[source] StorageError),
}

/// Connects to (and migrates) the storage `riptide serve` would use with `config`, then
/// compacts the active deployment's buckets `options` selects.
pub async fn compact_now(
    config: &ServeConfig,
    options: &CompactOptions,
) -> Result<CompactReport, CompactError> {
    let started = Instant::now();
    let storage = connect_storage(config).await?;
    let Some(deployment) = storage
        .active_deployment()
        .await
        .map_err(CompactError::Compact)?
    else {
        return Ok(CompactReport {
            deployment: None,
            done: CompactStats::default(),
            elapsed: started.elapsed(),
        });
    };
    let done = compact_deployment(storage.as_ref(), deployment.id, options)
        .await
        .map_err(CompactError::Compact)?;
    Ok(CompactReport {
        deployment: Some(deployment.id),
        done,
        elapsed: started.elapsed(),
    })
}
