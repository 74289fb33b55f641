//! Write → every subscribed stream: N streams on one bucket, a writer at R rows/s for T s, the
//! latency of every delivery.

use std::time::Duration;

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use serde_json::json;

use super::Bench;
use crate::live::{self, Delivery};
use crate::report::{LiveRun, Table};
use crate::service::prepared_checkpoints;

pub async fn run(bench: &Bench<'_>) -> Result<(Table, LiveRun)> {
    let sizes = bench.sizes;
    let (http, endpoint) = (&bench.http, bench.endpoint.as_str());
    let n = sizes.latency_streams;
    let writes = (sizes.latency_rate * sizes.latency_secs) as usize;
    let (streams, failed) = live::open_many(&bench.client("latency"), n).await;
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
        &bench.databases.writer,
        "latency",
        writes,
        Duration::from_secs(1) / sizes.latency_rate,
    )
    .await?;
    let mut deliveries = Vec::with_capacity(readers.len());
    for r in readers {
        deliveries.push(r.await?);
    }
    let (h, per_second) = tally(&deliveries, writing, sizes.latency_secs)?;
    let delivered = deliveries.iter().map(Vec::len).sum::<usize>();
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
    let run = LiveRun {
        label: format!("{n} streams × {rate:.0} writes/s"),
        histogram: h,
        per_second,
    };
    Ok((table, run))
}

/// Every delivery's latency, and deliveries per second from the writer's start (`writing`, µs
/// since the epoch) without trailing empty seconds.
fn tally(
    deliveries: &[Vec<Delivery>],
    writing: i64,
    secs: u32,
) -> Result<(Histogram<u64>, Vec<u64>)> {
    let mut h = live::histogram();
    let mut per_second = vec![0u64; secs as usize + 1];
    for &(_, lat, received) in deliveries.iter().flatten() {
        h.record(lat.max(1) as u64)?;
        let second = usize::try_from((received - writing) / 1_000_000).unwrap_or(0);
        if second >= per_second.len() {
            per_second.resize(second + 1, 0);
        }
        per_second[second] += 1;
    }
    // The last second holds only late deliveries, if any.
    while per_second.last() == Some(&0) {
        per_second.pop();
    }
    Ok((h, per_second))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_are_counted_per_second_of_the_run() {
        let start = 1_000_000_000;
        let deliveries = vec![
            vec![(0, 1_500, start + 10), (1, 2_000, start + 1_200_000)],
            vec![(0, 900, start + 20)],
        ];
        let (h, per_second) = tally(&deliveries, start, 5).unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(per_second, [2, 1], "trailing empty seconds are dropped");
        assert!((live::ms(&h, 100.0) - 2.0).abs() < 0.01);
    }
}
