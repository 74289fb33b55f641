//! `riptide-bench`: measures the sync service as a user would meet it, in one run on one machine,
//! and prints a table (and writes JSON).
//!
//! It starts a private Postgres cluster, a source and a storage database, and `riptide serve`
//! as a separate process (the release binary), then runs:
//! - replication: a 100,000-row `INSERT … SELECT generate_series` until an open sync stream has
//!   received the checkpoint that contains it (rows/s);
//! - initial sync: a raw protocol reader downloading those ops from scratch up to
//!   `checkpoint_complete`, per transport and encoding: the HTTP stream as NDJSON and as BSON,
//!   each with identity, gzip and zstd content encoding, and RSocket over WebSocket (BSON
//!   payloads); best of `--repeat` runs (ops/s and bytes on the wire, compressed where it is);
//! - `@powersync/node` first sync of the same rows into a fresh database over `http` and
//!   `web-socket` (if `e2e/` has its packages installed);
//! - live scenarios (run first, see `live.rs`): write → every subscribed stream latency (N
//!   streams, R writes/s, T s; p50/p90/p99/max per delivery), fan-out (one write to a bucket
//!   shared by many streams: time until all have it) and idle streams (the service's RSS per
//!   stream, up to 10,000);
//! - transactions: N single-row transactions committed one after another until an open stream
//!   has the checkpoint containing the last (transactions/s end to end, and the source's own
//!   commit rate);
//! - snapshot: a service of its own starting on a database whose table already holds N rows,
//!   until its first checkpoint (rows/s, the service's RSS sampled every 50 ms);
//! - for each scenario, CPU time and RSS of the service and of this process (the load);
//! - `latency.svg` next to the JSON: the live latency scenarios' percentile curves and
//!   deliveries per second;
//! - compaction (`compaction.rs`): 1,000 rows each updated 1,000 times with a service of its
//!   own, compacted; what a fresh client downloads, and `compaction.svg`: storage over time.
//!
//! `--scenario a,b` selects scenarios; `--short` runs them all at small sizes (the smoke test
//! of `scripts/test`, which fails if a live scenario loses a delivery or a stream).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use riptide_localpg::{Durability, LocalCluster};
use riptide_testkit::TestKeys;

mod chart;
mod compaction;
mod live;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "Benchmarks of the Riptide sync service")]
struct Args {
    /// Rows inserted by the replication scenario.
    #[arg(long, default_value_t = 100_000)]
    rows: i64,
    /// The riptide binary to benchmark.
    #[arg(long, default_value = "target/release/riptide")]
    riptide: PathBuf,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/results.json")]
    json: PathBuf,
    /// Skip the @powersync/node scenarios.
    #[arg(long)]
    no_node: bool,
    /// Runs of each initial-sync scenario; the fastest is reported.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Scenarios to run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    scenario: Vec<Scenario>,
    /// Every selected scenario at small sizes (a smoke test: 2,000 rows, 10 streams × 20
    /// writes/s × 5 s, 50 fan-out streams, 200 idle streams, 500 transactions, a 20,000-row
    /// snapshot; no @powersync/node).
    #[arg(long)]
    short: bool,
    /// Let the live scenarios' writer commit with the cluster's synchronous_commit = off (a
    /// commit then reaches logical replication only at the WAL writer's next flush, ≤ 200 ms).
    #[arg(long)]
    async_commit_writer: bool,
    /// Override the latency scenario's streams (default 100, short 10).
    #[arg(long)]
    latency_streams: Option<usize>,
    /// Override the latency scenario's writes per second (default 100, short 20).
    #[arg(long)]
    latency_rate: Option<u32>,
    /// Override the latency scenario's duration in seconds (default 60, short 5).
    #[arg(long)]
    latency_secs: Option<u32>,
    /// Commits (100/s, to a bucket no idle stream has) made while the idle streams are open,
    /// to measure what a commit costs that wakes no stream.
    #[arg(long, default_value_t = 0)]
    idle_writes: usize,
    /// `@powersync/node` clients of the node-latency scenario.
    #[arg(long, default_value_t = 20)]
    node_clients: usize,
    /// Node processes the node-latency scenario's clients are spread over.
    #[arg(long, default_value_t = 2)]
    node_procs: usize,
    /// Writes per second of the node-latency scenario.
    #[arg(long, default_value_t = 10)]
    node_rate: u32,
    /// Duration in seconds of the node-latency scenario.
    #[arg(long, default_value_t = 20)]
    node_secs: u32,
    /// Single-row transactions of the transactions scenario (short: at most 500).
    #[arg(long, default_value_t = 10_000)]
    transactions: usize,
    /// Connections the transactions scenario commits on in parallel (each commits its share
    /// one after another, every INSERT its own transaction).
    #[arg(long, default_value_t = 1)]
    txn_connections: usize,
    /// Rows the snapshot scenario's table holds before its service starts (short: at most
    /// 20,000).
    #[arg(long, default_value_t = 1_000_000)]
    snapshot_rows: i64,
}

struct Row {
    scenario: String,
    amount: String,
    seconds: f64,
    rate: String,
    note: String,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let result = bench().await;
    if let Err(e) = &result {
        // tokio-postgres keeps the server's message in the error's source chain.
        let chain: Vec<String> = e.chain().map(|c| format!("{c:?}")).collect();
        eprintln!("{}", chain.join("\n  caused by: "));
    }
    result
}

async fn bench() -> Result<()> {
    let args = Args::parse();
    let work = tempfile::Builder::new().prefix("riptide-bench").tempdir()?;
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let cluster = LocalCluster::new(work.path().join("pg"));
    cluster.init(Durability::Ephemeral)?;
    let pg_port = cluster.start(None)?;
    let result = run(&args, pg_port, work.path()).await;
    let _ = cluster.stop(false);
    result
}

