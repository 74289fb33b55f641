//! `riptide compact --config FILE`: one compaction pass through
//! `riptide_server::compact::compact_now`, printed. By default it takes every bucket with an op
//! superseded since its last compaction; `--all` takes every bucket, `--bucket` only those named.

use std::path::Path;

use anyhow::Result;
use riptide_server::compact::{CompactOptions, compact_now};
use riptide_server::config::ServeConfig;

/// Runs `riptide compact` and prints what it did (as JSON with `json`).
pub async fn main(config: &Path, buckets: Vec<String>, all: bool, json: bool) -> Result<()> {
    let config = ServeConfig::load(config)?;
    riptide_server::logging::init(&config.logging);
    let options = CompactOptions {
        min_superseded: if all { 0 } else { 1 },
        buckets,
        ..CompactOptions::default()
    };
    let report = compact_now(&config, &options).await?;
    let Some(deployment) = report.deployment else {
        println!("no active sync rules deployment: nothing to compact");
        return Ok(());
    };
    let done = report.done;
    let ms = report.elapsed.as_millis();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "deployment": deployment,
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
            "deployment {deployment}: {} buckets compacted, {} ops moved, {} ops removed, {} \
             bytes reclaimed, {} buckets busy (left for later), {ms} ms",
            done.buckets, done.ops_moved, done.ops_removed, done.bytes_reclaimed, done.buckets_busy
        );
    }
    Ok(())
}
