//! The `compaction` scenario (issue 12's acceptance): a service of its own, with automatic
//! compaction on (threshold 1,000 superseded ops, checked every 5 s), replicates 1,000 rows that
//! are each updated 1,000 times (`UPDATE churn SET n = n + 1`, one statement per round), so the
//! bucket receives 1,000,000 ops. Storage is sampled every 250 ms for the chart
//! (`compaction.svg` next to the JSON): ops written and ops stored in the bucket, and the size
//! of `riptide.bucket_data` (table and indexes). After the last round has replicated, a
//! compaction is forced (`POST /api/compact/v1/run`), then:
//! - a fresh raw reader downloads the bucket from scratch: at most 1,100 ops for the 1,000 rows;
//! - the bucket's op rows (`pg_column_size`) against the rows' live data (the JSON of their
//!   current PUTs): at most twice;
//! - `bucket_data` on disk before and after a plain `VACUUM` (which makes the space reusable;
//!   the file itself only shrinks by its empty tail).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use riptide_testkit::{TestKeys, Transport};
use serde_json::{Value, json};

use super::{Bench, bench_client};
use crate::chart;
use crate::checkpoint::{read_until_complete, request_body};
use crate::connect;
use crate::report::Table;
use crate::service::{Service, free_port, metric_value};
use crate::usage::{Resources, Usage, cluster_cpu_s, usage};

/// Rows, and updates of each, at full size and with `--short`.
const FULL: (i64, i64) = (1_000, 1_000);
const SHORT: (i64, i64) = (100, 30);
/// How often storage is sampled for the chart.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
const ADMIN_TOKEN: &str = "bench-admin";

/// One storage sample.
#[derive(Debug, Clone, Copy)]
struct Sample {
    second: f64,
    /// The deployment's op-id high-water mark minus the snapshot's start: ops written.
    written: i64,
    /// Ops stored in the bucket now.
    stored: i64,
    /// `pg_total_relation_size('riptide.bucket_data')`.
    table_bytes: i64,
}

pub async fn run(bench: &Bench<'_>, work: &Path) -> Result<(Table, Resources)> {
    let args = bench.args;
    let (rows, updates) = if args.short { SHORT } else { FULL };
    let pg_dir = work.join("pg");
    let bench_before = usage(std::process::id());
    let postgres_before = cluster_cpu_s(&pg_dir);
    let mut setup = start(bench, work, rows).await?;
    let measured = measure(&setup, rows, updates).await?;
    let service_used = usage(setup.service.pid);
    let used = Resources {
        scenario: "compaction (own service)".into(),
        service: (Usage::default(), service_used),
        bench: (bench_before, usage(std::process::id())),
        postgres: (postgres_before, cluster_cpu_s(&pg_dir)),
    };
    setup.service.kill().await;

    let met = measured.downloaded <= measured.ops_limit() as u64 && measured.ratio() <= 2.0;
    if args.short && !met {
        bail!(
            "compaction: a fresh client downloaded {} ops (limit {}), storage/live {:.2} \
             (limit 2)",
            measured.downloaded,
            measured.ops_limit(),
            measured.ratio()
        );
    }
    write_chart(&args.json, &measured.samples, rows, updates)?;
    Ok((report(&measured, met), used))
}

/// The scenario's service and databases.
struct Setup {
    service: Service,
    source: tokio_postgres::Client,
    storage_url: String,
    keys: TestKeys,
}

