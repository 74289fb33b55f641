//! Notifications across processes: what one `CheckpointListener` sustains. Writers (one per
//! deployment, in parallel) commit one-row storage batches as fast as Postgres takes them,
//! on a storage database of their own; a listener of another "node" (another `PgStorage`)
//! hands every commit on. Reports commits/s, notifications/s handed on, and the lag from the
//! database clock at each commit to the listener handing it on (one machine: no clock skew).
//! Then a burst: one transaction sends 4,000 notifications at once (as a storage restart's
//! backlog or a flood of commits would arrive; within the listener's queue), and how fast the
//! listener hands them on; its lag includes the time the sending transaction took. Last, a flood
//! of 50,000 at once, past the queue: the listener drops what does not fit, catches up from
//! storage, and the next real commit is handed on as usual (how long after the flood's commit).

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
    /// Times the listener reported it fell behind its queue.
    overflows: AtomicU64,
    /// The newest checkpoint handed on per deployment.
    newest: Mutex<std::collections::HashMap<DeploymentId, OpId>>,
    lag_us: Mutex<Histogram<u64>>,
    /// When the first and the last event since the last [`take_lag`] were handed on.
    span: Mutex<Option<(Instant, Instant)>>,
    listening: Notify,
}

impl NotificationSink for Counting {
    fn checkpoint(&self, event: CheckpointEvent, sent_at: Option<SystemTime>) {
        if let Ok(mut newest) = self.newest.lock() {
            let seen = newest.entry(event.deployment).or_insert(OpId(0));
            *seen = (*seen).max(event.checkpoint.op_id);
        }
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
    fn overflowed(&self) {
        self.overflows.fetch_add(1, Ordering::Relaxed);
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
        overflows: AtomicU64::new(0),
        newest: Mutex::new(std::collections::HashMap::new()),
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
    let burst: u64 = if bench.args.short { 2_000 } else { 4_000 };
    let client = crate::connect(&url).await?;
    send_burst(&client, deployments[0], 1_000_000, burst).await?;
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
    let (flood_row, flood) =
        flood_then_commit(bench, &sink, &client, &writer, &deployments).await?;
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
        rows: vec![steady.0, burst_row.0, flood_row],
        metrics: json!({ "steady": steady.1, "burst": burst_row.1, "flood": flood }),
    })
}

/// Sends `count` notifications of fake checkpoints of `deployment` (op ids from `first`) in one
/// transaction, as another node would.
async fn send_burst(
    client: &tokio_postgres::Client,
    deployment: DeploymentId,
    first: i64,
    count: u64,
) -> Result<()> {
    client
        .execute(
            "SELECT pg_notify($1, format('{\"kind\":\"checkpoint\",\"v\":1,\"node\":\"burst\",\
             \"deployment\":%s,\"previous\":%s,\"op_id\":%s,\"lsn\":\"0/%s\",\
             \"buckets\":[\"b\"],\"lookups\":[],\"at_us\":%s}', \
             $2::bigint, $3::bigint + i - 1, $3::bigint + i, to_hex(i), \
             (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)) \
             FROM generate_series(1, $4::bigint) AS i",
            &[
                &riptide_storage::CHECKPOINT_CHANNEL,
                &deployment,
                &first,
                &i64::try_from(count)?,
            ],
        )
        .await?;
    Ok(())
}

/// A flood past the listener's queue, then one real commit: the listener must report the
/// overflow and hand the commit on. Returns the table row and its JSON.
async fn flood_then_commit(
    bench: &Bench<'_>,
    sink: &Counting,
    client: &tokio_postgres::Client,
    writer: &PgStorage,
    deployments: &[DeploymentId],
) -> Result<(Vec<String>, serde_json::Value)> {
    let flood: u64 = if bench.args.short { 10_000 } else { 50_000 };
    // The commit's own notification may be dropped with the flood: the catch-up covers the
    // active deployment (the only one streams serve), so the commit goes to that one.
    writer.complete_snapshot(deployments[1]).await?;
    let before = sink.overflows.load(Ordering::Relaxed);
    let sent = Instant::now();
    send_burst(client, deployments[0], 10_000_000, flood).await?;
    let mut batch = writer.begin_batch(deployments[1]).await?;
    batch.save(vec![one_row(1, 1_000_000)]).await?;
    let event = batch.commit(riptide_protocol::Lsn(1_000_000)).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let newest = sink
            .newest
            .lock()
            .map_err(|_| anyhow::anyhow!("a counter's lock is poisoned"))?
            .get(&deployments[1])
            .copied();
        if newest.is_some_and(|n| n >= event.checkpoint.op_id) {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the commit after a flood of {flood} notifications was not handed on within 60 s \
                 (overflows {}, newest handed on {newest:?}, the commit's {:?})",
                sink.overflows.load(Ordering::Relaxed) - before,
                event.checkpoint.op_id
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let after_ms = sent.elapsed().as_secs_f64() * 1000.0;
    let overflows = sink.overflows.load(Ordering::Relaxed) - before;
    if overflows == 0 {
        bail!("a flood of {flood} notifications did not overflow the listener's queue");
    }
    Ok((
        vec![
            format!("1 (flood, {overflows} overflow)"),
            flood.to_string(),
            "-".into(),
            "-".into(),
            format!("next commit handed on {after_ms:.0} ms after the flood"),
            "-".into(),
            "-".into(),
        ],
        json!({ "notifications": flood, "overflows": overflows, "next_commit_ms": after_ms }),
    ))
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