/// What `--scenario` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// Everything below.
    All,
    /// Bulk insert → in a checkpoint (rows/s).
    Replication,
    /// Raw-reader first sync per transport and encoding (runs the bulk insert first).
    InitialSync,
    /// `@powersync/node` first sync (runs the bulk insert first).
    Node,
    /// Write → every subscribed stream latency.
    Latency,
    /// Write → row in the local SQLite of `@powersync/node` clients (needs e2e/ packages).
    NodeLatency,
    /// One write to a bucket shared by many streams: time until all have it.
    Fanout,
    /// Many idle streams: service RSS per stream.
    Idle,
    /// Single-row transactions one after another → in a checkpoint (transactions/s).
    Transactions,
    /// A service's initial snapshot of a big table (rows/s, service RSS).
    Snapshot,
    /// 1,000 rows updated 1,000 times, compacted: what a fresh client downloads, storage
    /// size over time (`compaction.rs`).
    Compaction,
}

/// Sizes of the live scenarios.
struct Sizes {
    latency_streams: usize,
    latency_rate: u32,
    latency_secs: u32,
    fanout_streams: usize,
    fanout_writes: usize,
    fanout_gap: Duration,
    idle_streams: usize,
    /// Fail on a lost delivery or stream (the smoke test) instead of reporting it.
    strict: bool,
}

impl Sizes {
    fn new(short: bool) -> Sizes {
        if short {
            Sizes {
                latency_streams: 10,
                latency_rate: 20,
                latency_secs: 5,
                fanout_streams: 50,
                fanout_writes: 5,
                fanout_gap: Duration::from_millis(200),
                idle_streams: 200,
                strict: true,
            }
        } else {
            Sizes {
                latency_streams: 100,
                latency_rate: 100,
                latency_secs: 60,
                fanout_streams: 1_000,
                fanout_writes: 20,
                fanout_gap: Duration::from_millis(500),
                idle_streams: 10_000,
                strict: false,
            }
        }
    }
}

/// One printed table (and its JSON).
struct Table {
    title: String,
    columns: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    metrics: Value,
}

/// CPU and memory of the service and of this process (the load generator) over one scenario.
struct Resources {
    scenario: String,
    service: (live::Usage, live::Usage),
    bench: (live::Usage, live::Usage),
    /// CPU seconds of the whole Postgres cluster (source and storage databases), before and
    /// after.
    postgres: (f64, f64),
}