/// Creates the databases and the table of `rows` rows, and starts the service on them.
async fn start(bench: &Bench<'_>, work: &Path, rows: i64) -> Result<Setup> {
    let (pg_port, keys) = (bench.databases.pg_port, bench.keys);
    let admin = connect(&riptide_localpg::url(pg_port, "postgres")).await?;
    for db in ["bench_compaction_source", "bench_compaction_storage"] {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await?;
    }
    let source_url = riptide_localpg::url(pg_port, "bench_compaction_source");
    let storage_url = riptide_localpg::url(pg_port, "bench_compaction_storage");
    let source = connect(&source_url).await?;
    // About 250 bytes of JSON per row as synced.
    source
        .batch_execute(
            "CREATE TABLE churn (id text PRIMARY KEY, n bigint NOT NULL, payload text NOT NULL);
             CREATE PUBLICATION powersync FOR ALL TABLES;",
        )
        .await?;
    source
        .execute(
            "INSERT INTO churn (id, n, payload) SELECT 'row-' || g, 0, \
             repeat(md5(g::text), 6) FROM generate_series(1, $1::bigint) g",
            &[&rows],
        )
        .await?;
    let http_port = free_port()?;
    let config = json!({
        "replication": {"connections": [{"type": "postgresql", "uri": source_url, "sslmode": "disable"}]},
        "storage": {"type": "postgresql", "uri": storage_url, "sslmode": "disable"},
        "port": http_port,
        "sync_config": {"content": "bucket_definitions:\n  churn:\n    data:\n      - SELECT * FROM churn\n"},
        "client_auth": {"jwks": keys.jwks(), "audience": [keys.audience]},
        "api": {"tokens": [ADMIN_TOKEN]},
        "compaction": {"enabled": true, "threshold": 1000, "interval_seconds": 5},
        "system": {"logging": {"level": "warn"}},
    });
    let riptide = &bench.args.riptide;
    let service = Service::spawn(riptide, &work.join("compaction-config.yaml"), &config)
        .with_context(|| format!("cannot start {}", riptide.display()))?;
    Ok(Setup {
        service,
        source,
        storage_url,
        keys: keys.clone(),
    })
}

/// What the scenario measured.
struct Measured {
    rows: i64,
    updates: i64,
    churn_secs: f64,
    replicated_secs: f64,
    before: Sizes,
    after: Sizes,
    vacuumed: Sizes,
    /// The answer of `POST /api/compact/v1/run`.
    forced: Value,
    samples: Vec<Sample>,
    /// Ops a fresh client downloaded, and the bytes on the wire.
    downloaded: u64,
    wire: u64,
    /// `riptide_compaction_runs_total` and `riptide_compaction_ops_moved_total` at the end.
    runs: f64,
    moved: f64,
}

impl Measured {
    fn total_ops(&self) -> i64 {
        self.rows * (self.updates + 1)
    }

    fn ops_limit(&self) -> i64 {
        self.rows + self.rows / 10
    }

    fn ratio(&self) -> f64 {
        self.after.op_bytes as f64 / self.after.live_bytes.max(1) as f64
    }
}

