//! Replication: a bulk `INSERT … SELECT generate_series` into `items` until an open stream has
//! received the checkpoint that contains it. Its rows are what the initial-sync scenarios then
//! download.

use std::time::Instant;

use anyhow::Result;
use riptide_testkit::Transport;

use super::Bench;
use crate::checkpoint::{read_until_complete, request_body};
use crate::report::Row;

pub async fn run(bench: &Bench<'_>) -> Result<Row> {
    let rows = bench.sizes.rows;
    let mut live = bench
        .client("none")
        .open(Transport::NDJSON, &request_body())
        .await?;
    read_until_complete(&mut live, None).await?;
    let started = Instant::now();
    bench
        .databases
        .source
        .execute(
            "INSERT INTO items (id, n, label) SELECT 'item-' || g, g, 'label ' || g \
             FROM generate_series(1, $1::bigint) g",
            &[&rows],
        )
        .await?;
    let committed = started.elapsed();
    read_until_complete(&mut live, Some(rows)).await?;
    let total = started.elapsed();
    drop(live);
    let secs = total.as_secs_f64();
    Ok(Row {
        scenario: "replication: bulk INSERT → in a checkpoint".into(),
        amount: format!("{rows} rows"),
        seconds: secs,
        rate: format!("{:.0} rows/s", rows as f64 / secs),
        note: format!(
            "INSERT itself took {:.2} s; from its commit {:.2} s, {:.0} rows/s",
            committed.as_secs_f64(),
            (total - committed).as_secs_f64(),
            rows as f64 / (total - committed).as_secs_f64()
        ),
    })
}
