//! Fan-out: one write to a bucket shared by many streams, the time until all of them have it.

use std::time::Instant;

use anyhow::{Result, bail};
use serde_json::json;

use super::Bench;
use crate::live;
use crate::report::Table;

pub async fn run(bench: &Bench<'_>) -> Result<Table> {
    let sizes = bench.sizes;
    let n = sizes.fanout_streams;
    let writes = sizes.fanout_writes;
    let opening = Instant::now();
    let (streams, failed) = live::open_many(&bench.client("fanout"), n).await;
    if let Some(e) = failed {
        return Err(e.context(format!(
            "opening fan-out stream {} of {n}",
            streams.len() + 1
        )));
    }
    let open_secs = opening.elapsed().as_secs_f64();
    let live::FanOut {
        all,
        each,
        incomplete,
    } = live::fan_out(
        streams,
        &bench.databases.writer,
        "fanout",
        writes,
        sizes.fanout_gap,
    )
    .await?;
    if incomplete > 0 && sizes.strict {
        bail!("fan-out: {incomplete} of {writes} writes did not reach every stream");
    }
    let row = vec![
        format!("{n} streams, {writes} writes"),
        format!("{:.1}", live::ms(&all, 50.0)),
        format!("{:.1}", live::ms(&all, 99.0)),
        format!("{:.1}", live::ms(&all, 100.0)),
        format!("{:.1}", live::ms(&each, 50.0)),
        format!("{:.1}", live::ms(&each, 99.0)),
        format!("{incomplete}"),
        format!("{open_secs:.2}"),
    ];
    Ok(Table {
        title: "Fan-out: one write to a bucket shared by every stream (ms)".into(),
        columns: vec![
            "load",
            "all received p50",
            "all received p99",
            "all received max",
            "per delivery p50",
            "per delivery p99",
            "writes some stream missed",
            "s to open the streams",
        ],
        rows: vec![row],
        metrics: json!({
            "streams": n, "writes": writes,
            "all_received_p50_ms": live::ms(&all, 50.0), "all_received_p99_ms": live::ms(&all, 99.0),
            "all_received_max_ms": live::ms(&all, 100.0),
            "per_delivery_p50_ms": live::ms(&each, 50.0), "per_delivery_p99_ms": live::ms(&each, 99.0),
            "incomplete_writes": incomplete, "open_seconds": open_secs,
        }),
    })
}