/// Churns the rows while sampling storage, forces a compaction, then has a fresh client read
/// the bucket.
async fn measure(setup: &Setup, rows: i64, updates: i64) -> Result<Measured> {
    let http = reqwest::Client::new();
    let storage = connect(&setup.storage_url).await?;
    // The snapshot is in once the deployment serves a checkpoint with every row.
    let base = wait_for_ops(&storage, None, rows, Duration::from_secs(120)).await? - rows;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample(
        connect(&setup.storage_url).await?,
        base,
        started,
        stop.clone(),
    ));
    for _ in 0..updates {
        setup
            .source
            .batch_execute("UPDATE churn SET n = n + 1")
            .await?;
    }
    let churn_secs = started.elapsed().as_secs_f64();
    let total = rows * (updates + 1);
    wait_for_ops(&storage, Some(base), total, Duration::from_secs(1800)).await?;
    let replicated_secs = started.elapsed().as_secs_f64();
    let before = bucket_sizes(&storage).await?;

    // Compact now, as `riptide compact` or an operator would.
    let endpoint = &setup.service.endpoint;
    let answer: Value = http
        .post(format!("{endpoint}/api/compact/v1/run"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let after = bucket_sizes(&storage).await?;
    storage.batch_execute("VACUUM riptide.bucket_data").await?;
    let vacuumed = bucket_sizes(&storage).await?;
    // A few samples after the compaction (pacing the chart's tail), then stop.
    tokio::time::sleep(SAMPLE_EVERY * 4).await;
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await??;

    // A fresh client: every op it downloads for the bucket.
    let token = setup.keys.token("bench", 3600, json!({}));
    let mut stream = bench_client(endpoint, token, &http)
        .open(Transport::NDJSON, &request_body())
        .await?;
    let (downloaded, wire) = read_until_complete(&mut stream, None).await?;
    drop(stream);
    Ok(Measured {
        rows,
        updates,
        churn_secs,
        replicated_secs,
        before,
        after,
        vacuumed,
        forced: answer["data"].clone(),
        samples,
        downloaded,
        wire,
        runs: metric_value(&http, endpoint, "riptide_compaction_runs_total").await?,
        moved: metric_value(&http, endpoint, "riptide_compaction_ops_moved_total").await?,
    })
}

fn report(m: &Measured, met: bool) -> Table {
    let mib = |b: i64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
    let peak_stored = m.samples.iter().map(|s| s.stored).max().unwrap_or(0);
    let not_met = |ok: bool| if ok { "" } else { " — NOT MET" };
    let (ratio, limit) = (m.ratio(), m.ops_limit());
    Table {
        title: format!(
            "Compaction: {} rows each updated {} times ({} ops), automatic compaction every \
             5 s, then one forced",
            m.rows,
            m.updates,
            m.total_ops()
        ),
        columns: vec!["measure", "value", "note"],
        rows: vec![
            vec![
                "fresh client downloads".into(),
                format!("{} ops", m.downloaded),
                format!(
                    "limit {limit}; {:.2} MB on the wire{}",
                    m.wire as f64 / 1e6,
                    not_met(m.downloaded <= limit as u64)
                ),
            ],
            vec![
                "bucket op rows / live row data".into(),
                format!("{ratio:.2}"),
                format!(
                    "{} of op rows for {} of JSON in the live PUTs; limit 2{}",
                    bytes(m.after.op_bytes),
                    bytes(m.after.live_bytes),
                    not_met(ratio <= 2.0)
                ),
            ],
            vec![
                "ops stored in the bucket".into(),
                format!("{} → {}", m.before.ops, m.after.ops),
                format!("before / after the forced compaction; peak sampled {peak_stored}"),
            ],
            vec![
                "forced compaction".into(),
                format!("{} ms", m.forced["ms"]),
                format!(
                    "{} ops moved, {} removed, {} reclaimed",
                    m.forced["ops_moved"],
                    m.forced["ops_removed"],
                    bytes(m.forced["bytes_reclaimed"].as_i64().unwrap_or(0))
                ),
            ],
            vec![
                "compaction runs".into(),
                format!("{}", m.runs),
                format!("{} ops moved in all (background and forced)", m.moved),
            ],
            vec![
                "bucket_data on disk, MiB".into(),
                format!(
                    "{} → {} → {}",
                    mib(m.before.table_bytes),
                    mib(m.after.table_bytes),
                    mib(m.vacuumed.table_bytes)
                ),
                "table + indexes: before, after compaction, after VACUUM (space reusable)".into(),
            ],
            vec![
                "churn".into(),
                format!("{:.1} s", m.churn_secs),
                format!("UPDATE rounds; replicated after {:.1} s", m.replicated_secs),
            ],
        ],
        metrics: json!({
            "rows": m.rows, "updates": m.updates, "ops_written": m.total_ops(),
            "fresh_client_ops": m.downloaded, "fresh_client_wire_bytes": m.wire,
            "ops_limit": limit, "op_bytes": m.after.op_bytes, "live_bytes": m.after.live_bytes,
            "storage_to_live": ratio, "ops_before": m.before.ops, "ops_after": m.after.ops,
            "peak_ops_stored": peak_stored,
            "table_bytes_before": m.before.table_bytes, "table_bytes_after": m.after.table_bytes,
            "table_bytes_vacuumed": m.vacuumed.table_bytes, "forced": m.forced,
            "compaction_runs": m.runs, "ops_moved_all_runs": m.moved,
            "churn_seconds": m.churn_secs, "replicated_seconds": m.replicated_secs, "met": met,
            "samples": m.samples.iter().map(|s| json!([s.second, s.written, s.stored, s.table_bytes])).collect::<Vec<_>>(),
        }),
    }
}

fn bytes(b: i64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

/// Waits until the active deployment's checkpoint holds `ops` ops after `base` (`None`: any
/// base; returns the checkpoint's op id).
async fn wait_for_ops(
    storage: &tokio_postgres::Client,
    base: Option<i64>,
    ops: i64,
    timeout: Duration,
) -> Result<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        let row = storage
            .query_opt(
                "SELECT d.last_op_id, s.op_count FROM riptide.deployments d \
                 JOIN riptide.bucket_state s ON s.deployment_id = d.id \
                 WHERE d.state = 'ACTIVE' AND d.snapshot_done",
                &[],
            )
            .await
            // The schema may not exist yet while the service starts.
            .unwrap_or(None);
        if let Some(row) = row {
            let last: i64 = row.get(0);
            let reached = match base {
                Some(base) => last - base >= ops,
                None => row.get::<_, i64>(1) >= ops,
            };
            if reached {
                return Ok(last);
            }
        }
        if Instant::now() > deadline {
            bail!("compaction: {ops} ops not replicated within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sizes of the bucket's storage.
struct Sizes {
    ops: i64,
    /// `pg_column_size` of the bucket's op rows.
    op_bytes: i64,
    /// Bytes of the `data` of its live PUTs (the rows as synced).
    live_bytes: i64,
    table_bytes: i64,
}

async fn bucket_sizes(storage: &tokio_postgres::Client) -> Result<Sizes> {
    let row = storage
        .query_one(
            "SELECT count(*), COALESCE(sum(pg_column_size(d.*)), 0)::int8, \
                    COALESCE(sum(octet_length(d.data)) FILTER (WHERE d.op = 'PUT'), 0)::int8, \
                    pg_total_relation_size('riptide.bucket_data') \
             FROM riptide.bucket_data d",
            &[],
        )
        .await?;
    Ok(Sizes {
        ops: row.get(0),
        op_bytes: row.get(1),
        live_bytes: row.get(2),
        table_bytes: row.get(3),
    })
}

/// Samples storage every [`SAMPLE_EVERY`] until `stop`.
async fn sample(
    storage: tokio_postgres::Client,
    base: i64,
    started: Instant,
    stop: Arc<AtomicBool>,
) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let row = storage
            .query_one(
                "SELECT d.last_op_id, s.op_count, pg_total_relation_size('riptide.bucket_data') \
                 FROM riptide.deployments d \
                 JOIN riptide.bucket_state s ON s.deployment_id = d.id \
                 WHERE d.state = 'ACTIVE'",
                &[],
            )
            .await?;
        out.push(Sample {
            second: started.elapsed().as_secs_f64(),
            written: row.get::<_, i64>(0) - base,
            stored: row.get(1),
            table_bytes: row.get(2),
        });
    }
    Ok(out)
}

fn write_chart(json: &Path, samples: &[Sample], rows: i64, updates: i64) -> Result<()> {
    let thousands = |f: fn(&Sample) -> i64| -> Vec<(f64, f64)> {
        samples
            .iter()
            .map(|s| (s.second, f(s) as f64 / 1000.0))
            .collect()
    };
    let ops = [
        chart::Series {
            label: "ops written".into(),
            points: thousands(|s| s.written),
        },
        chart::Series {
            label: "ops stored in the bucket".into(),
            points: thousands(|s| s.stored),
        },
    ];
    let size = [chart::Series {
        label: "bucket_data, table + indexes".into(),
        points: samples
            .iter()
            .map(|s| (s.second, s.table_bytes as f64 / (1024.0 * 1024.0)))
            .collect(),
    }];
    let svg = chart::over_time_svg(
        &format!("Bucket storage while {rows} rows are each updated {updates} times"),
        &chart::Side {
            title: "Ops",
            y_label: "thousands",
            series: &ops,
        },
        &chart::Side {
            title: "Size on disk",
            y_label: "MiB",
            series: &size,
        },
    );
    let path = json.parent().map_or_else(
        || PathBuf::from("compaction.svg"),
        |d| d.join("compaction.svg"),
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, svg)?;
    println!("compaction chart written to {}", path.display());
    Ok(())
}
