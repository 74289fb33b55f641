//! Snapshot: a service of its own starts on a database whose table already holds `rows` rows
//! and copies it in its initial snapshot: the time until the deployment's first checkpoint, and
//! the service's RSS sampled every 50 ms meanwhile.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use riptide_testkit::Transport;
use serde_json::{Value, json};

use super::{Bench, bench_client};
use crate::checkpoint::{first_checkpoint_count, request_body};
use crate::connect;
use crate::report::Table;
use crate::service::{Service, dashboard_data, free_port};
use crate::usage::{Resources, Usage, cluster_cpu_s, usage};

/// What the service did until its first checkpoint.
#[derive(Clone, Copy)]
struct Progress {
    /// Seconds from the process's start to the first checkpoint.
    checkpoint_secs: f64,
    /// When the dashboard first showed the snapshot running, seconds from the process's start.
    copy_started: Option<f64>,
    /// Largest RSS sampled, bytes.
    max_rss: u64,
    samples: usize,
}

pub async fn run(bench: &Bench<'_>, work: &Path) -> Result<(Table, Resources)> {
    let rows = bench.sizes.snapshot_rows;
    let pg_port = bench.databases.pg_port;
    let fill_secs = fill_source(pg_port, rows).await?;

    let http_port = free_port()?;
    let config = json!({
        "replication": {"connections": [{"type": "postgresql", "uri": riptide_localpg::url(pg_port, "bench_snapshot_source"), "sslmode": "disable"}]},
        "storage": {"type": "postgresql", "uri": riptide_localpg::url(pg_port, "bench_snapshot_storage")},
        "port": http_port,
        "sync_config": {"content": "bucket_definitions:\n  global:\n    data:\n      - SELECT * FROM big\n"},
        "client_auth": {"jwks": bench.keys.jwks(), "audience": [bench.keys.audience]},
        "system": {"logging": {"level": "warn"}},
    });
    let bench_before = usage(std::process::id());
    let pg_dir = work.join("pg");
    let postgres_before = cluster_cpu_s(&pg_dir);
    let started = Instant::now();
    let riptide = &bench.args.riptide;
    let mut service = Service::spawn(riptide, &work.join("snapshot-config.yaml"), &config)
        .with_context(|| format!("cannot start {}", riptide.display()))?;
    let http = reqwest::Client::new();
    let mut progress = until_first_checkpoint(&mut service, &http, started).await?;
    let service_used = usage(service.pid);
    let bench_after = usage(std::process::id());
    let postgres_after = cluster_cpu_s(&pg_dir);
    progress.max_rss = progress.max_rss.max(service_used.rss);
    // The checkpoint holds every row: a stream's first checkpoint line counts them.
    let token = bench.keys.token("bench", 3600, json!({}));
    let mut stream = bench_client(&service.endpoint, token, &http)
        .open(Transport::NDJSON, &request_body())
        .await?;
    let in_checkpoint = first_checkpoint_count(&mut stream).await?;
    drop(stream);
    service.kill().await;
    if in_checkpoint != rows {
        bail!("snapshot: the first checkpoint holds {in_checkpoint} ops, not {rows}");
    }
    let table = table(rows, &progress, &service_used, fill_secs);
    let used = Resources {
        scenario: "initial snapshot (own service)".into(),
        service: (Usage::default(), service_used),
        bench: (bench_before, bench_after),
        postgres: (postgres_before, postgres_after),
    };
    Ok((table, used))
}

/// Creates `bench_snapshot_source` (table `big` with `rows` rows, vacuumed and analyzed, in
/// publication `powersync`) and an empty `bench_snapshot_storage`; returns the seconds the
/// fill took.
async fn fill_source(pg_port: u16, rows: i64) -> Result<f64> {
    let admin = connect(&riptide_localpg::url(pg_port, "postgres")).await?;
    admin
        .batch_execute("CREATE DATABASE bench_snapshot_source")
        .await?;
    admin
        .batch_execute("CREATE DATABASE bench_snapshot_storage")
        .await?;
    let source = connect(&riptide_localpg::url(pg_port, "bench_snapshot_source")).await?;
    source
        .batch_execute(
            "CREATE TABLE big (id text PRIMARY KEY, n bigint NOT NULL, label text NOT NULL, \
             created_at timestamptz NOT NULL DEFAULT now());
             CREATE PUBLICATION powersync FOR ALL TABLES;",
        )
        .await?;
    let filling = Instant::now();
    source
        .execute(
            "INSERT INTO big (id, n, label) SELECT 'row-' || g, g, 'label ' || g \
             FROM generate_series(1, $1::bigint) g",
            &[&rows],
        )
        .await?;
    source.batch_execute("VACUUM ANALYZE big").await?;
    Ok(filling.elapsed().as_secs_f64())
}

/// Every 50 ms: the service's RSS, and its dashboard, until the deployment has a checkpoint
/// (at most 600 s from `started`).
async fn until_first_checkpoint(
    service: &mut Service,
    http: &reqwest::Client,
    started: Instant,
) -> Result<Progress> {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = started + Duration::from_secs(600);
    let (mut max_rss, mut samples) = (0u64, 0usize);
    let mut copy_started = None;
    loop {
        tick.tick().await;
        max_rss = max_rss.max(usage(service.pid).rss);
        samples += 1;
        if let Some(status) = service.exited()? {
            bail!("snapshot: the service exited ({status})");
        }
        if Instant::now() > deadline {
            bail!("snapshot: no checkpoint after 600 s");
        }
        let Ok(data) = dashboard_data(http, &service.endpoint).await else {
            continue;
        };
        if copy_started.is_none()
            && data
                .pointer("/replication/snapshot/running")
                .and_then(Value::as_bool)
                == Some(true)
        {
            copy_started = Some(started.elapsed().as_secs_f64());
        }
        if data
            .pointer("/deployment/checkpoint")
            .is_some_and(|c| !c.is_null())
        {
            return Ok(Progress {
                checkpoint_secs: started.elapsed().as_secs_f64(),
                copy_started,
                max_rss,
                samples,
            });
        }
    }
}

fn table(rows: i64, progress: &Progress, service_used: &Usage, fill_secs: f64) -> Table {
    let Progress {
        checkpoint_secs,
        copy_started,
        max_rss,
        samples,
    } = *progress;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let rate = rows as f64 / checkpoint_secs;
    Table {
        title: "Initial snapshot of a table that exists before the service starts".into(),
        columns: vec![
            "rows",
            "s to the first checkpoint (from process start)",
            "rows/s",
            "copy started at s",
            "service max RSS MiB (50 ms samples)",
            "service peak RSS MiB (VmHWM)",
            "service CPU s",
            "s to fill the source table",
        ],
        rows: vec![vec![
            rows.to_string(),
            format!("{checkpoint_secs:.2}"),
            format!("{rate:.0}"),
            copy_started.map_or("—".into(), |s| format!("{s:.2}")),
            format!("{:.1}", mib(max_rss)),
            format!("{:.1}", mib(service_used.peak_rss)),
            format!("{:.2}", service_used.cpu_s),
            format!("{fill_secs:.2}"),
        ]],
        metrics: json!({
            "rows": rows, "checkpoint_seconds": checkpoint_secs, "rows_per_s": rate,
            "copy_started_seconds": copy_started, "max_rss_bytes": max_rss,
            "rss_samples": samples, "peak_rss_bytes": service_used.peak_rss,
            "service_cpu_s": service_used.cpu_s, "fill_seconds": fill_secs,
        }),
    }
}
