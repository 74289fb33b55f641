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
//! - app latency (`scenarios/app_latency.rs`): the realtime app template in Chromium, two
//!   users, each step of a todo's path from A's Enter key to B's screen, and
//!   `app-latency.svg`, its waterfall (it runs in `--short` too; skipped only without
//!   Chromium);
//! - round trip (`scenarios/round_trip.rs`): a `@powersync/node` client's own write → the
//!   server's version back in its SQLite, per step, over HTTP and WebSocket;
//! - token refresh (`scenarios/token_refresh.rs`): a `@powersync/node` client's first token
//!   expires while writes stream in: the longest write latency;
//! - transactions: N single-row transactions committed one after another until an open stream
//!   has the checkpoint containing the last (transactions/s end to end, and the source's own
//!   commit rate);
//! - snapshot: a service of its own starting on a database whose table already holds N rows,
//!   until its first checkpoint (rows/s, the service's RSS sampled every 50 ms);
//! - for each scenario, CPU time and RSS of the service and of this process (the load);
//! - `latency.svg` next to the JSON: the live latency scenarios' percentile curves and
//!   deliveries per second;
//! - big transactions (`scenarios/big_transactions.rs`, services of their own): a bulk insert
//!   read by three bucket definitions → in a checkpoint timed from its commit; SIGKILL during a
//!   50,000-row transaction → a fresh client converged after the restart; one UPDATE of
//!   1,000,000 rows of 2 KB → in a checkpoint, with the service's RSS meanwhile;
//! - compaction (`scenarios/compaction.rs`): 1,000 rows each updated 1,000 times with a service
//!   of its own, compacted; what a fresh client downloads, and `compaction.svg`: storage over
//!   time.
//!
//! `--scenario a,b` selects scenarios; `--short` runs them all at small sizes (the smoke test
//! of `scripts/test`, which fails if a live scenario loses a delivery or a stream).
//!
//! Layout: this file holds the flags, the scenario list and the run loop; `scenarios/` one
//! module per scenario; `databases.rs`, `service.rs` (the `riptide serve` process and what it
//! reports), `usage.rs` (CPU and RSS sampling), `live.rs` (many streams and a paced writer) and
//! `checkpoint.rs` (reading a stream up to a complete checkpoint) what they share; `report.rs`
//! and `chart.rs` the tables, the JSON and the chart. Every stream is read with the test kit's
//! [`riptide_testkit::SyncClient`].

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use riptide_localpg::{Auth, Durability, LocalCluster};

mod chart;
mod checkpoint;
mod databases;
mod live;
mod report;
mod scenarios;
mod service;
mod sizes;
mod steps;
mod usage;
mod waterfall;

use databases::Databases;
use report::Report;
use riptide_testkit::TestKeys;
use scenarios::Bench;
use service::Service;
use usage::Sampler;

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
    /// Rows of the transaction the big-transactions scenario SIGKILLs the service during
    /// (short: at most 2,000). Its bulk insert has `--rows` rows (short: 2,000).
    #[arg(long, default_value_t = 50_000)]
    crash_rows: i64,
    /// 2 KB rows the big-transactions scenario updates in one statement (short: at most
    /// 5,000).
    #[arg(long, default_value_t = 1_000_000)]
    big_update_rows: i64,
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
    /// Write → row in the local SQLite of `@powersync/node` clients, and the round trip below
    /// (needs e2e/ packages).
    NodeLatency,
    /// The realtime app template in Chromium, two users: each step of a todo's path from A's
    /// Enter key to B's screen (needs e2e/ and templates/realtime/web packages, Chromium, and
    /// `realtime-app-server` next to `--riptide`).
    AppLatency,
    /// A token expiring while writes stream in to a `@powersync/node` client: the longest
    /// write latency (part of node-latency).
    TokenRefresh,
    /// A `@powersync/node` client's own write → the server's version back, over HTTP and
    /// WebSocket (part of node-latency).
    RoundTrip,
    /// One write to a bucket shared by many streams: time until all have it.
    Fanout,
    /// Many idle streams: service RSS per stream.
    Idle,
    /// Single-row transactions one after another → in a checkpoint (transactions/s).
    Transactions,
    /// A service's initial snapshot of a big table (rows/s, service RSS).
    Snapshot,
    /// 1,000 rows updated 1,000 times, compacted: what a fresh client downloads, storage
    /// size over time.
    Compaction,
    /// The latency and fan-out scenarios with their streams on the replicating process, then
    /// on two `riptide serve --role api` processes of the same config.
    ScaleOut,
    /// Storage commits as fast as 4 writers go → one `CheckpointListener` of another node
    /// (notifications/s, commit → handed-on lag).
    Notifications,
    /// One-row storage commits on a plain storage vs one fenced at the replication lease's
    /// epoch (what fencing costs a commit).
    Fencing,
    /// Big transactions: bulk insert from its commit, SIGKILL mid-transaction, RSS during a
    /// 1,000,000-row UPDATE of 2 KB rows.
    BigTransactions,
}

