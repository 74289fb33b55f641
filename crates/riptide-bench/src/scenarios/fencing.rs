//! Fencing: what the replication lease's epoch check costs a storage commit. One writer commits
//! one-row storage batches (the replicator's smallest commit, where a fixed cost shows most) as
//! fast as Postgres takes them, alternately on a plain storage and on one fenced at the lease
//! epoch (`PgStorage::fenced`: the check folded into the commit's checkpoint `UPDATE`), while the
//! lease is renewed every 500 ms as a holder does (the renewal's `UPDATE` meets the commits' share
//! locks on the lease row). Turns of 0.5 s, alternating (20 of each; 4 with `--short`), on a
//! storage database of its own.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use riptide_storage::{
    BatchOperation, BucketRow, BucketStorage, DeploymentId, Fence, PgStorage, RowChange,
    RowOperation,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Bench;
use crate::report::Table;

const LEASE: &str = "replication";
const HOLDER: &str = "bench-holder";

fn one_row(n: u64) -> BatchOperation {
    BatchOperation::Row(RowOperation {
        source_table: "public.items".into(),
        key: format!("{}", n % 100).into_bytes(),
        change: RowChange::Upsert {
            row: n.to_le_bytes().to_vec(),
            buckets: vec![BucketRow {
                bucket: "b[]".into(),
                table: "items".into(),
                id: format!("{}", n % 100),
                data: format!(r#"{{"n":{n}}}"#),
            }],
            parameters: Vec::new(),
        },
    })
}

/// One turn of one storage.
const TURN: Duration = Duration::from_millis(500);

/// Commits one-row batches for `turn`; returns the count.
async fn commit_for(
    storage: &PgStorage,
    id: DeploymentId,
    turn: Duration,
    lsn: &mut u64,
) -> Result<u64> {
    let until = Instant::now() + turn;
    let mut n = 0u64;
    while Instant::now() < until {
        let mut batch = storage.begin_batch(id).await?;
        batch.save(vec![one_row(n)]).await?;
        *lsn += 1;
        batch.commit(riptide_protocol::Lsn(*lsn)).await?;
        n += 1;
    }
    Ok(n)
}

pub async fn run(bench: &Bench<'_>) -> Result<Table> {
    let admin = crate::connect(&riptide_localpg::url(bench.databases.pg_port, "postgres")).await?;
    admin
        .batch_execute("DROP DATABASE IF EXISTS bench_fencing")
        .await?;
    admin.batch_execute("CREATE DATABASE bench_fencing").await?;
    let url = riptide_localpg::url(bench.databases.pg_port, "bench_fencing");
    let plain = PgStorage::connect(&url).await?;
    plain.migrate().await?;
    let duration = Duration::from_secs(10);
    let Some(epoch) = plain.acquire_lease(LEASE, HOLDER, duration).await? else {
        bail!("the bench's fresh storage has a lease held already");
    };
    let fence = Fence {
        lease: LEASE.into(),
        epoch,
        duration,
    };
    let fenced = plain.fenced(fence.clone());
    let id = plain
        .create_deployment("bucket_definitions: {}", "bench_")
        .await?
        .id;
    // The holder's renewals, throughout.
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let renewer = plain.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            if !matches!(renewer.renew_lease(&fence, HOLDER).await, Ok(true)) {
                eprintln!("fencing bench: a lease renewal failed");
            }
        }
    });

    // Short turns, alternating, so that the storage's growth and the machine's load weigh on
    // both alike.
    let turns = if bench.args.short { 4 } else { 20 };
    let mut lsn = 0u64;
    let mut totals = [(0u64, 0f64); 2];
    for _ in 0..turns {
        for (i, storage) in [&plain, &fenced].into_iter().enumerate() {
            let started = Instant::now();
            let n = commit_for(storage, id, TURN, &mut lsn).await?;
            totals[i].0 += n;
            totals[i].1 += started.elapsed().as_secs_f64();
        }
    }
    let rate = |(n, s): (u64, f64)| n as f64 / s;
    let (plain_rate, fenced_rate) = (rate(totals[0]), rate(totals[1]));
    let row = |name: &str, (n, s): (u64, f64)| {
        vec![
            name.to_owned(),
            n.to_string(),
            format!("{:.0}", n as f64 / s),
            format!("{:.3}", s * 1000.0 / n.max(1) as f64),
        ]
    };
    let rows = vec![
        row("plain", totals[0]),
        row("fenced", totals[1]),
        vec![
            "fenced / plain".into(),
            String::new(),
            format!("{:.1} %", fenced_rate / plain_rate * 100.0),
            String::new(),
        ],
    ];
    Ok(Table {
        title: "fencing: one-row storage commits, plain vs fenced at the lease epoch".into(),
        columns: vec!["storage", "commits", "commits/s", "ms/commit"],
        rows,
        metrics: json!({
            "plain_commits_per_second": plain_rate,
            "fenced_commits_per_second": fenced_rate,
        }),
    })
}
