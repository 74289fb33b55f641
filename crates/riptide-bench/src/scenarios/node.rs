//! `@powersync/node` first sync of the bulk-insert rows into a fresh database, over both of the
//! official client's transports (`e2e/bench/first-sync.mjs`; skipped when `e2e/` has no
//! packages installed).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::Bench;
use crate::report::Row;

pub async fn run(bench: &Bench<'_>) -> Vec<Row> {
    let token = bench.token("none");
    let mut rows = Vec::new();
    for method in ["http", "web-socket"] {
        match first_sync(&bench.endpoint, &token, method).await {
            Ok((n, secs)) => rows.push(Row {
                scenario: format!("@powersync/node first sync (fresh database), {method}"),
                amount: format!("{n} rows"),
                seconds: secs,
                rate: format!("{:.0} rows/s", n as f64 / secs),
                note: "includes the client's SQLite apply".into(),
            }),
            Err(e) => eprintln!("skipping @powersync/node scenario ({method}): {e:#}"),
        }
    }
    rows
}

/// Rows synced and seconds taken, as the script reports them.
async fn first_sync(endpoint: &str, token: &str, method: &str) -> Result<(u64, f64)> {
    let script = PathBuf::from("e2e/bench/first-sync.mjs");
    if !script.is_file() || !PathBuf::from("e2e/node_modules/@powersync/node").is_dir() {
        bail!("e2e packages not installed (cd e2e && npm ci)");
    }
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .env("ENDPOINT", endpoint)
        .env("TOKEN", token)
        .env("CONNECTION_METHOD", method)
        .output()
        .await?;
    if !out.status.success() {
        bail!("node: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("node script prints JSON")?;
    Ok((
        v["rows"].as_u64().unwrap_or(0),
        v["seconds"].as_f64().unwrap_or(0.0),
    ))
}
