//! Notifications across processes: what one `CheckpointListener` sustains. Writers (one per
//! deployment, in parallel) commit one-row storage batches as fast as Postgres takes them,
//! on a storage database of their own; a listener of another "node" (another `PgStorage`)
//! hands every commit on. Reports commits/s, notifications/s handed on, and the lag from the
//! database clock at each commit to the listener handing it on (one machine: no clock skew).
//! Then a burst: one transaction sends 20,000 notifications at once (as a storage restart's
//! backlog or a flood of commits would arrive), and how fast the listener hands them on; its lag
//! includes the time the sending transaction took.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use riptide_protocol::OpId;
use riptide_storage::{
    BatchOperation, BucketRow, BucketStorage, CheckpointEvent, CheckpointListener, DeploymentId,
    DeploymentState, NotificationSink, PgStorage, RowChange, RowOperation,
};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Bench;
use crate::report::Table;

/// Deployments written in parallel (one batch per deployment at a time).
const WRITERS: usize = 4;

/// Counts what the listener hands on and the lag of each.
struct Counting {
    received: AtomicU64,
    lag_us: Mutex<Histogram<u64>>,
    /// When the first and the last event since the last [`take_lag`] were handed on.
    span: Mutex<Option<(Instant, Instant)>>,
    listening: Notify,
}

impl NotificationSink for Counting {
    fn checkpoint(&self, _: CheckpointEvent, sent_at: Option<SystemTime>) {
        if let Some(lag) = sent_at.and_then(|t| SystemTime::now().duration_since(t).ok()) {
            let us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
            if let Ok(mut h) = self.lag_us.lock() {
                h.saturating_record(us);
            }
        }
        if let Ok(mut span) = self.span.lock() {
            let now = Instant::now();
            *span = Some(span.map_or((now, now), |(first, _)| (first, now)));
        }
        self.received.fetch_add(1, Ordering::Relaxed);
    }
    fn write_checkpoint(&self, _: String, _: String, _: OpId, _: Option<SystemTime>) {}
    fn deployment(&self, _: DeploymentId, _: DeploymentState, _: Option<SystemTime>) {}
    fn listening(&self) {
        self.listening.notify_one();
    }
}

