//! `riptide-bench`: measures the sync service as a user would meet it, in one run on one machine,
//! and prints a table (and writes JSON).
//!
//! It starts a private Postgres cluster, a source and a storage database, and `riptide serve`
//! as a separate process (the release binary), then runs:
//! - replication: a 100,000-row `INSERT … SELECT generate_series` until an open sync stream has
//!   received the checkpoint that contains it (rows/s);
//! - initial sync: a raw protocol reader downloading those ops from scratch up to
//!   `checkpoint_complete`, over NDJSON (ops/s and bytes);
//! - `@powersync/node` first sync of the same rows into a fresh database (if `e2e/` has its
//!   packages installed).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use riptide_localpg::{Durability, LocalCluster};
use riptide_testkit::TestKeys;
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
    /// Skip the @powersync/node scenario.
    #[arg(long)]
    no_node: bool,
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

async fn run(args: &Args, pg_port: u16, work: &std::path::Path) -> Result<()> {
    let admin = connect(&riptide_localpg::url(pg_port, "postgres")).await?;
    admin.batch_execute("CREATE DATABASE bench_source").await?;
    admin.batch_execute("CREATE DATABASE bench_storage").await?;
    let source = connect(&riptide_localpg::url(pg_port, "bench_source")).await?;
    source
        .batch_execute(
            "CREATE TABLE items (id text PRIMARY KEY, n bigint NOT NULL, label text NOT NULL, \
             created_at timestamptz NOT NULL DEFAULT now());
             CREATE PUBLICATION powersync FOR ALL TABLES;",
        )
        .await?;

    let keys = TestKeys::generate();
    let http_port = free_port()?;
    let config = json!({
        "replication": {"connections": [{"type": "postgresql", "uri": riptide_localpg::url(pg_port, "bench_source"), "sslmode": "disable"}]},
        "storage": {"type": "postgresql", "uri": riptide_localpg::url(pg_port, "bench_storage")},
        "port": http_port,
        "sync_config": {"content": "bucket_definitions:\n  global:\n    data:\n      - SELECT * FROM items\n"},
        "client_auth": {"jwks": keys.jwks(), "audience": [keys.audience]},
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
    let token = keys.token("bench", 3600, json!({}));
    let mut rows = Vec::new();

    // Replication: an open stream sees the checkpoint containing the bulk insert.
    let mut live = open_stream(&http, &endpoint, &token).await?;
    read_until_complete(&mut live, None).await?;
    let started = Instant::now();
    source
        .execute(
            "INSERT INTO items (id, n, label) SELECT 'item-' || g, g, 'label ' || g \
             FROM generate_series(1, $1::bigint) g",
            &[&args.rows],
        )
        .await?;
    let committed = started.elapsed();
    read_until_complete(&mut live, Some(args.rows)).await?;
    let total = started.elapsed();
    drop(live);
    let secs = total.as_secs_f64();
    rows.push(Row {
        scenario: "replication: bulk INSERT → in a checkpoint".into(),
        amount: format!("{} rows", args.rows),
        seconds: secs,
        rate: format!("{:.0} rows/s", args.rows as f64 / secs),
        note: format!("INSERT itself took {:.2} s", committed.as_secs_f64()),
    });

    // Initial sync, raw NDJSON reader.
    let started = Instant::now();
    let mut stream = open_stream(&http, &endpoint, &token).await?;
    let (ops, bytes) = read_until_complete(&mut stream, Some(args.rows)).await?;
    let secs = started.elapsed().as_secs_f64();
    rows.push(Row {
        scenario: "initial sync, raw reader, NDJSON".into(),
        amount: format!("{ops} ops"),
        seconds: secs,
        rate: format!("{:.0} ops/s", ops as f64 / secs),
        note: format!("{:.1} MB on the wire", bytes as f64 / 1e6),
    });

    // The official client.
    if !args.no_node {
        match node_first_sync(&endpoint, &token).await {
            Ok((n, secs)) => rows.push(Row {
                scenario: "@powersync/node first sync (fresh database)".into(),
                amount: format!("{n} rows"),
                seconds: secs,
                rate: format!("{:.0} rows/s", n as f64 / secs),
                note: "includes the client's SQLite apply".into(),
            }),
            Err(e) => eprintln!("skipping @powersync/node scenario: {e:#}"),
        }
    }
    let _ = service.kill().await;

    println!("\n| scenario | amount | seconds | rate | note |\n|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.2} | {} | {} |",
            r.scenario, r.amount, r.seconds, r.rate, r.note
        );
    }
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let json: Vec<Value> = rows
        .iter()
        .map(|r| json!({"scenario": r.scenario, "amount": r.amount, "seconds": r.seconds, "rate": r.rate, "note": r.note}))
        .collect();
    std::fs::write(&args.json, serde_json::to_string_pretty(&json)?)?;
    println!("\nresults written to {}", args.json.display());
    Ok(())
}

type Body = std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

struct Stream {
    body: Body,
    buf: Vec<u8>,
}

async fn open_stream(http: &reqwest::Client, endpoint: &str, token: &str) -> Result<Stream> {
    let resp = http
        .post(format!("{endpoint}/sync/stream"))
        .header("Authorization", format!("Token {token}"))
        .header("Accept", "application/x-ndjson")
        .json(&json!({"raw_data": true, "client_id": "bench"}))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("sync stream answered {}", resp.status());
    }
    Ok(Stream {
        body: Box::pin(resp.bytes_stream()),
        buf: Vec::new(),
    })
}

/// Reads lines up to a `checkpoint_complete` (whose checkpoint has at least `min_count` ops in
/// total, when given). Returns the ops and bytes read.
async fn read_until_complete(s: &mut Stream, min_count: Option<i64>) -> Result<(u64, u64)> {
    let mut ops = 0u64;
    let mut bytes = 0u64;
    let mut count: i64 = 0;
    loop {
        while let Some(pos) = s.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = s.buf.drain(..=pos).collect();
            let v: Value = serde_json::from_slice(&line[..pos])?;
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
                return Ok((ops, bytes));
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(120), s.body.next())
            .await
            .context("no sync line within 120 s")?
            .context("stream ended")??;
        bytes += chunk.len() as u64;
        s.buf.extend_from_slice(&chunk);
    }
}

async fn node_first_sync(endpoint: &str, token: &str) -> Result<(u64, f64)> {
    let script = PathBuf::from("e2e/bench/first-sync.mjs");
    if !script.is_file() || !PathBuf::from("e2e/node_modules/@powersync/node").is_dir() {
        bail!("e2e packages not installed (cd e2e && npm ci)");
    }
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .env("ENDPOINT", endpoint)
        .env("TOKEN", token)
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