async fn run(args: &Args, pg_port: u16, work: &std::path::Path) -> Result<()> {
    let want = |s: Scenario| args.scenario.contains(&Scenario::All) || args.scenario.contains(&s);
    let mut sizes = Sizes::new(args.short);
    sizes.latency_streams = args.latency_streams.unwrap_or(sizes.latency_streams).max(1);
    sizes.latency_rate = args.latency_rate.unwrap_or(sizes.latency_rate).max(1);
    sizes.latency_secs = args.latency_secs.unwrap_or(sizes.latency_secs).max(1);
    let (rows_to_insert, repeat) = if args.short {
        (args.rows.min(2_000), 1)
    } else {
        (args.rows, args.repeat.max(1))
    };
    let (transactions_count, snapshot_rows) = if args.short {
        (args.transactions.min(500), args.snapshot_rows.min(20_000))
    } else {
        (args.transactions, args.snapshot_rows)
    };
    let fd_limit = live::raise_fd_limit();

    let admin = connect(&riptide_localpg::url(pg_port, "postgres")).await?;
    admin.batch_execute("CREATE DATABASE bench_source").await?;
    admin.batch_execute("CREATE DATABASE bench_storage").await?;
    let source = connect(&riptide_localpg::url(pg_port, "bench_source")).await?;
    source
        .batch_execute(
            "CREATE TABLE items (id text PRIMARY KEY, n bigint NOT NULL, label text NOT NULL, \
             created_at timestamptz NOT NULL DEFAULT now());
             CREATE TABLE events (id text PRIMARY KEY, topic text NOT NULL, seq integer NOT NULL, \
             sent_us bigint NOT NULL);
             CREATE PUBLICATION powersync FOR ALL TABLES;",
        )
        .await?;

    // The live scenarios' writer commits as a production database would: the bench cluster
    // runs with synchronous_commit off, under which Postgres sends a commit to logical
    // replication only once the WAL writer has flushed it (every wal_writer_delay, 200 ms),
    // which would dominate the latency measured.
    let writer = connect(&riptide_localpg::url(pg_port, "bench_source")).await?;
    if !args.async_commit_writer {
        writer.batch_execute("SET synchronous_commit = on").await?;
    }

    let keys = TestKeys::generate();
    let http_port = free_port()?;
    // `global` holds the bulk-insert rows; each live scenario has its own `by_topic` bucket,
    // chosen by the token's `topic` parameter (the live scenarios run first, while `global`
    // is still empty).
    let config = json!({
        "replication": {"connections": [{"type": "postgresql", "uri": riptide_localpg::url(pg_port, "bench_source"), "sslmode": "disable"}]},
        "storage": {"type": "postgresql", "uri": riptide_localpg::url(pg_port, "bench_storage")},
        "port": http_port,
        "sync_config": {"content": "bucket_definitions:\n  global:\n    data:\n      - SELECT * FROM items\n  by_topic:\n    parameters: SELECT token_parameters.topic AS topic\n    data:\n      - SELECT * FROM events WHERE topic = bucket.topic\n"},
        "client_auth": {"jwks": keys.jwks(), "audience": [keys.audience]},
        "api": {"parameters": {"max_concurrent_connections": 20_000}},
        "system": {"logging": {"level": "warn"}},
    });
    let config_path = work.join("config.yaml");
    // JSON is YAML.
    std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)?;
    let mut service = tokio::process::Command::new(&args.riptide)
        .args(["serve", "--config"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (build it with cargo build --release)",
                args.riptide.display()
            )
        })?;
    let service_pid = service.id().context("service pid")?;
    let endpoint = format!("http://127.0.0.1:{http_port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http
            .get(format!("{endpoint}/probes/readiness"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("service not ready after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token_for =
        |topic: &str| keys.token("bench", 3600, json!({"parameters": {"topic": topic}}));
    let mut tables = Vec::new();
    let mut resources = Vec::new();
    let pg_dir = work.join("pg");
    let snapshot = || {
        (
            live::usage(service_pid),
            live::usage(std::process::id()),
            live::cluster_cpu_s(&pg_dir),
        )
    };
    let mut measured = |name: &str, before: (live::Usage, live::Usage, f64)| {
        let after = snapshot();
        resources.push(Resources {
            scenario: name.into(),
            service: (before.0, after.0),
            bench: (before.1, after.1),
            postgres: (before.2, after.2),
        });
    };

    if want(Scenario::Idle) {
        let before = snapshot();
        tables.push(
            idle(
                &http,
                &endpoint,
                &token_for("idle"),
                &sizes,
                service_pid,
                fd_limit,
                (&writer, args.idle_writes),
            )
            .await?,
        );
        measured("idle streams", before);
    }
    if want(Scenario::Fanout) {
        let before = snapshot();
        tables.push(fanout(&http, &endpoint, &token_for("fanout"), &writer, &sizes).await?);
        measured("fan-out", before);
    }
    // The chart's lines: latency percentile curves and deliveries per second.
    let mut curves = Vec::new();
    let mut per_second = Vec::new();
    if want(Scenario::Latency) {
        let before = snapshot();
        let (table, run) =
            latency(&http, &endpoint, &token_for("latency"), &writer, &sizes).await?;
        tables.push(table);
        curves.push(chart::Series {
            label: format!("{} (raw streams)", run.label),
            points: chart::percentile_curve(&run.histogram),
        });
        per_second.push(chart::Series {
            label: run.label,
            points: run
                .per_second
                .iter()
                .enumerate()
                .map(|(s, n)| (s as f64, *n as f64))
                .collect(),
        });
        measured("write → stream latency", before);
    }

    if want(Scenario::NodeLatency) && !args.no_node && !args.short {
        let before = snapshot();
        match node_latency(&endpoint, &token_for("nodelat"), &writer, args).await {
            Ok((table, histogram)) => {
                tables.push(table);
                curves.push(chart::Series {
                    label: format!("{} @powersync/node clients, SQLite", args.node_clients),
                    points: chart::percentile_curve(&histogram),
                });
                measured("write → @powersync/node SQLite", before);
            }
            Err(e) => eprintln!("skipping @powersync/node latency scenario: {e:#}"),
        }
    }

    if want(Scenario::Transactions) {
        let before = snapshot();
        tables.push(
            transactions(
                &http,
                &endpoint,
                &token_for("transactions"),
                pg_port,
                args,
                transactions_count,
            )
            .await?,
        );
        measured("single-row transactions", before);
    }

    let token = token_for("none");
    let mut rows = Vec::new();
    if want(Scenario::Replication) || want(Scenario::InitialSync) || want(Scenario::Node) {
        // Replication: an open stream sees the checkpoint containing the bulk insert.
        let before = snapshot();
        let mut live = open_stream(&http, &endpoint, &token, Transport::NDJSON).await?;
        read_until_complete(&mut live, None).await?;
        let started = Instant::now();
        source
            .execute(
                "INSERT INTO items (id, n, label) SELECT 'item-' || g, g, 'label ' || g \
                 FROM generate_series(1, $1::bigint) g",
                &[&rows_to_insert],
            )
            .await?;
        let committed = started.elapsed();
        read_until_complete(&mut live, Some(rows_to_insert)).await?;
        let total = started.elapsed();
        drop(live);
        let secs = total.as_secs_f64();
        rows.push(Row {
            scenario: "replication: bulk INSERT → in a checkpoint".into(),
            amount: format!("{rows_to_insert} rows"),
            seconds: secs,
            rate: format!("{:.0} rows/s", rows_to_insert as f64 / secs),
            note: format!("INSERT itself took {:.2} s", committed.as_secs_f64()),
        });
        measured("replication", before);
    }

    // Initial sync, raw reader, per transport and encoding.
    if want(Scenario::InitialSync) {
        let before = snapshot();
        for transport in Transport::ALL {
            let mut best: Option<(f64, u64, u64)> = None;
            for _ in 0..repeat {
                let started = Instant::now();
                let mut stream = open_stream(&http, &endpoint, &token, transport).await?;
                let (ops, _) = read_until_complete(&mut stream, Some(rows_to_insert)).await?;
                let secs = started.elapsed().as_secs_f64();
                let wire = stream.wire_bytes();
                drop(stream);
                if best.is_none_or(|(s, _, _)| secs < s) {
                    best = Some((secs, ops, wire));
                }
            }
            let (secs, ops, wire) = best.context("at least one run")?;
            rows.push(Row {
                scenario: format!("initial sync, raw reader, {}", transport.label()),
                amount: format!("{ops} ops"),
                seconds: secs,
                rate: format!("{:.0} ops/s", ops as f64 / secs),
                note: format!("{:.1} MB on the wire", wire as f64 / 1e6),
            });
        }
        measured("initial sync (all transports)", before);
    }

    // The official client, over both of its transports.
    if want(Scenario::Node) && !args.no_node && !args.short {
        let before = snapshot();
        for method in ["http", "web-socket"] {
            match node_first_sync(&endpoint, &token, method).await {
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
        measured("@powersync/node first sync", before);
    }
    let _ = service.kill().await;

    // With a service of its own: the snapshot runs when a deployment first starts.
    if want(Scenario::Snapshot) {
        let (table, used) = initial_snapshot(args, pg_port, work, &keys, snapshot_rows).await?;
        tables.push(table);
        resources.push(used);
    }
    if want(Scenario::Compaction) {
        let (table, used) = compaction::run(args, pg_port, work, &keys).await?;
        tables.push(table);
        resources.push(used);
    }

    if !rows.is_empty() {
        tables.push(Table {
            title: "Throughput".into(),
            columns: vec!["scenario", "amount", "seconds", "rate", "note"],
            rows: rows
                .iter()
                .map(|r| {
                    vec![
                        r.scenario.clone(),
                        r.amount.clone(),
                        format!("{:.2}", r.seconds),
                        r.rate.clone(),
                        r.note.clone(),
                    ]
                })
                .collect(),
            metrics: rows
                .iter()
                .map(|r| json!({"scenario": r.scenario, "amount": r.amount, "seconds": r.seconds, "rate": r.rate, "note": r.note}))
                .collect(),
        });
    }
    let mib = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
    tables.push(Table {
        title: "CPU time and memory per scenario (service = `riptide serve`, load = this process, \
                Postgres = source and storage databases)"
            .into(),
        columns: vec![
            "scenario",
            "service CPU s",
            "service RSS MiB (end)",
            "service peak RSS MiB",
            "load CPU s",
            "load RSS MiB (end)",
            "Postgres CPU s",
        ],
        rows: resources
            .iter()
            .map(|r| {
                vec![
                    r.scenario.clone(),
                    format!("{:.2}", r.service.1.cpu_s - r.service.0.cpu_s),
                    mib(r.service.1.rss),
                    mib(r.service.1.peak_rss),
                    format!("{:.2}", r.bench.1.cpu_s - r.bench.0.cpu_s),
                    mib(r.bench.1.rss),
                    format!("{:.2}", r.postgres.1 - r.postgres.0),
                ]
            })
            .collect(),
        metrics: resources
            .iter()
            .map(|r| {
                json!({
                    "scenario": r.scenario,
                    "service_cpu_s": r.service.1.cpu_s - r.service.0.cpu_s,
                    "service_rss_bytes": r.service.1.rss,
                    "service_peak_rss_bytes": r.service.1.peak_rss,
                    "load_cpu_s": r.bench.1.cpu_s - r.bench.0.cpu_s,
                    "load_rss_bytes": r.bench.1.rss,
                    "postgres_cpu_s": r.postgres.1 - r.postgres.0,
                })
            })
            .collect(),
    });

    for t in &tables {
        println!("\n### {}\n", t.title);
        println!("| {} |", t.columns.join(" | "));
        println!("|{}", "---|".repeat(t.columns.len()));
        for r in &t.rows {
            println!("| {} |", r.join(" | "));
        }
    }
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let json: Vec<Value> = tables
        .iter()
        .map(|t| json!({"table": t.title, "columns": t.columns, "rows": t.rows, "metrics": t.metrics}))
        .collect();
    std::fs::write(
        &args.json,
        serde_json::to_string_pretty(&json!({"short": args.short, "tables": json}))?,
    )?;
    println!("\nresults written to {}", args.json.display());
    if !curves.is_empty() {
        let path = args
            .json
            .parent()
            .map_or_else(|| PathBuf::from("latency.svg"), |d| d.join("latency.svg"));
        let svg = chart::latency_svg("Write → every subscribed stream", &curves, &per_second);
        std::fs::write(&path, svg)?;
        println!("latency chart written to {}", path.display());
    }
    Ok(())
}

/// What a live latency scenario measured, for the chart.
struct LiveRun {
    label: String,
    histogram: hdrhistogram::Histogram<u64>,
    /// Deliveries per second of the run, from the writer's start.
    per_second: Vec<u64>,
}

/// `count` single-row transactions, committed one after another (on `--txn-connections`
/// connections in parallel, every `INSERT` in autocommit), until an open stream has received
/// the checkpoint that contains the last one.
async fn transactions(
    http: &reqwest::Client,
    endpoint: &str,
    token: &str,
    pg_port: u16,
    args: &Args,
    count: usize,
) -> Result<Table> {
    let connections = args.txn_connections.clamp(1, count.max(1));
    let mut writers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let client = connect(&riptide_localpg::url(pg_port, "bench_source")).await?;
        if !args.async_commit_writer {
            client.batch_execute("SET synchronous_commit = on").await?;
        }
        let insert = client
            .prepare(
                "INSERT INTO events (id, topic, seq, sent_us) VALUES ($1, 'transactions', $2, $3)",
            )
            .await?;
        writers.push((client, insert));
    }
    let mut stream = open_stream(http, endpoint, token, Transport::NDJSON).await?;
    read_until_complete(&mut stream, None).await?;
    // Read while the writers commit, as a client would (a stream not read would stall).
    let expected = i64::try_from(count)?;
    let reader = tokio::spawn(async move {
        read_until_complete(&mut stream, Some(expected)).await?;
        anyhow::Ok(Instant::now())
    });
    let started = Instant::now();
    let commits = writers
        .iter()
        .enumerate()
        .map(|(c, (client, insert))| async move {
            for seq in (c..count).step_by(connections) {
                let id = format!("txn-{seq}");
                let seq = i32::try_from(seq)?;
                client
                    .execute(insert, &[&id, &seq, &live::now_us()])
                    .await?;
            }
            anyhow::Ok(())
        });
    futures::future::try_join_all(commits).await?;
    let committed = started.elapsed().as_secs_f64();
    let seen = tokio::time::timeout(Duration::from_secs(300), reader)
        .await
        .context("the last transaction not in a checkpoint after 300 s")???;
    let total = seen.duration_since(started).as_secs_f64();
    let lag_ms = (total - committed) * 1000.0;
    let commit_rate = count as f64 / committed;
    let end_to_end = count as f64 / total;
    Ok(Table {
        title: "Single-row transactions → in a checkpoint".into(),
        columns: vec![
            "transactions",
            "connections",
            "commit s",
            "source commits/s",
            "in a checkpoint s",
            "end to end transactions/s",
            "last commit → checkpoint ms",
        ],
        rows: vec![vec![
            count.to_string(),
            connections.to_string(),
            format!("{committed:.2}"),
            format!("{commit_rate:.0}"),
            format!("{total:.2}"),
            format!("{end_to_end:.0}"),
            format!("{lag_ms:.0}"),
        ]],
        metrics: json!({
            "transactions": count, "connections": connections, "commit_seconds": committed,
            "source_commits_per_s": commit_rate, "checkpoint_seconds": total,
            "transactions_per_s": end_to_end, "last_commit_to_checkpoint_ms": lag_ms,
        }),
    })
}

/// A service of its own starts on a database whose table already holds `rows` rows and copies
/// it in its initial snapshot: the time until the deployment's first checkpoint, and the
/// service's RSS sampled every 50 ms meanwhile.
async fn initial_snapshot(
    args: &Args,
    pg_port: u16,
    work: &std::path::Path,
    keys: &TestKeys,
    rows: i64,
) -> Result<(Table, Resources)> {
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
    let fill_secs = filling.elapsed().as_secs_f64();

    let http_port = free_port()?;
    let config = json!({
        "replication": {"connections": [{"type": "postgresql", "uri": riptide_localpg::url(pg_port, "bench_snapshot_source"), "sslmode": "disable"}]},
        "storage": {"type": "postgresql", "uri": riptide_localpg::url(pg_port, "bench_snapshot_storage")},
        "port": http_port,
        "sync_config": {"content": "bucket_definitions:\n  global:\n    data:\n      - SELECT * FROM big\n"},
        "client_auth": {"jwks": keys.jwks(), "audience": [keys.audience]},
        "system": {"logging": {"level": "warn"}},
    });
    let config_path = work.join("snapshot-config.yaml");
    std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)?;
    let bench_before = live::usage(std::process::id());
    let pg_dir = work.join("pg");
    let postgres_before = live::cluster_cpu_s(&pg_dir);
    let started = Instant::now();
    let mut service = tokio::process::Command::new(&args.riptide)
        .args(["serve", "--config"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", args.riptide.display()))?;
    let pid = service.id().context("service pid")?;
    let endpoint = format!("http://127.0.0.1:{http_port}");
    let http = reqwest::Client::new();
    // RSS every 50 ms; the dashboard's deployment says when the first checkpoint exists.
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = started + Duration::from_secs(600);
    let (mut max_rss, mut samples) = (0u64, 0usize);
    let mut copy_started = None;
    let checkpoint_secs = loop {
        tick.tick().await;
        max_rss = max_rss.max(live::usage(pid).rss);
        samples += 1;
        if let Some(status) = service.try_wait()? {
            bail!("snapshot: the service exited ({status})");
        }
        if Instant::now() > deadline {
            bail!("snapshot: no checkpoint after 600 s");
        }
        let Ok(data) = dashboard_data(&http, &endpoint).await else {
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
            break started.elapsed().as_secs_f64();
        }
    };
    let service_used = live::usage(pid);
    let bench_after = live::usage(std::process::id());
    let postgres_after = live::cluster_cpu_s(&pg_dir);
    max_rss = max_rss.max(service_used.rss);
    // The checkpoint holds every row: a stream's first checkpoint line counts them.
    let token = keys.token("bench", 3600, json!({}));
    let mut stream = open_stream(&http, &endpoint, &token, Transport::NDJSON).await?;
    let in_checkpoint = loop {
        let line = stream.next_line().await?;
        if let Some(buckets) = line
            .pointer("/checkpoint/buckets")
            .and_then(Value::as_array)
        {
            break buckets
                .iter()
                .filter_map(|b| b["count"].as_i64())
                .sum::<i64>();
        }
    };
    drop(stream);
    let _ = service.kill().await;
    if in_checkpoint != rows {
        bail!("snapshot: the first checkpoint holds {in_checkpoint} ops, not {rows}");
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let rate = rows as f64 / checkpoint_secs;
    let table = Table {
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
    };
    let used = Resources {
        scenario: "initial snapshot (own service)".into(),
        service: (live::Usage::default(), service_used),
        bench: (bench_before, bench_after),
        postgres: (postgres_before, postgres_after),
    };
    Ok((table, used))
}

/// Write → every subscribed stream: N streams on one bucket, a writer at R rows/s for T s.
async fn latency(
    http: &reqwest::Client,
    endpoint: &str,
    token: &str,
    source: &tokio_postgres::Client,
    sizes: &Sizes,
) -> Result<(Table, LiveRun)> {
    let n = sizes.latency_streams;
    let writes = (sizes.latency_rate * sizes.latency_secs) as usize;
    let (streams, failed) = live::open_many(http, endpoint, token, n).await;
    if let Some(e) = failed {
        return Err(e.context(format!(
            "opening latency stream {} of {n}",
            streams.len() + 1
        )));
    }
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(u64::from(sizes.latency_secs) + 30);
    let readers: Vec<_> = streams
        .into_iter()
        .map(|s| live::spawn_reader(s, writes, deadline))
        .collect();
    let prepared_before = prepared_checkpoints(http, endpoint).await;
    let writing = live::now_us();
    let wrote = live::write_events(
        source,
        "latency",
        writes,
        Duration::from_secs(1) / sizes.latency_rate,
    )
    .await?;
    let mut h = live::histogram();
    let mut delivered = 0usize;
    let mut per_second = vec![0u64; sizes.latency_secs as usize + 1];
    for r in readers {
        for (_, lat, received) in r.await? {
            h.record(lat.max(1) as u64)?;
            delivered += 1;
            let second = usize::try_from((received - writing) / 1_000_000).unwrap_or(0);
            if second >= per_second.len() {
                per_second.resize(second + 1, 0);
            }
            per_second[second] += 1;
        }
    }
    // The last second holds only late deliveries, if any.
    while per_second.last() == Some(&0) {
        per_second.pop();
    }
    let expected = n * writes;
    let rate = writes as f64 / wrote.as_secs_f64();
    let prepared_after = prepared_checkpoints(http, endpoint).await;
    let from_memory = prepared_after.0 - prepared_before.0;
    let from_storage = prepared_after.1 - prepared_before.1;
    let row = vec![
        format!(
            "{n} streams × {rate:.0} writes/s × {} s",
            sizes.latency_secs
        ),
        format!("{delivered} / {expected}"),
        format!("{:.1}", live::ms(&h, 50.0)),
        format!("{:.1}", live::ms(&h, 90.0)),
        format!("{:.1}", live::ms(&h, 95.0)),
        format!("{:.1}", live::ms(&h, 99.0)),
        format!("{:.1}", live::ms(&h, 100.0)),
        format!("{from_memory:.0} / {from_storage:.0}"),
    ];
    if delivered < expected {
        eprintln!("latency: only {delivered} of {expected} deliveries arrived");
        if sizes.strict {
            bail!("latency: only {delivered} of {expected} deliveries arrived");
        }
    }
    let run = LiveRun {
        label: format!("{n} streams × {rate:.0} writes/s"),
        histogram: h.clone(),
        per_second,
    };
    let table = Table {
        title: "Write → every subscribed stream (latency per delivery, ms)".into(),
        columns: vec![
            "load",
            "deliveries",
            "p50",
            "p90",
            "p95",
            "p99",
            "max",
            "checkpoints prepared from the bus / storage",
        ],
        rows: vec![row],
        metrics: json!({
            "streams": n, "writes": writes, "writes_per_s": rate, "deliveries": delivered,
            "expected": expected, "p50_ms": live::ms(&h, 50.0), "p90_ms": live::ms(&h, 90.0), "p95_ms": live::ms(&h, 95.0),
            "p99_ms": live::ms(&h, 99.0), "max_ms": live::ms(&h, 100.0),
            "checkpoints_from_memory": from_memory, "checkpoints_from_storage": from_storage,
        }),
    };
    Ok((table, run))
}

/// One write to a bucket shared by many streams: the time until all of them have it.
async fn fanout(
    http: &reqwest::Client,
    endpoint: &str,
    token: &str,
    source: &tokio_postgres::Client,
    sizes: &Sizes,
) -> Result<Table> {
    let n = sizes.fanout_streams;
    let writes = sizes.fanout_writes;
    let opening = Instant::now();
    let (streams, failed) = live::open_many(http, endpoint, token, n).await;
    if let Some(e) = failed {
        return Err(e.context(format!(
            "opening fan-out stream {} of {n}",
            streams.len() + 1
        )));
    }
    let open_secs = opening.elapsed().as_secs_f64();
    let deadline = tokio::time::Instant::now()
        + sizes.fanout_gap * u32::try_from(writes)?
        + Duration::from_secs(30);
    let readers: Vec<_> = streams
        .into_iter()
        .map(|s| live::spawn_reader(s, writes, deadline))
        .collect();
    live::write_events(source, "fanout", writes, sizes.fanout_gap).await?;
    // Per write: how many streams received it, and the last one's latency.
    let mut last = vec![(0usize, 0i64); writes];
    let mut each = live::histogram();
    for r in readers {
        for (seq, lat, _) in r.await? {
            if let Some(slot) = last.get_mut(seq as usize) {
                slot.0 += 1;
                slot.1 = slot.1.max(lat);
            }
            each.record(lat.max(1) as u64)?;
        }
    }
    let mut all = live::histogram();
    let mut incomplete = 0;
    for (got, lat) in &last {
        if *got == n {
            all.record((*lat).max(1) as u64)?;
        } else {
            incomplete += 1;
        }
    }
    if incomplete > 0 && sizes.strict {
        bail!("fan-out: {incomplete} of {writes} writes did not reach every stream");
    }
    let row = vec![
        format!("{n} streams, {writes} writes"),
        format!("{:.1}", live::ms(&all, 50.0)),
        format!("{:.1}", live::ms(&all, 99.0)),
        format!("{:.1}", live::ms(&all, 100.0)),
        format!("{:.1}", live::ms(&each, 50.0)),
        format!("{:.1}", live::ms(&each, 99.0)),
        format!("{incomplete}"),
        format!("{open_secs:.2}"),
    ];
    Ok(Table {
        title: "Fan-out: one write to a bucket shared by every stream (ms)".into(),
        columns: vec![
            "load",
            "all received p50",
            "all received p99",
            "all received max",
            "per delivery p50",
            "per delivery p99",
            "writes some stream missed",
            "s to open the streams",
        ],
        rows: vec![row],
        metrics: json!({
            "streams": n, "writes": writes,
            "all_received_p50_ms": live::ms(&all, 50.0), "all_received_p99_ms": live::ms(&all, 99.0),
            "all_received_max_ms": live::ms(&all, 100.0),
            "per_delivery_p50_ms": live::ms(&each, 50.0), "per_delivery_p99_ms": live::ms(&each, 99.0),
            "incomplete_writes": incomplete, "open_seconds": open_secs,
        }),
    })
}

/// As many idle streams as feasible, up to the target: the service's RSS per stream.
async fn idle(
    http: &reqwest::Client,
    endpoint: &str,
    token: &str,
    sizes: &Sizes,
    service_pid: u32,
    fd_limit: u64,
    (writer, idle_writes): (&tokio_postgres::Client, usize),
) -> Result<Table> {
    let target = sizes.idle_streams;
    let before = live::usage(service_pid);
    let opening = Instant::now();
    let (streams, failed) = live::open_many(http, endpoint, token, target).await;
    let open_secs = opening.elapsed().as_secs_f64();
    if let Some(e) = &failed {
        eprintln!("idle: stopped at {} streams: {e:#}", streams.len());
        if sizes.strict {
            bail!(
                "idle: stopped at {} of {target} streams: {e:#}",
                streams.len()
            );
        }
    }
    // Let allocations settle, then measure while every stream is still open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = live::usage(service_pid);
    let opened = streams.len();
    if opened == 0 {
        bail!("idle: no stream opened");
    }
    let per_stream = after.rss.saturating_sub(before.rss) as f64 / opened as f64;
    // Commits none of the idle streams sees: what they still cost the service.
    let mut idle_commit_cpu_ms = None;
    if idle_writes > 0 {
        let cpu_before = live::usage(service_pid).cpu_s;
        live::write_events(writer, "elsewhere", idle_writes, Duration::from_millis(10)).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let cpu = live::usage(service_pid).cpu_s - cpu_before;
        idle_commit_cpu_ms = Some(cpu * 1000.0 / idle_writes as f64);
    }
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
    let closed = live::usage(service_pid);
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
        title: format!("Idle streams (open-file limit {fd_limit})"),
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

/// Checkpoints the service's streams prepared so far: (from the bus's ops, from storage). Zero
/// for a service without the counter.
async fn prepared_checkpoints(http: &reqwest::Client, endpoint: &str) -> (f64, f64) {
    let Ok(text) = service_metrics(http, endpoint).await else {
        return (0.0, 0.0);
    };
    let series = |source: &str| {
        metric(
            &text,
            &format!("riptide_sync_checkpoints_prepared_total{{source=\"{source}\"}}"),
        )
        .unwrap_or(0.0)
    };
    (series("memory"), series("storage"))
}

/// The service's `riptide_sync_streams_open` gauge.
async fn open_streams(http: &reqwest::Client, endpoint: &str) -> Result<f64> {
    let text = service_metrics(http, endpoint).await?;
    Ok(metric(&text, "riptide_sync_streams_open").unwrap_or(0.0))
}

/// The service's `/dashboard/data.json` (served to loopback clients when no API token is set).
async fn dashboard_data(http: &reqwest::Client, endpoint: &str) -> Result<Value> {
    Ok(http
        .get(format!("{endpoint}/dashboard/data.json"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// The service's `/metrics` text.
async fn service_metrics(http: &reqwest::Client, endpoint: &str) -> Result<String> {
    Ok(http
        .get(format!("{endpoint}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// One series of a Prometheus text exposition, by its name with labels (`name{a="b"}`).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

type Body = std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;
type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How the raw reader talks to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// `POST /sync/stream` with this `Accept` and `Accept-Encoding`.
    Http { bson: bool, encoding: &'static str },
    /// RSocket over WebSocket, BSON payloads.
    RSocket,
}

impl Transport {
    const NDJSON: Transport = Transport::Http {
        bson: false,
        encoding: "identity",
    };
    const ALL: [Transport; 7] = [
        Transport::NDJSON,
        Transport::Http {
            bson: false,
            encoding: "gzip",
        },
        Transport::Http {
            bson: false,
            encoding: "zstd",
        },
        Transport::Http {
            bson: true,
            encoding: "identity",
        },
        Transport::Http {
            bson: true,
            encoding: "gzip",
        },
        Transport::Http {
            bson: true,
            encoding: "zstd",
        },
        Transport::RSocket,
    ];

    fn label(self) -> String {
        match self {
            Transport::Http { bson, encoding } => {
                format!("{} {encoding}", if bson { "BSON" } else { "NDJSON" })
            }
            Transport::RSocket => "RSocket/WebSocket (BSON)".into(),
        }
    }
}

/// Decompresses the HTTP body as it arrives (push-style, so lines are seen as soon as they are
/// complete).
enum Decoder {
    Identity,
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl Decoder {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<()> {
        use std::io::Write;
        match self {
            Decoder::Identity => out.extend_from_slice(chunk),
            Decoder::Gzip(d) => {
                d.write_all(chunk)?;
                d.flush()?;
                out.append(d.get_mut());
            }
            Decoder::Zstd(d) => {
                d.write_all(chunk)?;
                d.flush()?;
                out.append(d.get_mut());
            }
        }
        Ok(())
    }
}

enum Stream {
    Http {
        body: Body,
        decoder: Box<Decoder>,
        bson: bool,
        buf: Vec<u8>,
        wire: u64,
    },
    RSocket {
        ws: Box<WebSocket>,
        /// PAYLOAD frames received since the last REQUEST_N.
        since_request: u32,
        wire: u64,
    },
}

/// Credit of the raw RSocket reader: REQUEST_STREAM asks for this many lines, and every
/// `CREDIT / 2` lines received it asks for that many more.
const CREDIT: u32 = 256;

async fn open_stream(
    http: &reqwest::Client,
    endpoint: &str,
    token: &str,
    transport: Transport,
) -> Result<Stream> {
    let body = json!({"raw_data": true, "client_id": "bench"});
    let Transport::Http { bson, encoding } = transport else {
        return open_rsocket(endpoint, token, &body).await;
    };
    let accept = if bson {
        "application/vnd.powersync.bson-stream"
    } else {
        "application/x-ndjson"
    };
    let resp = http
        .post(format!("{endpoint}/sync/stream"))
        .header("Authorization", format!("Token {token}"))
        .header("Accept", accept)
        .header("Accept-Encoding", encoding)
        .json(&body)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("sync stream answered {}", resp.status());
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (content_type, content_encoding) = (header("content-type"), header("content-encoding"));
    if !content_type.starts_with(accept) {
        bail!("asked for {accept}, got Content-Type {content_type:?}");
    }
    let decoder = match content_encoding.as_str() {
        "" | "identity" if encoding == "identity" => Decoder::Identity,
        "gzip" if encoding == "gzip" => Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new())),
        "zstd" if encoding == "zstd" => {
            Decoder::Zstd(zstd::stream::write::Decoder::new(Vec::new())?)
        }
        other => bail!("asked for Accept-Encoding {encoding}, got Content-Encoding {other:?}"),
    };
    Ok(Stream::Http {
        body: Box::pin(resp.bytes_stream()),
        decoder: Box::new(decoder),
        bson,
        buf: Vec::new(),
        wire: 0,
    })
}

async fn open_rsocket(endpoint: &str, token: &str, body: &Value) -> Result<Stream> {
    use futures::SinkExt;
    use riptide_protocol::rsocket::{Frame, Payload, Setup};
    use tokio_tungstenite::tungstenite::Message;
    let url = format!("{}/sync/stream", endpoint.replacen("http://", "ws://", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let setup = Frame::Setup(Setup {
        major_version: 1,
        minor_version: 0,
        keepalive_ms: 20_000,
        lifetime_ms: 90_000,
        resume_token: None,
        lease: false,
        metadata_mime: "application/json".into(),
        data_mime: "application/json".into(),
        payload: Payload {
            metadata: Some(
                json!({"token": format!("Token {token}"), "user_agent": "riptide-bench"})
                    .to_string()
                    .into(),
            ),
            data: bytes::Bytes::new(),
        },
    });
    let request = Frame::RequestStream {
        stream_id: 1,
        initial_n: CREDIT,
        follows: false,
        payload: Payload {
            metadata: Some(json!({"path": "/sync/stream"}).to_string().into()),
            data: body.to_string().into(),
        },
    };
    ws.send(Message::Binary(setup.to_bytes())).await?;
    ws.send(Message::Binary(request.to_bytes())).await?;
    Ok(Stream::RSocket {
        ws: Box::new(ws),
        since_request: 0,
        wire: 0,
    })
}

impl Stream {
    /// Bytes received: the HTTP body as sent (compressed), or the WebSocket messages' payloads.
    fn wire_bytes(&self) -> u64 {
        match self {
            Stream::Http { wire, .. } | Stream::RSocket { wire, .. } => *wire,
        }
    }

    /// The next sync line as JSON.
    async fn next_line(&mut self) -> Result<Value> {
        match self {
            Stream::Http {
                body,
                decoder,
                bson,
                buf,
                wire,
            } => loop {
                if *bson {
                    if buf.len() >= 4 {
                        let len = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
                        let len = usize::try_from(len).context("negative BSON length")?;
                        if buf.len() >= len {
                            let doc: Vec<u8> = buf.drain(..len).collect();
                            return Ok(bson::deserialize_from_slice(&doc)?);
                        }
                    }
                } else if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    return Ok(serde_json::from_slice(&line[..pos])?);
                }
                let chunk = tokio::time::timeout(Duration::from_secs(120), body.next())
                    .await
                    .context("no sync line within 120 s")?
                    .context("stream ended")??;
                *wire += chunk.len() as u64;
                decoder.push(&chunk, buf)?;
            },
            Stream::RSocket {
                ws,
                since_request,
                wire,
            } => {
                use futures::SinkExt;
                use riptide_protocol::rsocket::Frame;
                use tokio_tungstenite::tungstenite::Message;
                loop {
                    let msg = tokio::time::timeout(Duration::from_secs(120), ws.next())
                        .await
                        .context("no frame within 120 s")?
                        .context("socket closed")??;
                    let Message::Binary(bytes) = msg else {
                        continue;
                    };
                    *wire += bytes.len() as u64;
                    match Frame::decode(bytes)? {
                        Frame::Payload {
                            next: true,
                            follows: false,
                            payload,
                            ..
                        } => {
                            *since_request += 1;
                            if *since_request >= CREDIT / 2 {
                                let n = std::mem::take(since_request);
                                ws.send(Message::Binary(
                                    Frame::RequestN { stream_id: 1, n }.to_bytes(),
                                ))
                                .await?;
                            }
                            return Ok(bson::deserialize_from_slice(&payload.data)?);
                        }
                        Frame::Keepalive {
                            respond: true,
                            last_received_position,
                            ..
                        } => {
                            let reply = Frame::Keepalive {
                                respond: false,
                                last_received_position,
                                data: bytes::Bytes::new(),
                            };
                            ws.send(Message::Binary(reply.to_bytes())).await?;
                        }
                        Frame::Error { code, message, .. } => {
                            bail!("RSocket ERROR {code:#x}: {message}")
                        }
                        other => bail!("unexpected frame {other:?}"),
                    }
                }
            }
        }
    }
}

/// Reads lines up to a `checkpoint_complete` (whose checkpoint has at least `min_count` ops in
/// total, when given). Returns the ops and the wire bytes read so far.
async fn read_until_complete(s: &mut Stream, min_count: Option<i64>) -> Result<(u64, u64)> {
    let mut ops = 0u64;
    let mut count: i64 = 0;
    loop {
        let v = s.next_line().await?;
        if let Some(d) = v.pointer("/data/data").and_then(Value::as_array) {
            ops += d.len() as u64;
        }
        for key in ["/checkpoint/buckets", "/checkpoint_diff/updated_buckets"] {
            if let Some(bs) = v.pointer(key).and_then(Value::as_array) {
                count = bs
                    .iter()
                    .filter_map(|b| b["count"].as_i64())
                    .sum::<i64>()
                    .max(count);
            }
        }
        if v.get("checkpoint_complete").is_some() && min_count.is_none_or(|m| count >= m) {
            return Ok((ops, s.wire_bytes()));
        }
    }
}

/// Write → row visible in the local SQLite of `@powersync/node` clients (one node process,
/// `e2e/bench/live-latency.mjs`), per delivery.
async fn node_latency(
    endpoint: &str,
    token: &str,
    writer: &tokio_postgres::Client,
    args: &Args,
) -> Result<(Table, hdrhistogram::Histogram<u64>)> {
    use tokio::io::AsyncBufReadExt;
    let script = PathBuf::from("e2e/bench/live-latency.mjs");
    if !script.is_file() || !PathBuf::from("e2e/node_modules/@powersync/node").is_dir() {
        bail!("e2e packages not installed (cd e2e && npm ci)");
    }
    let clients = args.node_clients.max(1);
    let rate = args.node_rate.max(1);
    let writes = (rate * args.node_secs.max(1)) as usize;
    // Clients spread over processes (one JavaScript thread each).
    let procs = args.node_procs.clamp(1, clients);
    let mut children = Vec::with_capacity(procs);
    for p in 0..procs {
        let n = clients / procs + usize::from(p < clients % procs);
        let mut child = tokio::process::Command::new("node")
            .arg(&script)
            .env("ENDPOINT", endpoint)
            .env("TOKEN", token)
            .env("CLIENTS", n.to_string())
            .env("COUNT", writes.to_string())
            .env("TIMEOUT_S", (args.node_secs + 60).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().context("node pid")?;
        let lines = tokio::io::BufReader::new(child.stdout.take().context("node stdout")?).lines();
        children.push((child, pid, lines));
    }
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
    let cpu = |children: &Vec<_>| -> f64 {
        children
            .iter()
            .map(|(_, pid, _): &(_, u32, _)| live::usage(*pid).cpu_s)
            .sum()
    };
    let before = cpu(&children);
    let wrote =
        live::write_events(writer, "nodelat", writes, Duration::from_secs(1) / rate).await?;
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

async fn node_first_sync(endpoint: &str, token: &str, method: &str) -> Result<(u64, f64)> {
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

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
