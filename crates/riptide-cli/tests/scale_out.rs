//! Scale-out (issue 13): two `riptide serve --role replicator` processes (a lease holder and a
//! standby) and two `--role api` processes on one storage, all on loopback, a client on each
//! API node. Writes reach every client; SIGKILL of the holder: the standby takes the lease
//! over within 15 s and the clients converge with nothing lost or duplicated; SIGSTOP of the
//! holder for longer than its lease: the standby takes over, and the paused process, once
//! continued, writes nothing (the epoch of every commit in storage is the new holder's) and
//! stands by; SIGKILL of an API node: its client moves to the other and converges.
//!
//! The lease lasts 3 s here (`cluster.lease_duration_ms`), so the test takes well under a
//! minute.

use std::path::Path;
use std::time::{Duration, Instant};

use riptide_testkit::TestKeys;
use riptide_testkit::fault::{FaultClient, PgServer, ServiceProcess};
use serde_json::{Value, json};

const CONVERGE: Duration = Duration::from_secs(60);
const TAKEOVER: Duration = Duration::from_secs(15);
const LEASE_MS: u64 = 3_000;

// The fault suite's rules and oracle (version 1 of its rules).
use super::faults::{oracle, rules};

struct Cluster {
    pg: PgServer,
    db: tokio_postgres::Client,
    storage: tokio_postgres::Client,
    keys: TestKeys,
    dirs: Vec<tempfile::TempDir>,
    config: Value,
    writes: u64,
}

impl Cluster {
    async fn start() -> Cluster {
        let pg = PgServer::start().expect("postgres");
        pg.create_database("source").await;
        pg.create_database("storage").await;
        let db = pg.client("source").await;
        db.batch_execute(
            "CREATE TABLE items (id text PRIMARY KEY, v text);
             CREATE TABLE todos (id text PRIMARY KEY, owner text NOT NULL, v text);
             CREATE PUBLICATION powersync FOR ALL TABLES;
             INSERT INTO items SELECT 'seed' || g, md5(g::text) FROM generate_series(1, 20) g;",
        )
        .await
        .expect("source schema");
        let keys = TestKeys::generate();
        let config = json!({
            "replication": {"connections": [{
                "type": "postgresql",
                "uri": pg.url("source"),
                "sslmode": "disable",
            }]},
            "storage": {"type": "postgresql", "uri": pg.url("storage"), "sslmode": "disable"},
            "sync_config": {"content": rules(1)},
            "client_auth": {"jwks": keys.jwks(), "audience": [keys.audience]},
            "cluster": {"lease_duration_ms": LEASE_MS, "lease_renew_ms": 500},
            "api": {"tokens": ["admin-token"], "dashboard_tokens": ["dashboard-token"]},
            "host": "127.0.0.1",
        });
        let storage = pg.client("storage").await;
        Cluster {
            pg,
            db,
            storage,
            keys,
            dirs: Vec::new(),
            config,
            writes: 0,
        }
    }

    /// A process of `role`, started and ready.
    async fn node(&mut self, role: &str) -> ServiceProcess {
        let dir = tempfile::Builder::new()
            .prefix(&format!("riptide-{role}"))
            .tempdir()
            .expect("tempdir");
        let mut p = ServiceProcess::new(
            Path::new(env!("CARGO_BIN_EXE_riptide")),
            dir.path(),
            self.config.clone(),
            riptide_testkit::free_port(),
        )
        .with_args(["--role", role]);
        self.dirs.push(dir);
        start(&mut p).await;
        p
    }

    async fn write(&mut self) {
        self.writes += 1;
        let n = self.writes;
        let sql = format!(
            "INSERT INTO items VALUES ('i{n}', 'item {n}');
             INSERT INTO todos VALUES ('t{n}a', 'u1', 'todo {n}'), ('t{n}b', 'u2', 'todo {n}');
             UPDATE items SET v = v || '+' WHERE id = 'seed{}';
             DELETE FROM items WHERE id = 'i{}';",
            n % 20 + 1,
            n.saturating_sub(2),
        );
        self.db.batch_execute(&sql).await.expect("a write");
    }

