//! `riptide compact --config FILE`: compacts the active deployment's buckets now, on the storage
//! the config names, with the same library function the service's background compactor runs
//! (`riptide_storage::compact_deployment`). By default it takes every bucket with an op
//! superseded since its last compaction; `--all` takes every bucket, `--bucket` only those named.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use riptide_storage::{BucketStorage, CompactOptions, PgStorage, compact_deployment};

use crate::config::ServeConfig;

/// Runs `riptide compact` and prints what it did (as JSON with `json`).
pub async fn main(config: &Path, buckets: Vec<String>, all: bool, json: bool) -> Result<()> {
    let config = ServeConfig::load(config)?;
    crate::logging::init(&config.logging);
    let started = Instant::now();
    let storage = connect(&config).await?;
    let Some(deployment) = storage.active_deployment().await? else {
        println!("no active sync rules deployment: nothing to compact");
        return Ok(());
    };
    let options = CompactOptions {
        min_superseded: if all { 0 } else { 1 },
        buckets,
        ..CompactOptions::default()
    };
    let done = compact_deployment(&storage, deployment.id, &options)
        .await
        .context("compaction failed")?;
    let ms = started.elapsed().as_millis();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "deployment": deployment.id,
                "buckets": done.buckets,
                "ops_moved": done.ops_moved,
                "ops_removed": done.ops_removed,
                "bytes_reclaimed": done.bytes_reclaimed,
                "buckets_busy": done.buckets_busy,
                "ms": ms,
            })
        );
    } else {
        println!(
            "deployment {}: {} buckets compacted, {} ops moved, {} ops removed, {} bytes \
             reclaimed, {} buckets busy (left for later), {ms} ms",
            deployment.id,
            done.buckets,
            done.ops_moved,
            done.ops_removed,
            done.bytes_reclaimed,
            done.buckets_busy
        );
    }
    Ok(())
}

/// The storage `riptide serve` would use with this config, migrated.
async fn connect(config: &ServeConfig) -> Result<PgStorage> {
    let uri = match &config.storage_uri {
        Some(uri) => uri.clone(),
        None => {
            let source: tokio_postgres::Config = config
                .source_uri
                .parse()
                .context("invalid source connection string")?;
            crate::serve::ensure_default_storage_database(&source).await?
        }
    };
    let storage = PgStorage::connect(&uri)
        .await
        .context("cannot connect to the storage database")?;
    storage
        .migrate()
        .await
        .context("cannot migrate the storage schema")?;
    Ok(storage)
}
