//! Big transactions, each part on a service of its own (compaction off):
//! 1. insert: a `big_insert_rows`-row `INSERT … SELECT` into a six-column table that three
//!    bucket definitions read → a stream's checkpoint holds all of it; rows/s timed from the
//!    statement's commit (when it returned) and from its start;
//! 2. crash: a `crash_rows`-row transaction committed, the service SIGKILLed at once (while it
//!    replicates it) and started again: seconds from the restart until a fresh client's first
//!    complete checkpoint holds every row;
//! 3. update: `big_update_rows` rows of about 2 KB (copied by the service's initial snapshot)
//!    updated by one statement: seconds from its commit until the deployment's checkpoint has
//!    its ops, and the service's RSS sampled every 50 ms from the statement's start (and its
//!    VmHWM) — the memory bound of one big transaction.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use riptide_testkit::Transport;
use serde_json::{Value, json};

use super::{Bench, bench_client};
use crate::checkpoint::{read_until_complete, request_body};
use crate::connect;
use crate::report::Table;
use crate::service::{Service, dashboard_data, free_port};
use crate::usage::usage;

const WIDE_RULES: &str = "bucket_definitions:
  global:
    data:
      - SELECT * FROM wide
  by_owner:
    parameters: SELECT token_parameters.owner AS owner
    data:
      - SELECT * FROM wide WHERE owner = bucket.owner
  labels:
    data:
      - SELECT id, label FROM wide
";

const FAT_RULES: &str = "bucket_definitions:
  fat:
    data:
      - SELECT * FROM fat
";

/// How long any one wait of this scenario may take.
const WAIT: Duration = Duration::from_secs(900);

pub async fn run(bench: &Bench<'_>, work: &Path) -> Result<Table> {
    let pg_port = bench.databases.pg_port;
    let source_url = riptide_localpg::url(pg_port, "bench_bigtx_source");
    let admin = connect(&riptide_localpg::url(pg_port, "postgres")).await?;
    admin
        .batch_execute("CREATE DATABASE bench_bigtx_source")
        .await?;
    let source = connect(&source_url).await?;
    source
        .batch_execute(
            "CREATE TABLE wide (id text PRIMARY KEY, owner text NOT NULL, n bigint NOT NULL, \
             label text NOT NULL, note text, created_at timestamptz NOT NULL DEFAULT now());
             CREATE TABLE fat (id text PRIMARY KEY, n bigint NOT NULL, body text NOT NULL);
             CREATE PUBLICATION powersync FOR ALL TABLES;",
        )
        .await?;

    let mut rows = Vec::new();
    let mut service = WideService::start(bench, work, &source_url, "wide").await?;
    rows.push(insert(bench, &service, &source).await?);
    rows.push(crash(bench, &mut service, &source).await?);
    service.service.kill().await;
    rows.push(update(bench, work, &source_url, &source).await?);

    Ok(Table {
        title: "Big transactions (own services)".into(),
        columns: vec!["measure", "rows", "seconds", "rows/s", "note"],
        rows: rows.iter().map(Part::cells).collect(),
        metrics: json!(rows.iter().map(Part::json).collect::<Vec<_>>()),
    })
}

struct Part {
    measure: &'static str,
    rows: i64,
    seconds: f64,
    note: String,
    extra: Value,
}

impl Part {
    fn cells(&self) -> Vec<String> {
        vec![
            self.measure.to_string(),
            self.rows.to_string(),
            format!("{:.2}", self.seconds),
            format!("{:.0}", self.rows as f64 / self.seconds),
            self.note.clone(),
        ]
    }

    fn json(&self) -> Value {
        json!({
            "measure": self.measure, "rows": self.rows, "seconds": self.seconds,
            "rows_per_s": self.rows as f64 / self.seconds, "details": self.extra,
        })
    }
}

/// A service on `bench_bigtx_source` with `rules`, its storage database `storage_db` (created).
fn service_config(
    bench: &Bench<'_>,
    source_url: &str,
    storage_db: &str,
    rules: &str,
    port: u16,
) -> Value {
    let storage_url = riptide_localpg::url(bench.databases.pg_port, storage_db);
    json!({
        "replication": {"connections": [{"type": "postgresql", "uri": source_url, "sslmode": "disable"}]},
        "storage": {"type": "postgresql", "uri": storage_url, "sslmode": "disable"},
        "port": port,
        "sync_config": {"content": rules},
        "client_auth": {"jwks": bench.keys.jwks(), "audience": [bench.keys.audience]},
        "compaction": {"enabled": false},
        "system": {"logging": {"level": "warn"}},
    })
}