fn one_row(writer: usize, n: u64) -> BatchOperation {
    BatchOperation::Row(RowOperation {
        source_table: "public.items".into(),
        key: format!("{writer}:{}", n % 100).into_bytes(),
        change: RowChange::Upsert {
            row: n.to_le_bytes().to_vec(),
            buckets: vec![BucketRow {
                bucket: format!("b[\"{writer}\"]"),
                table: "items".into(),
                id: format!("{}", n % 100),
                data: format!(r#"{{"n":{n}}}"#),
            }],
            parameters: Vec::new(),
        },
    })
}

pub async fn run(bench: &Bench<'_>) -> Result<Table> {
    let secs = if bench.args.short { 3 } else { 15 };
    let admin = crate::connect(&riptide_localpg::url(bench.databases.pg_port, "postgres")).await?;
    admin
        .batch_execute("DROP DATABASE IF EXISTS bench_notify")
        .await?;
    admin.batch_execute("CREATE DATABASE bench_notify").await?;
    let url = riptide_localpg::url(bench.databases.pg_port, "bench_notify");
    let connection = riptide_pg::PgConnection::from_uri(&url)?;
    let writer = PgStorage::connect(&url).await?.with_node_id("bench-writer");
    writer.migrate().await?;
    let reader = PgStorage::connect(&url).await?.with_node_id("bench-reader");
    let sink = Arc::new(Counting {
        received: AtomicU64::new(0),
        lag_us: Mutex::new(lag_histogram()?),
        span: Mutex::new(None),
        listening: Notify::new(),
    });
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    CheckpointListener::new(&connection, &reader).spawn(sink.clone(), cancel.clone());
    tokio::time::timeout(Duration::from_secs(30), sink.listening.notified())
        .await
        .context("the listener did not listen within 30 s")?;

    let mut deployments = Vec::new();
    for _ in 0..WRITERS {
        deployments.push(
            writer
                .create_deployment("bucket_definitions: {}", "bench_")
                .await?
                .id,
        );
    }
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let writes = deployments.iter().enumerate().map(|(w, &id)| {
        let writer = writer.clone();
        async move {
            let mut n = 0u64;
            let mut lsn = 1u64;
            while Instant::now() < until {
                let mut batch = writer.begin_batch(id).await?;
                batch.save(vec![one_row(w, n)]).await?;
                batch.commit(riptide_protocol::Lsn(lsn)).await?;
                n += 1;
                lsn += 1;
            }
            anyhow::Ok(n)
        }
    });
    let committed: u64 = futures::future::try_join_all(writes)
        .await?
        .into_iter()
        .sum();
    let commit_secs = started.elapsed().as_secs_f64();
    let all_secs = handed_on(&sink, committed, started).await?;
    let (lag, _) = take_lag(&sink)?;
    let steady = row(
        &WRITERS.to_string(),
        committed,
        Some(committed as f64 / commit_secs),
        committed as f64 / all_secs,
        &lag,
    );

    // A burst: one transaction sends `burst` notifications of another node's commits,
    // delivered together at its commit; how fast the listener hands them on.
    let burst: u64 = if bench.args.short { 2_000 } else { 20_000 };
    let client = crate::connect(&url).await?;
    client
        .execute(
            "SELECT pg_notify($1, format('{\"kind\":\"checkpoint\",\"v\":1,\"node\":\"burst\",\
             \"deployment\":%s,\"previous\":%s,\"op_id\":%s,\"lsn\":\"0/%s\",\
             \"buckets\":[\"b\"],\"lookups\":[],\"at_us\":%s}', \
             $2::bigint, 1000000 + i - 1, 1000000 + i, to_hex(i), \
             (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)) \
             FROM generate_series(1, $3::bigint) AS i",
            &[
                &riptide_storage::CHECKPOINT_CHANNEL,
                &deployments[0],
                &i64::try_from(burst)?,
            ],
        )
        .await?;
    handed_on(&sink, committed + burst, Instant::now()).await?;
    let (burst_lag, (first, last)) = take_lag(&sink)?;
    let secs = last.duration_since(first).as_secs_f64().max(1e-6);
    let burst_row = row(
        "1 (burst)",
        burst,
        None,
        (burst - 1) as f64 / secs,
        &burst_lag,
    );
    Ok(Table {
        title: "Notifications: one listener on another node".into(),
        columns: vec![
            "writers",
            "notifications",
            "commits/s",
            "handed on/s",
            "lag p50 ms",
            "lag p99 ms",
            "lag max ms",
        ],
        rows: vec![steady.0, burst_row.0],
        metrics: json!({ "steady": steady.1, "burst": burst_row.1 }),
    })
}

/// Waits until the listener has handed on `total` events; seconds since `since`.
async fn handed_on(sink: &Counting, total: u64, since: Instant) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.received.load(Ordering::Relaxed) < total {
        if Instant::now() > deadline {
            bail!(
                "the listener handed on {} of {total} notifications within 60 s",
                sink.received.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(since.elapsed().as_secs_f64())
}

/// The lag recorded so far and when the first and last of those events were handed on (and
/// a fresh start for what follows).
fn take_lag(sink: &Counting) -> Result<(Histogram<u64>, (Instant, Instant))> {
    let poisoned = || anyhow::anyhow!("a counter's lock is poisoned");
    let mut h = sink.lag_us.lock().map_err(|_| poisoned())?;
    let lag = std::mem::replace(&mut *h, lag_histogram()?);
    let span = sink.span.lock().map_err(|_| poisoned())?.take();
    let now = Instant::now();
    Ok((lag, span.unwrap_or((now, now))))
}

/// One row of the table and its JSON.
fn row(
    writers: &str,
    count: u64,
    commit_rate: Option<f64>,
    handed_rate: f64,
    lag: &Histogram<u64>,
) -> (Vec<String>, serde_json::Value) {
    let ms = |q: f64| lag.value_at_quantile(q) as f64 / 1000.0;
    let max = lag.max() as f64 / 1000.0;
    (
        vec![
            writers.to_owned(),
            count.to_string(),
            commit_rate.map_or("-".into(), |r| format!("{r:.0}")),
            format!("{handed_rate:.0}"),
            format!("{:.2}", ms(0.5)),
            format!("{:.2}", ms(0.99)),
            format!("{max:.2}"),
        ],
        json!({
            "writers": writers, "notifications": count, "commits_per_s": commit_rate,
            "handed_on_per_s": handed_rate, "lag_p50_ms": ms(0.5), "lag_p99_ms": ms(0.99),
            "lag_max_ms": max,
        }),
    )
}

/// Microseconds from 1 µs to a minute, 3 significant figures (values beyond are clamped).
fn lag_histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}
