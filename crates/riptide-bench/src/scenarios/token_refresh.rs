//! A token that expires while writes stream in (`e2e/bench/token-refresh.mjs`): one
//! `@powersync/node` client whose first token lives 5 s from the connect, a writer committing a row every
//! 20 ms for 10 s; each row's latency from its commit to the client's SQLite. The longest
//! latency against the median shows what the expiry cost (the SDK's default retry delay, 5 s,
//! if the stream ran into the expiry; one stream restart if the SDK renewed the token first).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::Bench;
use crate::databases::source_url;
use crate::report::Table;
use crate::steps::percentile;

pub async fn run(bench: &Bench<'_>) -> Result<Table> {
    let script = PathBuf::from("e2e/bench/token-refresh.mjs");
    if !script.is_file() || !PathBuf::from("e2e/node_modules/@powersync/node").is_dir() {
        bail!("e2e packages not installed (cd e2e && npm ci)");
    }
    let mut rows = Vec::new();
    let mut metrics = serde_json::Map::new();
    for method in ["http", "web-socket"] {
        let topic = format!("token-refresh-{method}");
        let out = tokio::process::Command::new("node")
            .arg(&script)
            .env("ENDPOINT", &bench.endpoint)
            .env("SIGNING_KEY", bench.keys.private_key_base64())
            .env("KID", &bench.keys.kid)
            .env("AUDIENCE", &bench.keys.audience)
            .env("TOPIC", &topic)
            .env("SOURCE_URL", source_url(bench.databases.pg_port))
            .env("CONNECTION_METHOD", method)
            .kill_on_drop(true)
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "node token-refresh.mjs ({method}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v = super::json_line(&out.stdout, "token-refresh.mjs")?;
        let ms: Vec<f64> = v["latencies_ms"]
            .as_array()
            .context("latencies_ms")?
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect();
        let writes = v["writes"].as_u64().unwrap_or(0);
        let fetches = v["token_fetches_ms"].clone();
        rows.push(vec![
            method.to_owned(),
            format!("{} / {writes}", ms.len()),
            format!("{:.1}", percentile(&ms, 50.0)),
            format!("{:.1}", percentile(&ms, 100.0)),
            fetches.to_string(),
        ]);
        metrics.insert(
            method.to_owned(),
            json!({"writes": writes, "delivered": ms.len(), "p50_ms": percentile(&ms, 50.0),
                   "max_ms": percentile(&ms, 100.0), "token_fetches_ms": fetches}),
        );
    }
    Ok(Table {
        title: "Token expiry while writes stream in: @powersync/node, first token 5 s, a write \
                every 20 ms for 10 s (ms from commit to the client's SQLite)"
            .into(),
        columns: vec![
            "transport",
            "delivered",
            "p50",
            "max",
            "token fetches (ms after connect)",
        ],
        rows,
        metrics: serde_json::Value::Object(metrics),
    })
}