struct WideService {
    service: Service,
    config: Value,
    config_path: std::path::PathBuf,
    http: reqwest::Client,
}

impl WideService {
    async fn start(
        bench: &Bench<'_>,
        work: &Path,
        source_url: &str,
        name: &str,
    ) -> Result<WideService> {
        let storage_db = format!("bench_bigtx_{name}_storage");
        let admin = connect(&riptide_localpg::url(bench.databases.pg_port, "postgres")).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {storage_db}"))
            .await?;
        let config = service_config(bench, source_url, &storage_db, WIDE_RULES, free_port()?);
        let config_path = work.join(format!("bigtx-{name}.yaml"));
        let service = Service::spawn(&bench.args.riptide, &config_path, &config)
            .with_context(|| format!("cannot start {}", bench.args.riptide.display()))?;
        let http = reqwest::Client::new();
        // The table is empty: any checkpoint.
        checkpoint_op_id(&http, &service.endpoint, -1, Instant::now() + WAIT).await?;
        Ok(WideService {
            service,
            config,
            config_path,
            http,
        })
    }

    fn client(&self, bench: &Bench<'_>) -> riptide_testkit::SyncClient {
        let token = bench
            .keys
            .token("bench", 3600, json!({"parameters": {"owner": "o1"}}));
        bench_client(&self.service.endpoint, token, &self.http)
    }
}