    /// The lease's holder and epoch as stored.
    async fn lease(&self) -> (String, i64) {
        let row = self
            .storage
            .query_one(
                "SELECT holder, epoch FROM riptide.leases WHERE name = 'replication'",
                &[],
            )
            .await
            .expect("the lease row");
        (row.get(0), row.get(1))
    }

    /// Waits until the lease has an epoch above `after`; returns (holder, epoch, time taken).
    async fn wait_takeover(&self, after: i64) -> (String, i64, Duration) {
        let started = Instant::now();
        loop {
            let (holder, epoch) = self.lease().await;
            if epoch > after {
                return (holder, epoch, started.elapsed());
            }
            assert!(
                started.elapsed() < TAKEOVER,
                "no takeover within {TAKEOVER:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The lease epoch of every active deployment's last commit.
    async fn commit_epochs(&self) -> Vec<Option<i64>> {
        self.storage
            .query(
                "SELECT lease_epoch FROM riptide.deployments WHERE state = 'ACTIVE'",
                &[],
            )
            .await
            .expect("deployments")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    async fn converge(
        &mut self,
        clients: &mut [FaultClient],
        what: &str,
        nodes: &[&ServiceProcess],
    ) {
        let oracle = oracle();
        for c in clients.iter_mut() {
            if let Err(e) = c.converge(&self.db, &oracle, CONVERGE).await {
                let logs: Vec<String> = nodes.iter().map(|n| n.log_tail(30)).collect();
                panic!(
                    "after {what}: {e}\n--- logs ---\n{}",
                    logs.join("\n-----\n")
                );
            }
        }
    }
}

async fn start(p: &mut ServiceProcess) {
    p.start(None);
    assert!(
        p.wait_ready(CONVERGE).await,
        "a node did not get ready:\n{}",
        p.log_tail(40)
    );
}

fn signal(p: &ServiceProcess, sig: &str) {
    let pid = p.pid().expect("a running process");
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// A series without labels from `p`'s `/metrics`.
async fn metric(p: &ServiceProcess, name: &str) -> f64 {
    let text = riptide_testkit::http_get(format!("{}/metrics", p.endpoint()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not on /metrics:\n{text}"))
}

/// Whether a process logged that it took the lease.
fn took_lease(p: &ServiceProcess) -> bool {
    std::fs::read_to_string(p.log_path())
        .unwrap_or_default()
        .contains("took the replication lease")
}

/// `riptide status --config` of `p`'s config, as JSON.
fn status(p: &ServiceProcess) -> Value {
    let config = p.log_path().with_file_name("riptide.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riptide"))
        .args(["--json", "status", "--config"])
        .arg(&config)
        .output()
        .expect("riptide status runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicators_fail_over_and_api_nodes_serve_every_write() {
    let mut cluster = Cluster::start().await;
    let mut r1 = cluster.node("replicator").await;
    let mut r2 = cluster.node("replicator").await;
    let mut a1 = cluster.node("api").await;
    let mut a2 = cluster.node("api").await;
    assert!(
        took_lease(&r1) && !took_lease(&r2),
        "the first replicator leads"
    );
    let (_, first_epoch) = cluster.lease().await;

    // The nodes as `riptide status` lists them: one leader, one standby, two API nodes.
    let listed = status(&r1);
    let mut states: Vec<&str> = listed["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["state"].as_str().expect("state"))
        .collect();
    states.sort_unstable();
    assert_eq!(states, ["api", "api", "leader", "standby"], "{listed}");
    // The dashboard of an API node lists the same four.
    let data: Value = riptide_testkit::http_get(format!(
        "{}/dashboard/data.json?token=dashboard-token",
        a1.endpoint()
    ))
    .await
    .expect("dashboard data")
    .json()
    .await
    .expect("dashboard JSON");
    let nodes = data["nodes"].as_array().expect("nodes on the dashboard");
    assert_eq!(nodes.len(), 4, "{data}");
    assert_eq!(
        nodes.iter().filter(|n| n["this_process"] == true).count(),
        1,
        "{data}"
    );

    // Reprocessing and compaction runs are the holder's job: an API node says so (503).
    for path in ["/api/admin/v1/reprocess", "/api/compact/v1/run"] {
        let refused = riptide_testkit::http()
            .post(format!("{}{path}", a1.endpoint()))
            .bearer_auth("admin-token")
            .json(&json!({}))
            .send()
            .await
            .expect("admin request");
        assert_eq!(refused.status().as_u16(), 503, "{path}");
        let body: Value = refused.json().await.expect("error body");
        assert!(
            body["error"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("replication lease")),
            "{path}: {body}"
        );
    }

    let mut clients = vec![
        FaultClient::new(
            &a1.endpoint(),
            "u1",
            cluster.keys.token("u1", 3600, Value::Null),
        ),
        FaultClient::new(
            &a2.endpoint(),
            "u2",
            cluster.keys.token("u2", 3600, Value::Null),
        ),
    ];
    cluster.write().await;
    cluster
        .converge(&mut clients, "start", &[&r1, &r2, &a1, &a2])
        .await;

    // 1. SIGKILL the holder: the standby takes over and replicates.
    r1.kill().await;
    cluster.write().await;
    let (_, epoch, took) = cluster.wait_takeover(first_epoch).await;
    eprintln!("takeover after SIGKILL: {took:?} (epoch {epoch})");
    assert!(took_lease(&r2));
    cluster.write().await;
    cluster
        .converge(&mut clients, "SIGKILL of the leader", &[&r2, &a1, &a2])
        .await;

    // 2. The killed replicator comes back as a standby; SIGSTOP the holder for longer than
    // its lease: the standby takes over while it is paused.
    start(&mut r1).await;
    let paused_epoch = epoch;
    signal(&r2, "-STOP");
    cluster.write().await;
    let (holder, epoch, took) = cluster.wait_takeover(paused_epoch).await;
    eprintln!("takeover after SIGSTOP: {took:?} (epoch {epoch}, holder {holder})");
    assert!(took >= Duration::from_millis(LEASE_MS / 2), "took {took:?}");
    cluster.write().await;
    cluster
        .converge(&mut clients, "SIGSTOP of the leader", &[&r1, &a1, &a2])
        .await;
    signal(&r2, "-CONT");
    // Woken, the old holder steps down: its node row shows no lease, and every commit from
    // now on carries the new epoch.
    let deadline = Instant::now() + TAKEOVER;
    loop {
        let row = cluster
            .storage
            .query_one(
                "SELECT count(*) FROM riptide.nodes WHERE lease_epoch = $1",
                &[&paused_epoch],
            )
            .await
            .expect("nodes");
        let log = std::fs::read_to_string(r2.log_path()).unwrap_or_default();
        let stepped_down = [
            "taken over; standing by",
            "write was refused",
            "whole lease duration",
        ]
        .iter()
        .any(|m| log.contains(m));
        if row.get::<_, i64>(0) == 0 && stepped_down {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the paused leader did not step down:\n{}",
            r2.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..3 {
        cluster.write().await;
        cluster
            .converge(
                &mut clients,
                "SIGCONT of the old leader",
                &[&r1, &r2, &a1, &a2],
            )
            .await;
        assert_eq!(cluster.commit_epochs().await, vec![Some(epoch)]);
    }
    assert_eq!(
        cluster.lease().await,
        (holder, epoch),
        "the lease stayed where it went"
    );
    // Each says so on /metrics.
    assert_eq!(metric(&r1, "riptide_lease_holder").await, 1.0);
    assert_eq!(metric(&r1, "riptide_lease_epoch").await, epoch as f64);
    assert_eq!(metric(&r2, "riptide_lease_holder").await, 0.0);
    assert_eq!(metric(&r2, "riptide_lease_standby").await, 1.0);
    assert_eq!(metric(&r2, "riptide_lease_losses_total").await, 1.0);
    assert_eq!(metric(&a2, "riptide_lease_standby").await, 0.0);

    // 3. SIGKILL an API node: its client moves to the other one and converges.
    a1.kill().await;
    clients[0].moved_to(&a2.endpoint());
    cluster.write().await;
    cluster
        .converge(&mut clients, "SIGKILL of an API node", &[&r1, &r2, &a2])
        .await;

    for p in [&mut r1, &mut r2, &mut a2] {
        p.kill().await;
    }
    drop(cluster.pg);
}