impl Args {
    fn wants(&self, scenario: Scenario) -> bool {
        self.scenario.contains(&Scenario::All) || self.scenario.contains(&scenario)
    }

    /// Whether the `@powersync/node` scenarios run at all (never in a short run).
    fn with_node(&self) -> bool {
        !self.no_node && !self.short
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    // Before any HTTP client: reqwest's HTTPS uses rustls' process default provider.
    riptide_pg::install_default_crypto_provider();
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
    cluster.init(Durability::Ephemeral, &Auth::Trust)?;
    let pg_port = cluster.start(None)?;
    let result = run(&args, pg_port, work.path()).await;
    let _ = cluster.stop(false);
    result
}

/// Every selected scenario, in the order that keeps them apart: the live ones first, while the
/// bulk-insert bucket is still empty; the snapshot and compaction last, each with a service of
/// its own.
async fn run(args: &Args, pg_port: u16, work: &std::path::Path) -> Result<()> {
    let sizes = sizes::Sizes::new(args);
    let fd_limit = live::raise_fd_limit();
    let databases = Databases::create(pg_port, args.async_commit_writer).await?;
    let keys = TestKeys::generate();
    let http = reqwest::Client::new();
    let mut service = Service::start_main(args, pg_port, work, &keys, &http).await?;
    let bench = Bench::new(args, &sizes, &databases, &keys, (&service, http), fd_limit);
    let sampler = Sampler::new(service.pid, work.join("pg"));
    let mut report = Report::default();

    if args.wants(Scenario::Idle) {
        let before = sampler.sample();
        report.tables.push(scenarios::idle::run(&bench).await?);
        report.measured(sampler.since("idle streams", before));
    }
    if args.wants(Scenario::Fanout) {
        let before = sampler.sample();
        report.tables.push(scenarios::fanout::run(&bench).await?);
        report.measured(sampler.since("fan-out", before));
    }
    if args.wants(Scenario::Latency) {
        let before = sampler.sample();
        let (table, run) = scenarios::latency::run(&bench).await?;
        report.tables.push(table);
        report.latency_run(run);
        report.measured(sampler.since("write → stream latency", before));
    }
    if args.wants(Scenario::ScaleOut) {
        let before = sampler.sample();
        report
            .tables
            .push(scenarios::scale_out::run(&bench, work).await?);
        report.measured(sampler.since("scale-out (2 API nodes)", before));
    }
    run_client_scenarios(args, &bench, &sampler, &mut report).await?;
    if args.wants(Scenario::Transactions) {
        let before = sampler.sample();
        report
            .tables
            .push(scenarios::transactions::run(&bench).await?);
        report.measured(sampler.since("single-row transactions", before));
    }
    if args.wants(Scenario::Replication)
        || args.wants(Scenario::InitialSync)
        || args.wants(Scenario::Node)
    {
        let before = sampler.sample();
        report.rows.push(scenarios::replication::run(&bench).await?);
        report.measured(sampler.since("replication", before));
    }
    if args.wants(Scenario::InitialSync) {
        let before = sampler.sample();
        report
            .rows
            .extend(scenarios::initial_sync::run(&bench).await?);
        report.measured(sampler.since("initial sync (all transports)", before));
    }
    if args.wants(Scenario::Node) && args.with_node() {
        let before = sampler.sample();
        report.rows.extend(scenarios::node::run(&bench).await);
        report.measured(sampler.since("@powersync/node first sync", before));
    }
    if args.wants(Scenario::Notifications) {
        report
            .tables
            .push(scenarios::notifications::run(&bench).await?);
    }
    if args.wants(Scenario::Fencing) {
        report.tables.push(scenarios::fencing::run(&bench).await?);
    }
    service.kill().await;
    run_own_service_scenarios(args, &bench, work, &mut report).await?;
    report.finish(args)
}

/// The scenarios that drive real clients (`@powersync/node`, the template in Chromium) against
/// the main service; a missing Node setup skips the Node ones with a line on stderr.
async fn run_client_scenarios(
    args: &Args,
    bench: &Bench<'_>,
    sampler: &Sampler,
    report: &mut Report,
) -> Result<()> {
    if args.wants(Scenario::NodeLatency) && args.with_node() {
        let before = sampler.sample();
        match scenarios::node_latency::run(bench).await {
            Ok((table, histogram)) => {
                report.tables.push(table);
                report.node_latency_run(args.node_clients, &histogram);
                report.measured(sampler.since("write → @powersync/node SQLite", before));
            }
            Err(e) => eprintln!("skipping @powersync/node latency scenario: {e:#}"),
        }
    }
    if (args.wants(Scenario::NodeLatency) || args.wants(Scenario::RoundTrip)) && args.with_node() {
        let before = sampler.sample();
        match scenarios::round_trip::run(bench).await {
            Ok(table) => {
                report.tables.push(table);
                report.measured(sampler.since("@powersync/node round trip", before));
            }
            Err(e) => eprintln!("skipping @powersync/node round-trip scenario: {e:#}"),
        }
    }
    if args.wants(Scenario::AppLatency) {
        let before = sampler.sample();
        if let Some(table) = scenarios::app_latency::run(bench).await? {
            report.tables.push(table);
            report.measured(sampler.since("template in Chromium", before));
        }
    }
    if (args.wants(Scenario::NodeLatency) || args.wants(Scenario::TokenRefresh)) && args.with_node()
    {
        let before = sampler.sample();
        match scenarios::token_refresh::run(bench).await {
            Ok(table) => {
                report.tables.push(table);
                report.measured(sampler.since("@powersync/node token refresh", before));
            }
            Err(e) => eprintln!("skipping @powersync/node token-refresh scenario: {e:#}"),
        }
    }
    Ok(())
}

/// The scenarios that start services of their own (after the main one is stopped).
async fn run_own_service_scenarios(
    args: &Args,
    bench: &Bench<'_>,
    work: &std::path::Path,
    report: &mut Report,
) -> Result<()> {
    if args.wants(Scenario::Snapshot) {
        let (table, used) = scenarios::snapshot::run(bench, work).await?;
        report.tables.push(table);
        report.measured(used);
    }
    if args.wants(Scenario::BigTransactions) {
        let table = scenarios::big_transactions::run(bench, work).await?;
        report.tables.push(table);
    }
    if args.wants(Scenario::Compaction) {
        let (table, used) = scenarios::compaction::run(bench, work).await?;
        report.tables.push(table);
        report.measured(used);
    }
    Ok(())
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    Ok(riptide_pg::PgConnection::from_uri(url)?.connect().await?)
}