/// Waits until the deployment's checkpoint op id is above `above` (polling the dashboard every
/// 20 ms); returns it.
async fn checkpoint_op_id(
    http: &reqwest::Client,
    endpoint: &str,
    above: i64,
    deadline: Instant,
) -> Result<i64> {
    loop {
        if let Ok(data) = dashboard_data(http, endpoint).await {
            let op_id = data
                .pointer("/deployment/checkpoint/op_id")
                .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
            if let Some(op_id) = op_id.filter(|id| *id > above) {
                return Ok(op_id);
            }
        }
        if Instant::now() > deadline {
            bail!("big transactions: no checkpoint above op {above} in time");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn insert_sql(prefix: &str, rows: i64) -> String {
    format!(
        "INSERT INTO wide (id, owner, n, label, note) SELECT '{prefix}-' || g, 'o1', g, \
         'label ' || g, CASE WHEN g % 2 = 0 THEN 'note ' || g END \
         FROM generate_series(1, {rows}) g"
    )
}

/// Part 1: the bulk insert → in a checkpoint (3 ops a row).
async fn insert(
    bench: &Bench<'_>,
    service: &WideService,
    source: &tokio_postgres::Client,
) -> Result<Part> {
    let rows = bench.sizes.big_insert_rows;
    let mut stream = service
        .client(bench)
        .open(Transport::NDJSON, &request_body())
        .await?;
    read_until_complete(&mut stream, None).await?;
    let started = Instant::now();
    source.batch_execute(&insert_sql("ins", rows)).await?;
    let committed = started.elapsed();
    read_until_complete(&mut stream, Some(3 * rows)).await?;
    let total = started.elapsed();
    let from_commit = (total - committed).as_secs_f64();
    Ok(Part {
        measure: "INSERT … SELECT → in a checkpoint (from its commit)",
        rows,
        seconds: from_commit,
        note: format!(
            "statement {:.2} s; from its start {:.2} s, {:.0} rows/s",
            committed.as_secs_f64(),
            total.as_secs_f64(),
            rows as f64 / total.as_secs_f64()
        ),
        extra: json!({"statement_seconds": committed.as_secs_f64(), "from_start_seconds": total.as_secs_f64()}),
    })
}

/// Part 2: SIGKILL right after a big transaction's commit, restart, a fresh client converged.
async fn crash(
    bench: &Bench<'_>,
    service: &mut WideService,
    source: &tokio_postgres::Client,
) -> Result<Part> {
    let rows = bench.sizes.crash_rows;
    let before: i64 = source
        .query_one("SELECT count(*) FROM wide", &[])
        .await?
        .get(0);
    source
        .batch_execute(&format!("BEGIN; {}; COMMIT;", insert_sql("crash", rows)))
        .await?;
    service.service.kill().await;
    let restarted = Instant::now();
    service.service = Service::spawn(&bench.args.riptide, &service.config_path, &service.config)?;
    let expected = 3 * (before + rows);
    let deadline = restarted + WAIT;
    // A fresh client each try, until its first complete checkpoint has every row.
    loop {
        if Instant::now() > deadline {
            bail!("crash: no client converged in time");
        }
        let opened = service
            .client(bench)
            .open(Transport::NDJSON, &request_body())
            .await;
        if let Ok(mut stream) = opened
            && let Ok((ops, _)) = read_until_complete(&mut stream, None).await
            && i64::try_from(ops).unwrap_or(0) >= expected
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = restarted.elapsed().as_secs_f64();
    Ok(Part {
        measure: "SIGKILL during the transaction → a fresh client converged (from the restart)",
        rows,
        seconds,
        note: "killed right after the commit returned".into(),
        extra: json!({"converged_seconds": seconds}),
    })
}

/// Part 3: one UPDATE of every 2 KB row of `fat`, on its own service: time from the commit and
/// the service's RSS.
async fn update(
    bench: &Bench<'_>,
    work: &Path,
    source_url: &str,
    source: &tokio_postgres::Client,
) -> Result<Part> {
    let rows = bench.sizes.big_update_rows;
    source
        .execute(
            "INSERT INTO fat (id, n, body) SELECT 'fat-' || g, g, repeat(md5(g::text), 60) \
             FROM generate_series(1, $1::bigint) g",
            &[&rows],
        )
        .await?;
    source.batch_execute("VACUUM ANALYZE fat").await?;
    let admin = connect(&riptide_localpg::url(bench.databases.pg_port, "postgres")).await?;
    admin
        .batch_execute("CREATE DATABASE bench_bigtx_fat_storage")
        .await?;
    let config = service_config(
        bench,
        source_url,
        "bench_bigtx_fat_storage",
        FAT_RULES,
        free_port()?,
    );
    let mut service = Service::spawn(&bench.args.riptide, &work.join("bigtx-fat.yaml"), &config)?;
    let http = reqwest::Client::new();
    let snapshot_op = checkpoint_op_id(&http, &service.endpoint, 0, Instant::now() + WAIT).await?;
    let rss_before = usage(service.pid).rss;

    let started = Instant::now();
    let mut statement = Some({
        let url = source_url.to_owned();
        tokio::spawn(async move {
            let client = connect(&url).await?;
            client
                .batch_execute("UPDATE fat SET n = n + 1, body = upper(body)")
                .await?;
            anyhow::Ok(Instant::now())
        })
    });
    let target = snapshot_op + rows - 1;
    let (mut max_rss, mut committed) = (rss_before, None);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let deadline = started + WAIT;
    loop {
        tick.tick().await;
        max_rss = max_rss.max(usage(service.pid).rss);
        if let Some(status) = service.exited()? {
            bail!("update: the service exited ({status})");
        }
        if let Some(task) = statement.take_if(|t| t.is_finished()) {
            committed = Some(task.await??);
            continue;
        }
        if Instant::now() > deadline {
            bail!("update: not in a checkpoint in time");
        }
        if committed.is_some()
            && let Ok(data) = dashboard_data(&http, &service.endpoint).await
            && data
                .pointer("/deployment/checkpoint/op_id")
                .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
                .is_some_and(|op| op >= target)
        {
            break;
        }
    }
    let done = Instant::now();
    let committed = committed.context("update committed")?;
    let used = usage(service.pid);
    service.kill().await;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let from_commit = done.duration_since(committed).as_secs_f64();
    Ok(Part {
        measure: "UPDATE of 2 KB rows → in a checkpoint (from its commit)",
        rows,
        seconds: from_commit,
        note: format!(
            "statement {:.2} s; service RSS max {:.0} MiB (50 ms samples; {:.0} before), VmHWM {:.0} MiB",
            committed.duration_since(started).as_secs_f64(),
            mib(max_rss),
            mib(rss_before),
            mib(used.peak_rss)
        ),
        extra: json!({
            "statement_seconds": committed.duration_since(started).as_secs_f64(),
            "max_rss_bytes": max_rss, "rss_before_bytes": rss_before,
            "peak_rss_bytes": used.peak_rss,
        }),
    })
}
