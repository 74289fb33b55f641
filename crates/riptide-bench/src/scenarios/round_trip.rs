//! A `@powersync/node` client's own write → the server's version back in its local SQLite
//! (`e2e/bench/round-trip.mjs`), over HTTP and over WebSocket: the local insert, the upload
//! handler called and done, and the row as the server wrote it applied from the sync stream
//! (after the checkpoint carrying the upload's write checkpoint). Writes one at a time.
//!
//! The source commits as a production database does: the upload commits with
//! `synchronous_commit = on` and the cluster runs with Postgres's default `wal_writer_delay`
//! (200 ms) for the scenario's duration, as the platform's local cluster does (the bench
//! cluster's own 10 ms would hide WAL that waits for the WAL writer).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::Bench;
use crate::databases::source_url;
use crate::report::Table;
use crate::steps::{self, Step};

/// The script's keys and what they time.
const STEPS: [(&str, &str); 4] = [
    ("local", "local insert returned"),
    ("upload_start", "upload handler called"),
    ("upload_done", "upload committed"),
    ("back", "server's version in SQLite"),
];

pub async fn run(bench: &Bench<'_>) -> Result<Table> {
    let writes = if bench.args.short { 5 } else { 50 };
    bench.databases.commit_durably().await?;
    let mut rows = Vec::new();
    let mut metrics = serde_json::Map::new();
    let mut result = Ok(());
    for method in ["http", "web-socket"] {
        match round_trip(bench, method, writes).await {
            Ok(steps) => {
                for step in &steps {
                    rows.push(vec![
                        method.to_owned(),
                        step.label.clone(),
                        step.ms.len().to_string(),
                        format!("{:.1}", step.percentile(50.0)),
                        format!("{:.1}", step.percentile(95.0)),
                        format!("{:.1}", step.percentile(100.0)),
                    ]);
                }
                metrics.insert(
                    method.to_owned(),
                    Value::Array(steps.iter().map(Step::json).collect()),
                );
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    bench.databases.reset_commits().await?;
    result?;
    Ok(Table {
        title: format!(
            "@powersync/node: own write → server's version back in local SQLite ({writes} writes \
             one at a time per transport; ms from the local insert)"
        ),
        columns: vec!["transport", "step", "writes", "p50", "p95", "max"],
        rows,
        metrics: json!({ "writes": writes, "steps": metrics }),
    })
}

async fn round_trip(bench: &Bench<'_>, method: &str, writes: usize) -> Result<Vec<Step>> {
    let script = PathBuf::from("e2e/bench/round-trip.mjs");
    if !script.is_file() || !PathBuf::from("e2e/node_modules/@powersync/node").is_dir() {
        bail!("e2e packages not installed (cd e2e && npm ci)");
    }
    let topic = format!("roundtrip-{method}");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .env("ENDPOINT", &bench.endpoint)
        .env("TOKEN", bench.token(&topic))
        .env("TOPIC", &topic)
        .env("SOURCE_URL", source_url(bench.databases.pg_port))
        .env("CONNECTION_METHOD", method)
        .env("COUNT", writes.to_string())
        .kill_on_drop(true)
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "node round-trip.mjs ({method}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v = super::json_line(&out.stdout, "round-trip.mjs")?;
    let samples = v["samples"].as_array().context("samples")?;
    Ok(steps::collect(samples, &STEPS))
}
