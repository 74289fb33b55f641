//! Scale-out: the latency and fan-out scenarios with their streams on the replicating process
//! (1 process) and then spread over two more `riptide serve --role api` processes on the same
//! config (2 API nodes), which learn of each commit through `LISTEN/NOTIFY`. Each run has its own
//! `by_topic` bucket.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use serde_json::json;

use super::{Bench, bench_client};
use crate::live::{self, Delivery};
use crate::report::Table;
use crate::service::{Service, free_port};

/// Latency and fan-out on one set of endpoints (streams spread evenly over them).
struct Measured {
    latency: Histogram<u64>,
    delivered: usize,
    expected: usize,
    /// Per write, the time until every stream had it.
    fanout_all: Histogram<u64>,
    fanout_incomplete: usize,
}

pub async fn run(bench: &Bench<'_>, work: &Path) -> Result<Table> {
    let config = work.join("config.yaml");
    let mut api = Vec::new();
    for _ in 0..2 {
        let port = free_port()?;
        let node = Service::spawn_with(
            &bench.args.riptide,
            &config,
            &["--role", "api", "--port", &port.to_string()],
            port,
        )?;
        node.ready(&bench.http).await?;
        api.push(node);
    }
    let one = [bench.endpoint.clone()];
    let two: Vec<String> = api.iter().map(|s| s.endpoint.clone()).collect();
    let single = measure(bench, &one, "scale1").await?;
    let spread = measure(bench, &two, "scale2").await?;
    for mut node in api {
        node.kill().await;
    }
    let sizes = bench.sizes;
    let row = |label: &str, m: &Measured| {
        vec![
            label.to_owned(),
            format!("{} / {}", m.delivered, m.expected),
            format!("{:.1}", live::ms(&m.latency, 50.0)),
            format!("{:.1}", live::ms(&m.latency, 99.0)),
            format!("{:.1}", live::ms(&m.fanout_all, 50.0)),
            format!("{:.1}", live::ms(&m.fanout_all, 99.0)),
            m.fanout_incomplete.to_string(),
        ]
    };
    let ratio = |q: f64| live::ms(&spread.latency, q) / live::ms(&single.latency, q).max(0.001);
    let json_of = |m: &Measured| {
        json!({
            "deliveries": m.delivered, "expected": m.expected,
            "latency_p50_ms": live::ms(&m.latency, 50.0), "latency_p99_ms": live::ms(&m.latency, 99.0),
            "fanout_all_p50_ms": live::ms(&m.fanout_all, 50.0),
            "fanout_all_p99_ms": live::ms(&m.fanout_all, 99.0),
            "fanout_incomplete_writes": m.fanout_incomplete,
        })
    };
    Ok(Table {
        title: format!(
            "Scale-out: {} streams × {} writes/s × {} s, then {} streams × {} writes (ms); \
             2 API nodes / 1 process: p50 ×{:.2}, p99 ×{:.2}",
            sizes.latency_streams,
            sizes.latency_rate,
            scale_secs(bench),
            sizes.fanout_streams,
            sizes.fanout_writes,
            ratio(50.0),
            ratio(99.0)
        ),
        columns: vec![
            "streams on",
            "deliveries",
            "latency p50",
            "latency p99",
            "fan-out all p50",
            "fan-out all p99",
            "writes some stream missed",
        ],
        rows: vec![
            row("1 process (the replicator's)", &single),
            row("2 API nodes (half each)", &spread),
        ],
        metrics: json!({
            "one_process": json_of(&single), "two_api_nodes": json_of(&spread),
            "p50_ratio": ratio(50.0), "p99_ratio": ratio(99.0),
        }),
    })
}

/// The latency run's duration: at most 20 s (two runs of it).
fn scale_secs(bench: &Bench<'_>) -> u32 {
    bench.sizes.latency_secs.min(20)
}

/// Streams `i` of `n` go to `endpoints[i % len]`.
async fn open_spread(
    bench: &Bench<'_>,
    endpoints: &[String],
    topic: &str,
    n: usize,
) -> Result<Vec<riptide_testkit::SyncStream>> {
    let mut streams = Vec::with_capacity(n);
    for (k, endpoint) in endpoints.iter().enumerate() {
        let share = n / endpoints.len() + usize::from(k < n % endpoints.len());
        let client = bench_client(endpoint, bench.token(topic), &bench.http);
        let (opened, failed) = live::open_many(&client, share).await;
        if let Some(e) = failed {
            return Err(e.context(format!("opening a stream on {endpoint}")));
        }
        streams.extend(opened);
    }
    Ok(streams)
}

async fn measure(bench: &Bench<'_>, endpoints: &[String], topic: &str) -> Result<Measured> {
    let sizes = bench.sizes;
    // Latency: a paced writer, every delivery timed.
    let (n, secs) = (sizes.latency_streams, scale_secs(bench));
    let writes = (sizes.latency_rate * secs) as usize;
    let streams = open_spread(bench, endpoints, &format!("{topic}-latency"), n).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(secs) + 30);
    let readers: Vec<_> = streams
        .into_iter()
        .map(|s| live::spawn_reader(s, writes, deadline))
        .collect();
    live::write_events(
        &bench.databases.writer,
        &format!("{topic}-latency"),
        writes,
        Duration::from_secs(1) / sizes.latency_rate,
    )
    .await?;
    let mut latency = live::histogram();
    let mut delivered = 0;
    for r in readers {
        let got: Vec<Delivery> = r.await?;
        delivered += got.len();
        for (_, lat, _) in got {
            latency.record(lat.max(1) as u64)?;
        }
    }
    let expected = n * writes;
    if delivered < expected && sizes.strict {
        bail!("scale-out: only {delivered} of {expected} deliveries arrived");
    }

    // Fan-out: writes to a bucket every stream has, the time until all have each.
    let (n, writes) = (sizes.fanout_streams, sizes.fanout_writes);
    let streams = open_spread(bench, endpoints, &format!("{topic}-fanout"), n).await?;
    let fanout = live::fan_out(
        streams,
        &bench.databases.writer,
        &format!("{topic}-fanout"),
        writes,
        sizes.fanout_gap,
    )
    .await?;
    let (fanout_all, fanout_incomplete) = (fanout.all, fanout.incomplete);
    if fanout_incomplete > 0 && sizes.strict {
        bail!("scale-out: {fanout_incomplete} of {writes} writes did not reach every stream");
    }
    Ok(Measured {
        latency,
        delivered,
        expected,
        fanout_all,
        fanout_incomplete,
    })
}
