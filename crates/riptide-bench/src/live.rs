//! Live scenarios' load: many lightweight protocol clients (one tokio task per NDJSON stream,
//! the test kit's [`SyncClient`]) on this process's runtime, and a writer committing events at a
//! steady pace; the service runs as a separate process.
//!
//! Rows of `events` carry their own stamp: `sent_us` is this process's clock (µs since the
//! epoch) just before the `INSERT` is sent, so a delivery's latency is receive time − stamp on
//! the same machine and clock, and includes the insert's commit in Postgres.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use futures::StreamExt;
use hdrhistogram::Histogram;
use riptide_testkit::{SyncClient, SyncStream, Transport};
use serde_json::Value;

use crate::checkpoint::{LINE_TIMEOUT, read_until_complete, request_body};

/// Streams opened at the same time while connecting many.
const OPEN_CONCURRENCY: usize = 64;

pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

pub fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Opens up to `n` NDJSON streams, each read up to its first `checkpoint_complete`. Stops at the
/// first failure and returns the streams opened so far with that failure.
pub async fn open_many(client: &SyncClient, n: usize) -> (Vec<SyncStream>, Option<anyhow::Error>) {
    let mut opened = Vec::with_capacity(n);
    let body = request_body();
    let mut pending = futures::stream::iter(0..n)
        .map(|_| async {
            let mut s = client.open(Transport::NDJSON, &body).await?;
            read_until_complete(&mut s, None).await?;
            anyhow::Ok(s)
        })
        .buffer_unordered(OPEN_CONCURRENCY);
    while let Some(result) = pending.next().await {
        match result {
            Ok(s) => opened.push(s),
            Err(e) => return (opened, Some(e)),
        }
    }
    (opened, None)
}

/// One delivery: the event's sequence number, its latency in µs and when it arrived (µs since
/// the epoch).
pub type Delivery = (u32, i64, i64);

/// Reads a stream until it has received `total` events or `deadline` passes; returns the
/// deliveries.
pub fn spawn_reader(
    mut s: SyncStream,
    total: usize,
    deadline: tokio::time::Instant,
) -> tokio::task::JoinHandle<Vec<Delivery>> {
    tokio::spawn(async move {
        let mut got = Vec::with_capacity(total);
        while got.len() < total {
            let Ok(Ok(Some(line))) =
                tokio::time::timeout_at(deadline, s.try_next_line(LINE_TIMEOUT)).await
            else {
                break;
            };
            let received = now_us();
            let Some(ops) = line.pointer("/data/data").and_then(Value::as_array) else {
                continue;
            };
            for op in ops {
                if op["op"] != "PUT" {
                    continue;
                }
                // raw_data: `data` is the row as a JSON string.
                let row = match &op["data"] {
                    Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
                    other => other.clone(),
                };
                let (Some(seq), Some(sent)) = (int(&row["seq"]), int(&row["sent_us"])) else {
                    continue;
                };
                got.push((
                    u32::try_from(seq).unwrap_or(u32::MAX),
                    received - sent,
                    received,
                ));
            }
        }
        got
    })
}

/// Column values arrive as JSON numbers (or, for bigint, possibly strings).
fn int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Inserts `count` events of `topic`, one every `interval` (catching up if late).
pub async fn write_events(
    source: &tokio_postgres::Client,
    topic: &str,
    count: usize,
    interval: Duration,
) -> Result<Duration> {
    let insert = source
        .prepare("INSERT INTO events (id, topic, seq, sent_us) VALUES ($1, $2, $3, $4)")
        .await?;
    let mut tick = tokio::time::interval(interval);
    let started = Instant::now();
    for seq in 0..count {
        tick.tick().await;
        let seq = i32::try_from(seq).context("sequence fits in an int")?;
        let id = format!("{topic}-{seq}");
        source
            .execute(&insert, &[&id, &topic, &seq, &now_us()])
            .await?;
    }
    Ok(started.elapsed())
}

/// What one fan-out measured: the latency until every stream had each write (`all`, complete
/// writes only), each single delivery's latency (`each`), and writes some stream missed.
pub struct FanOut {
    pub all: Histogram<u64>,
    pub each: Histogram<u64>,
    pub incomplete: usize,
}

/// Writes `writes` events of `topic`, one every `gap`, while every one of `streams` reads them.
pub async fn fan_out(
    streams: Vec<SyncStream>,
    source: &tokio_postgres::Client,
    topic: &str,
    writes: usize,
    gap: Duration,
) -> Result<FanOut> {
    let n = streams.len();
    let deadline =
        tokio::time::Instant::now() + gap * u32::try_from(writes)? + Duration::from_secs(30);
    let readers: Vec<_> = streams
        .into_iter()
        .map(|s| spawn_reader(s, writes, deadline))
        .collect();
    write_events(source, topic, writes, gap).await?;
    // Per write: how many streams received it, and the last one's latency.
    let mut last = vec![(0usize, 0i64); writes];
    let mut each = histogram();
    for r in readers {
        for (seq, lat, _) in r.await? {
            if let Some(slot) = last.get_mut(seq as usize) {
                slot.0 += 1;
                slot.1 = slot.1.max(lat);
            }
            each.record(lat.max(1) as u64)?;
        }
    }
    let mut all = histogram();
    let mut incomplete = 0;
    for (got, lat) in last {
        if got == n {
            all.record(lat.max(1) as u64)?;
        } else {
            incomplete += 1;
        }
    }
    Ok(FanOut {
        all,
        each,
        incomplete,
    })
}

/// Percentile of a histogram, in ms.
pub fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return f64::NAN;
    }
    if q >= 100.0 {
        h.max() as f64 / 1000.0
    } else {
        h.value_at_quantile(q / 100.0) as f64 / 1000.0
    }
}

/// Raises this process's open-file soft limit to its hard limit (children inherit it);
/// returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}
