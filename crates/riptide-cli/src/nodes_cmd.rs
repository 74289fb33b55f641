//! `riptide status --config FILE`: the `riptide serve` processes registered in the config's
//! storage (role, address, lease held or standby, gone when their heartbeat is older than the
//! lease duration) and the replication lease, through `riptide_server::roles::cluster_status`.

use std::path::Path;
use std::time::SystemTime;

use anyhow::Result;
use riptide_server::config::ServeConfig;
use riptide_server::roles::{NodeState, cluster_status};

/// Prints the nodes and the lease of `config`'s storage (as JSON with `json`).
pub async fn main(config: &Path, json: bool) -> Result<()> {
    let config = ServeConfig::load(config)?;
    let status = cluster_status(&config).await?;
    if json {
        let nodes: Vec<_> = status.nodes.iter().map(node_json).collect();
        let lease = status.lease.as_ref().map(|l| {
            serde_json::json!({
                "holder": l.holder,
                "epoch": l.epoch,
                "heartbeat_age_seconds": finite(l.heartbeat_age),
            })
        });
        println!("{}", serde_json::json!({ "nodes": nodes, "lease": lease }));
        return Ok(());
    }
    match &status.lease {
        Some(l) if l.heartbeat_age <= status.expiry.as_secs_f64() => println!(
            "replication lease: held by {} (epoch {}, heartbeat {:.1} s ago)",
            l.holder, l.epoch, l.heartbeat_age
        ),
        Some(l) => println!(
            "replication lease: free (last holder {}, epoch {})",
            l.holder, l.epoch
        ),
        None => println!("replication lease: never taken"),
    }
    if status.nodes.is_empty() {
        println!("no nodes registered");
        return Ok(());
    }
    println!(
        "{:<32} {:<10} {:<22} {:<10} {:>9} {:>10}",
        "NODE", "ROLE", "ADDRESS", "STATE", "UP (s)", "SEEN (s)"
    );
    for n in &status.nodes {
        println!(
            "{:<32} {:<10} {:<22} {:<10} {:>9} {:>10.1}",
            n.record.id,
            n.record.role,
            n.record.address,
            state(n),
            uptime(n.record.started_at),
            n.record.heartbeat_age
        );
    }
    Ok(())
}

fn state(n: &NodeState) -> &'static str {
    n.state()
}

fn node_json(n: &NodeState) -> serde_json::Value {
    serde_json::json!({
        "id": n.record.id,
        "role": n.record.role,
        "address": n.record.address,
        "state": state(n),
        "lease_epoch": n.record.lease_epoch,
        "uptime_seconds": uptime(n.record.started_at),
        "heartbeat_age_seconds": finite(n.record.heartbeat_age),
    })
}

fn uptime(started: SystemTime) -> u64 {
    SystemTime::now()
        .duration_since(started)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// JSON has no infinity: a released lease's age is `null`.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}
