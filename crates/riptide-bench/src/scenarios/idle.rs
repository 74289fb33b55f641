//! Idle streams: as many as feasible, up to the target, opened and left idle; the service's RSS
//! per stream, what a commit no stream sees still costs it (`--idle-writes`), and how much it
//! gives back once they close.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

use super::Bench;
use crate::live;
use crate::report::Table;
use crate::service::open_streams;
use crate::usage::usage;

pub async fn run(bench: &Bench<'_>) -> Result<Table> {
    let target = bench.sizes.idle_streams;
    let (http, endpoint, pid) = (&bench.http, bench.endpoint.as_str(), bench.service_pid);
    let before = usage(pid);
    let opening = Instant::now();
    let (streams, failed) = live::open_many(&bench.client("idle"), target).await;
    let open_secs = opening.elapsed().as_secs_f64();
    if let Some(e) = &failed {
        eprintln!("idle: stopped at {} streams: {e:#}", streams.len());
        if bench.sizes.strict {
            bail!(
                "idle: stopped at {} of {target} streams: {e:#}",
                streams.len()
            );
        }
    }
    // Let allocations settle, then measure while every stream is still open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = usage(pid);
    let opened = streams.len();
    if opened == 0 {
        bail!("idle: no stream opened");
    }
    let per_stream = after.rss.saturating_sub(before.rss) as f64 / opened as f64;
    let idle_commit_cpu_ms = unseen_commit_cpu_ms(bench).await?;
    let open_before_close = open_streams(http, endpoint).await?;
    eprintln!("idle: the service counts {open_before_close} open streams; closing them");
    drop(streams);
    // How much of it the service gives back once every stream has closed.
    let closing = Instant::now();
    let deadline = closing + Duration::from_secs(60);
    let mut still_open = open_streams(http, endpoint).await?;
    while still_open > 0.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        still_open = open_streams(http, endpoint).await?;
    }
    let close_secs = closing.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let closed = usage(pid);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let row = vec![
        format!("{opened} / {target}"),
        format!("{:.1}", mib(before.rss)),
        format!("{:.1}", mib(after.rss)),
        format!("{per_stream:.0}"),
        format!(
            "{:.1} ({still_open:.0} open after {close_secs:.1} s)",
            mib(closed.rss)
        ),
        idle_commit_cpu_ms.map_or("—".into(), |ms| format!("{ms:.2}")),
        format!("{open_secs:.1}"),
        failed.as_ref().map_or("—".into(), |e| format!("{e:#}")),
    ];
    Ok(Table {
        title: format!("Idle streams (open-file limit {})", bench.fd_limit),
        columns: vec![
            "streams open",
            "service RSS MiB before",
            "service RSS MiB with all open",
            "bytes per stream",
            "service RSS MiB after all closed",
            "service CPU ms per commit no stream sees",
            "s to open",
            "stopped by",
        ],
        rows: vec![row],
        metrics: json!({
            "target": target, "opened": opened, "rss_before_bytes": before.rss,
            "rss_after_bytes": after.rss, "bytes_per_stream": per_stream,
            "rss_after_close_bytes": closed.rss, "open_after_close": still_open,
            "close_seconds": close_secs, "open_seconds": open_secs,
            "cpu_ms_per_unseen_commit": idle_commit_cpu_ms,
            "error": failed.map(|e| format!("{e:#}")),
        }),
    })
}

/// With `--idle-writes`, commits (100/s) to a bucket none of the idle streams has: the
/// service's CPU ms per commit.
async fn unseen_commit_cpu_ms(bench: &Bench<'_>) -> Result<Option<f64>> {
    let writes = bench.args.idle_writes;
    if writes == 0 {
        return Ok(None);
    }
    let cpu_before = usage(bench.service_pid).cpu_s;
    live::write_events(
        &bench.databases.writer,
        "elsewhere",
        writes,
        Duration::from_millis(10),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu = usage(bench.service_pid).cpu_s - cpu_before;
    Ok(Some(cpu * 1000.0 / writes as f64))
}
