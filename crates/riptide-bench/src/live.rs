//! Live scenarios: write → every subscribed stream latency, fan-out to many streams, and many
//! idle streams. The load generator is many lightweight protocol clients (one tokio task per
//! NDJSON stream) on this process's runtime; the service runs as a separate process.
//!
//! Rows of `events` carry their own stamp: `sent_us` is this process's clock (µs since the
//! epoch) just before the `INSERT` is sent, so a delivery's latency is receive time − stamp on
//! the same machine and clock, and includes the insert's commit in Postgres.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::Value;

use crate::{Stream, Transport, open_stream, read_until_complete};

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
pub async fn open_many(
    http: &reqwest::Client,
    endpoint: &str,
    token: &str,
    n: usize,
) -> (Vec<Stream>, Option<anyhow::Error>) {
    let mut opened = Vec::with_capacity(n);
    let mut pending = futures::stream::iter(0..n)
        .map(|_| async {
            let mut s = open_stream(http, endpoint, token, Transport::NDJSON).await?;
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
    mut s: Stream,
    total: usize,
    deadline: tokio::time::Instant,
) -> tokio::task::JoinHandle<Vec<Delivery>> {
    tokio::spawn(async move {
        let mut got = Vec::with_capacity(total);
        while got.len() < total {
            let Ok(Ok(line)) = tokio::time::timeout_at(deadline, s.next_line()).await else {
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

/// CPU time and memory of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// utime + stime, seconds.
    pub cpu_s: f64,
    /// VmRSS, bytes.
    pub rss: u64,
    /// VmHWM (peak RSS over the process's life), bytes.
    pub peak_rss: u64,
}

pub fn usage(pid: u32) -> Usage {
    let proc = |file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok();
    let mut u = Usage::default();
    if let Some(stat) = proc("stat") {
        // Fields after the command name (which is in parentheses and may contain spaces):
        // state is field 3, utime field 14, stime field 15.
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
            u.cpu_s = (ticks(11) + ticks(12)) as f64 / 100.0;
        }
    }
    if let Some(status) = proc("status") {
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        u.rss = kb("VmRSS:");
        u.peak_rss = kb("VmHWM:");
    }
    u
}

/// CPU time, seconds, of a Postgres cluster: the postmaster's own, that of its children that
/// have exited (cutime + cstime) and that of its running children (backends, WAL sender,
/// background workers). Zero when `postmaster.pid` in `data_dir` cannot be read.
pub fn cluster_cpu_s(data_dir: &std::path::Path) -> f64 {
    let Some(postmaster) = std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
    else {
        return 0.0;
    };
    // Fields after the command name: ppid is field 4, utime..cstime fields 14..17.
    let stat = |pid: &str| -> Option<(u32, [u64; 4])> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, rest) = text.rsplit_once(')')?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Some((u32::try_from(n(1)).ok()?, [n(11), n(12), n(13), n(14)]))
    };
    let mut ticks = stat(&postmaster.to_string()).map_or(0, |(_, t)| t.iter().sum());
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            if let Some((ppid, t)) = stat(pid)
                && ppid == postmaster
            {
                ticks += t[0] + t[1];
            }
        }
    }
    // USER_HZ is 100 for user space.
    ticks as f64 / 100.0
}

/// Raises this process's open-file soft limit to its hard limit (children inherit it);
/// returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}
