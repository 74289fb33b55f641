//! Transactions: `count` single-row transactions committed one after another (on
//! `--txn-connections` connections in parallel, every `INSERT` in autocommit), until an open
//! stream has received the checkpoint that contains the last one.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use riptide_testkit::Transport;
use serde_json::json;

use super::Bench;
use crate::checkpoint::{read_until_complete, request_body};
use crate::live;
use crate::report::Table;

pub async fn run(bench: &Bench<'_>) -> Result<Table> {
    let count = bench.sizes.transactions;
    let connections = bench.args.txn_connections.clamp(1, count.max(1));
    let mut writers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let client = bench.databases.new_writer().await?;
        let insert = client
            .prepare(
                "INSERT INTO events (id, topic, seq, sent_us) VALUES ($1, 'transactions', $2, $3)",
            )
            .await?;
        writers.push((client, insert));
    }
    let mut stream = bench
        .client("transactions")
        .open(Transport::NDJSON, &request_body())
        .await?;
    read_until_complete(&mut stream, None).await?;
    // Read while the writers commit, as a client would (a stream not read would stall).
    let expected = i64::try_from(count)?;
    let reader = tokio::spawn(async move {
        read_until_complete(&mut stream, Some(expected)).await?;
        anyhow::Ok(Instant::now())
    });
    let started = Instant::now();
    let commits = writers
        .iter()
        .enumerate()
        .map(|(c, (client, insert))| async move {
            for seq in (c..count).step_by(connections) {
                let id = format!("txn-{seq}");
                let seq = i32::try_from(seq)?;
                client
                    .execute(insert, &[&id, &seq, &live::now_us()])
                    .await?;
            }
            anyhow::Ok(())
        });
    futures::future::try_join_all(commits).await?;
    let committed = started.elapsed().as_secs_f64();
    let seen = tokio::time::timeout(Duration::from_secs(300), reader)
        .await
        .context("the last transaction not in a checkpoint after 300 s")???;
    let total = seen.duration_since(started).as_secs_f64();
    let lag_ms = (total - committed) * 1000.0;
    let commit_rate = count as f64 / committed;
    let end_to_end = count as f64 / total;
    Ok(Table {
        title: "Single-row transactions → in a checkpoint".into(),
        columns: vec![
            "transactions",
            "connections",
            "commit s",
            "source commits/s",
            "in a checkpoint s",
            "end to end transactions/s",
            "last commit → checkpoint ms",
        ],
        rows: vec![vec![
            count.to_string(),
            connections.to_string(),
            format!("{committed:.2}"),
            format!("{commit_rate:.0}"),
            format!("{total:.2}"),
            format!("{end_to_end:.0}"),
            format!("{lag_ms:.0}"),
        ]],
        metrics: json!({
            "transactions": count, "connections": connections, "commit_seconds": committed,
            "source_commits_per_s": commit_rate, "checkpoint_seconds": total,
            "transactions_per_s": end_to_end, "last_commit_to_checkpoint_ms": lag_ms,
        }),
    })
}
