//! Write → row visible in the local SQLite of `@powersync/node` clients (node processes running
//! `e2e/bench/live-latency.mjs`), per delivery.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use super::Bench;
use crate::live;
use crate::report::Table;
use crate::usage::usage;

/// One node process: the child, its pid and its stdout's lines.
type NodeProcess = (Child, u32, Lines<BufReader<ChildStdout>>);

pub async fn run(bench: &Bench<'_>) -> Result<(Table, Histogram<u64>)> {
    let args = bench.args;
    let clients = args.node_clients.max(1);
    let rate = args.node_rate.max(1);
    let writes = (rate * args.node_secs.max(1)) as usize;
    // Clients spread over processes (one JavaScript thread each).
    let procs = args.node_procs.clamp(1, clients);
    let token = bench.token("nodelat");
    let mut children = spawn_clients(bench, &token, (clients, procs), writes)?;
    for (_, _, lines) in &mut children {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
                .await
                .context("node clients not synced after 120 s")??;
            match line.as_deref() {
                Some("ready") => break,
                Some(_) => {}
                None => bail!("node exited before its clients synced"),
            }
        }
    }
    let cpu = |children: &Vec<NodeProcess>| -> f64 {
        children.iter().map(|(_, pid, _)| usage(*pid).cpu_s).sum()
    };
    let before = cpu(&children);
    let wrote = live::write_events(
        &bench.databases.writer,
        "nodelat",
        writes,
        Duration::from_secs(1) / rate,
    )
    .await?;
    let mut results = Vec::with_capacity(procs);
    for (_, _, lines) in &mut children {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with('{') {
                results.push(line);
                break;
            }
        }
    }
    let after = cpu(&children);
    for (child, _, _) in &mut children {
        child.wait().await?;
    }
    let mut h = live::histogram();
    let mut delivered = 0usize;
    for result in &results {
        let v: Value = serde_json::from_str(result)?;
        for lat in v["latencies_us"].as_array().context("latencies_us")? {
            h.record(lat.as_i64().unwrap_or(0).max(1) as u64)?;
            delivered += 1;
        }
    }
    let expected = clients * writes;
    let rate = writes as f64 / wrote.as_secs_f64();
    let node_cpu = after - before;
    let table = Table {
        title: "Write → row in @powersync/node's local SQLite (latency per delivery, ms)".into(),
        columns: vec![
            "load",
            "deliveries",
            "p50",
            "p90",
            "p95",
            "p99",
            "max",
            "node CPU s",
        ],
        rows: vec![vec![
            format!(
                "{clients} clients ({procs} processes) × {rate:.0} writes/s × {} s",
                args.node_secs
            ),
            format!("{delivered} / {expected}"),
            format!("{:.1}", live::ms(&h, 50.0)),
            format!("{:.1}", live::ms(&h, 90.0)),
            format!("{:.1}", live::ms(&h, 95.0)),
            format!("{:.1}", live::ms(&h, 99.0)),
            format!("{:.1}", live::ms(&h, 100.0)),
            format!("{node_cpu:.2}"),
        ]],
        metrics: json!({
            "clients": clients, "processes": procs, "writes": writes, "writes_per_s": rate, "deliveries": delivered,
            "expected": expected, "p50_ms": live::ms(&h, 50.0), "p90_ms": live::ms(&h, 90.0),
            "p95_ms": live::ms(&h, 95.0), "p99_ms": live::ms(&h, 99.0),
            "max_ms": live::ms(&h, 100.0), "node_cpu_s": node_cpu,
        }),
    };
    Ok((table, h))
}

/// Starts `procs` node processes sharing `clients` clients, each waiting for `writes` events.
fn spawn_clients(
    bench: &Bench<'_>,
    token: &str,
    (clients, procs): (usize, usize),
    writes: usize,
) -> Result<Vec<NodeProcess>> {
    let script = PathBuf::from("e2e/bench/live-latency.mjs");
    if !script.is_file() || !PathBuf::from("e2e/node_modules/@powersync/node").is_dir() {
        bail!("e2e packages not installed (cd e2e && npm ci)");
    }
    let mut children = Vec::with_capacity(procs);
    for p in 0..procs {
        let n = clients / procs + usize::from(p < clients % procs);
        let mut child = tokio::process::Command::new("node")
            .arg(&script)
            .env("ENDPOINT", &bench.endpoint)
            .env("TOKEN", token)
            .env("CLIENTS", n.to_string())
            .env("COUNT", writes.to_string())
            .env("TIMEOUT_S", (bench.args.node_secs + 60).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().context("node pid")?;
        let lines = BufReader::new(child.stdout.take().context("node stdout")?).lines();
        children.push((child, pid, lines));
    }
    Ok(children)
}
