//! The fault-injection suite (issue 12; `docs/architecture.md`, "Failure modes"): a `riptide
//! serve` process between a source and a storage Postgres of its own (each killable), the
//! source reached through a TCP proxy the test controls, clients writing and reading
//! throughout. After every fault each client converges to exactly what the rules grant it
//! (the rules written as plain SQL over the source: [`Oracle`]), with every bucket's checksum
//! checked on the way: nothing lost, nothing duplicated.
//!
//! - `clients_converge_through_every_fault`: the link cut, blackholed and slowed; the source
//!   and the storage server killed and restarted; the service killed (SIGKILL) and restarted;
//!   a restart on new rules (a new deployment snapshots and replaces the serving one);
//! - `clients_converge_after_a_crash_at_every_failpoint` (feature `failpoints`, which
//!   `scripts/test` turns on for this suite only): the process ends between every pair of
//!   storage steps of replication, snapshot and a rules switch, and starts again;
//! - `clients_converge_after_a_fault_at_every_compaction_failpoint` (feature `failpoints`):
//!   compaction (through the admin API) crashes the process, or fails its run, at every point
//!   inside it (between the MOVE rewrite and the CLEAR, between a bucket's commits, before a
//!   commit, before the counter update) while clients are connected; they converge with no
//!   checksum mismatch, and the next run finishes the job;
//! - `soak` (ignored; `FAULT_SOAK_MINUTES`, 30 by default): a fault every minute, clients
//!   writing throughout; prints each fault and its convergence time.

use std::path::Path;
use std::time::{Duration, Instant};

use riptide_testkit::TestKeys;
use riptide_testkit::fault::{FaultClient, Oracle, PgServer, ProxyMode, ServiceProcess, TcpProxy};
use serde_json::{Value, json};

/// How long a client may take to converge after a fault.
const CONVERGE: Duration = Duration::from_secs(60);

const USERS: [&str; 2] = ["u1", "u2"];

/// The admin token (`api.tokens`) the compaction test runs compaction with.
const ADMIN_TOKEN: &str = "fault-admin-token";

pub(super) fn rules(version: u32) -> String {
    format!(
        "# version {version}
bucket_definitions:
  global:
    data:
      - SELECT id, v FROM items
  by_owner:
    parameters: SELECT request.user_id() AS owner
    data:
      - SELECT id, owner, v FROM todos WHERE owner = bucket.owner
"
    )
}

pub(super) fn oracle() -> Oracle {
    Oracle::new([
        ("items", "SELECT id, v FROM items"),
        ("todos", "SELECT id, owner, v FROM todos WHERE owner = $1"),
    ])
}

/// Everything one fault run needs.
struct World {
    source: PgServer,
    storage: PgServer,
    proxy: TcpProxy,
    service: ServiceProcess,
    keys: TestKeys,
    dir: tempfile::TempDir,
    port: u16,
    db: tokio_postgres::Client,
    clients: Vec<FaultClient>,
    writes: u64,
    rules_version: u32,
    /// Automatic compaction on (the default), or off so that only the admin API compacts.
    auto_compaction: bool,
}

fn config(
    proxy_port: u16,
    storage: &PgServer,
    keys: &TestKeys,
    rules: &str,
    auto_compaction: bool,
) -> Value {
    json!({
        "replication": {"connections": [{
            "type": "postgresql",
            "uri": format!("postgres://postgres@127.0.0.1:{proxy_port}/source"),
            "sslmode": "disable",
        }]},
        "storage": {"type": "postgresql", "uri": storage.url("storage"), "sslmode": "disable"},
        "sync_config": {"content": rules},
        "client_auth": {"jwks": keys.jwks(), "audience": [keys.audience]},
        "api": {"tokens": [ADMIN_TOKEN]},
        "compaction": {"enabled": auto_compaction},
        "system": {"logging": {"level": "info"}},
    })
}

impl World {
    async fn start() -> World {
        World::start_with(true).await
    }

    /// A world whose service compacts automatically or not.
    async fn start_with(auto_compaction: bool) -> World {
        let source = PgServer::start().expect("source server");
        let storage = PgServer::start().expect("storage server");
        source.create_database("source").await;
        storage.create_database("storage").await;
        let db = source.client("source").await;
        db.batch_execute(
            "CREATE TABLE items (id text PRIMARY KEY, v text);
             CREATE TABLE todos (id text PRIMARY KEY, owner text NOT NULL, v text);
             CREATE PUBLICATION powersync FOR ALL TABLES;
             INSERT INTO items SELECT 'seed' || g, md5(g::text) FROM generate_series(1, 50) g;",
        )
        .await
        .expect("source schema");
        let target = format!("127.0.0.1:{}", source.port())
            .parse()
            .expect("address");
        let proxy = TcpProxy::start(target).await.expect("proxy");
        let keys = TestKeys::generate();
        let dir = tempfile::Builder::new()
            .prefix("riptide-faults")
            .tempdir()
            .expect("tempdir");
        let port = riptide_testkit::free_port();
        let service = ServiceProcess::new(
            Path::new(env!("CARGO_BIN_EXE_riptide")),
            dir.path(),
            config(proxy.port(), &storage, &keys, &rules(1), auto_compaction),
            port,
        );
        let mut world = World {
            source,
            storage,
            proxy,
            service,
            keys,
            dir,
            port,
            db,
            clients: Vec::new(),
            writes: 0,
            rules_version: 1,
            auto_compaction,
        };
        world.start_service(None).await;
        let endpoint = world.service.endpoint();
        for user in USERS {
            let token = world.keys.token(user, 3600, Value::Null);
            world.clients.push(FaultClient::new(&endpoint, user, token));
        }
        world
    }

    /// Starts the service (with `failpoints`) and waits until it is ready.
    async fn start_service(&mut self, failpoints: Option<&str>) {
        self.service.start(failpoints);
        assert!(
            self.service.wait_ready(CONVERGE).await,
            "the service did not get ready:\n{}",
            self.service.log_tail(40)
        );
    }

    /// Inserts, updates and deletes rows of both tables (directly on the source).
    async fn write(&mut self) {
        self.writes += 1;
        let n = self.writes;
        let sql = format!(
            "INSERT INTO items VALUES ('i{n}', 'item {n}');
             INSERT INTO todos VALUES ('t{n}a', 'u1', 'todo {n}'), ('t{n}b', 'u2', 'todo {n}');
             UPDATE items SET v = v || '+' WHERE id = 'seed{}';
             UPDATE todos SET owner = CASE owner WHEN 'u1' THEN 'u2' ELSE 'u1' END
               WHERE id = 't{}a';
             DELETE FROM items WHERE id = 'i{}';",
            n % 50 + 1,
            n.saturating_sub(1).max(1),
            n.saturating_sub(3),
        );
        self.db.batch_execute(&sql).await.expect("a write");
    }

    /// A new connection to the source (after it was restarted).
    async fn reconnect_db(&mut self) {
        self.db = self.source.client("source").await;
    }

    /// Every client converges; returns the slowest time.
    async fn converge(&mut self, fault: &str) -> Duration {
        let oracle = oracle();
        let mut slowest = Duration::ZERO;
        for client in &mut self.clients {
            match client.converge(&self.db, &oracle, CONVERGE).await {
                Ok(t) => slowest = slowest.max(t),
                Err(e) => panic!(
                    "after {fault}: {e}\n--- service log ---\n{}",
                    self.service.log_tail(60)
                ),
            }
        }
        eprintln!("{fault}: converged in {slowest:?}");
        slowest
    }

    /// Replaces the config's rules with a new version of the same rules (a new deployment:
    /// snapshot, activation, switch); the service must be stopped.
    fn new_rules_version(&mut self) {
        self.rules_version += 1;
        let rules = rules(self.rules_version);
        self.service = ServiceProcess::new(
            Path::new(env!("CARGO_BIN_EXE_riptide")),
            self.dir.path(),
            config(
                self.proxy.port(),
                &self.storage,
                &self.keys,
                &rules,
                self.auto_compaction,
            ),
            self.port,
        );
    }

    /// One named fault, writes during it, recovery, then convergence.
    async fn fault(&mut self, fault: Fault) -> Duration {
        match fault {
            Fault::CutLink => {
                self.proxy.cut();
                self.write().await;
            }
            Fault::Blackhole => {
                self.proxy.set_mode(ProxyMode::Blackhole);
                self.write().await;
                tokio::time::sleep(Duration::from_secs(3)).await;
                self.proxy.set_mode(ProxyMode::Pass);
            }
            Fault::SlowLink => {
                self.proxy
                    .set_mode(ProxyMode::Slow(Duration::from_millis(50)));
                self.write().await;
                self.converge("a slow link").await;
                self.proxy.set_mode(ProxyMode::Pass);
            }
            Fault::KillSource => {
                self.source.kill().expect("kill the source");
                self.source.restart().expect("restart the source");
                self.reconnect_db().await;
                self.write().await;
            }
            Fault::KillStorage => {
                self.write().await;
                self.storage.kill().expect("kill storage");
                self.write().await;
                self.storage.restart().expect("restart storage");
            }
            Fault::KillService => {
                self.write().await;
                self.service.kill().await;
                self.write().await;
                self.start_service(None).await;
            }
            Fault::NewRules => {
                self.service.kill().await;
                self.new_rules_version();
                self.write().await;
                self.start_service(None).await;
                self.write().await;
            }
        }
        self.write().await;
        self.converge(fault.name()).await
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    CutLink,
    Blackhole,
    SlowLink,
    KillSource,
    KillStorage,
    KillService,
    NewRules,
}

impl Fault {
    const ALL: [Fault; 7] = [
        Fault::CutLink,
        Fault::Blackhole,
        Fault::SlowLink,
        Fault::KillSource,
        Fault::KillStorage,
        Fault::KillService,
        Fault::NewRules,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::CutLink => "the source link cut",
            Fault::Blackhole => "the source link blackholed for 3 s",
            Fault::SlowLink => "the source link slowed (50 ms a chunk)",
            Fault::KillSource => "the source Postgres killed and restarted",
            Fault::KillStorage => "the storage Postgres killed and restarted",
            Fault::KillService => "the service killed (SIGKILL) and restarted",
            Fault::NewRules => "a restart on a new version of the rules (snapshot, switch)",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_converge_through_every_fault() {
    let mut world = World::start().await;
    world.write().await;
    world.converge("start").await;
    for fault in Fault::ALL {
        world.fault(fault).await;
    }
    world.service.kill().await;
}

/// Failpoints between the storage steps of streaming replication, each hit by a write.
#[cfg(feature = "failpoints")]
const STREAM_POINTS: [&str; 3] = [
    "replication::after_save",
    "replication::before_commit",
    "replication::after_commit",
];

/// Failpoints of a new deployment (snapshot, activation, switch), each hit by new rules.
#[cfg(feature = "failpoints")]
const DEPLOY_POINTS: [&str; 6] = [
    "snapshot::after_slot",
    "snapshot::after_chunk_commit",
    "snapshot::after_copy",
    "snapshot::after_complete",
    "deployments::after_activation",
    "deployments::after_slot_drop",
];

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_converge_after_a_crash_at_every_failpoint() {
    let mut world = World::start().await;
    // More rows than one snapshot commit, so a snapshot is cut between its chunks.
    world
        .db
        .batch_execute(
            "INSERT INTO items SELECT 'bulk' || g, repeat('x', 20) FROM generate_series(1, 25000) g",
        )
        .await
        .expect("bulk rows");
    world.write().await;
    world.converge("start").await;
    for point in STREAM_POINTS {
        world.service.kill().await;
        world.service.start(Some(&format!("{point}=return(exit)")));
        // A big transaction reaches `after_save` (more than one chunk), the others any write.
        world.write().await;
        world
            .db
            .batch_execute("UPDATE items SET v = v || '!' WHERE id LIKE 'bulk%' AND id < 'bulk2'")
            .await
            .expect("a big transaction");
        assert!(
            world.service.wait_exit(CONVERGE).await,
            "{point} did not fire:\n{}",
            world.service.log_tail(40)
        );
        world.start_service(None).await;
        world.write().await;
        world.converge(&format!("a crash at {point}")).await;
    }
    for point in DEPLOY_POINTS {
        world.service.kill().await;
        world.new_rules_version();
        world.service.start(Some(&format!("{point}=return(exit)")));
        world.write().await;
        assert!(
            world.service.wait_exit(CONVERGE).await,
            "{point} did not fire:\n{}",
            world.service.log_tail(40)
        );
        world.start_service(None).await;
        world.write().await;
        world.converge(&format!("a crash at {point}")).await;
    }
    // Every replaced deployment's slot is gone (dropped at retirement, or as an orphan at the
    // next start or switch): only the serving deployment's remains.
    let deadline = Instant::now() + CONVERGE;
    loop {
        let slots: Vec<String> = world
            .db
            .query("SELECT slot_name FROM pg_replication_slots", &[])
            .await
            .expect("slots")
            .iter()
            .map(|r| r.get(0))
            .collect();
        if slots.len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "slots left behind: {slots:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    world.service.kill().await;
}

/// Failpoints inside compaction (`riptide-storage` `failpoints.rs`), in the order a bucket's
/// compaction reaches them.
#[cfg(feature = "failpoints")]
const COMPACTION_POINTS: [&str; 6] = [
    "compaction::before_move_commit",
    "compaction::after_move_commit",
    "compaction::before_clear",
    "compaction::before_clear_commit",
    "compaction::after_clear_commit",
    "compaction::before_counter",
];

/// Rows of `items` rewritten before every compaction: more MOVEs, and more ops under the
/// CLEAR, than one compaction transaction takes (2,000), so a bucket's compaction commits more
/// than once and the `after_*_commit` points fall in its middle.
#[cfg(feature = "failpoints")]
const CHURN_ROWS: u32 = 2_200;

#[cfg(feature = "failpoints")]
impl World {
    /// Work for compaction in the global bucket: every op of `items` so far superseded (the
    /// leading run a CLEAR replaces), then the churn rows rewritten twice, so that their middle
    /// versions, above the live versions of the other rows, become MOVEs.
    async fn churn(&mut self) {
        self.db
            .batch_execute(
                "UPDATE items SET v = v || '~' WHERE id NOT LIKE 'churn%';
                 UPDATE items SET v = v || '~' WHERE id LIKE 'churn%';
                 UPDATE items SET v = v || '!' WHERE id LIKE 'churn%';",
            )
            .await
            .expect("churn");
    }

    /// Compacts the active deployment through the admin API: the answer's `data`, or why not
    /// (status and body, or the request's failure when the process ended).
    async fn compact(&self) -> Result<Value, String> {
        let resp = riptide_testkit::http()
            .post(format!("{}/api/compact/v1/run", self.service.endpoint()))
            .bearer_auth(ADMIN_TOKEN)
            .timeout(CONVERGE)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body["data"].clone())
        } else {
            Err(format!("{status}: {body}"))
        }
    }
}

/// At every point inside compaction, once with the process ending there (`return(exit)`) and
/// once with the run failing there (`1*return`, the service stays up): the connected clients
/// converge with no checksum mismatch, and the next run completes the compaction. A lagging
/// client, which reconnects only after each round's compaction, resumes from a position before
/// the rewritten ops (it receives the MOVEs and CLEARs); a fresh client at the end downloads the
/// compacted buckets whole. Neither ever sees a checksum mismatch either.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_converge_after_a_fault_at_every_compaction_failpoint() {
    // Only the admin API compacts, so each run is the one the failpoint is aimed at.
    let mut world = World::start_with(false).await;
    world
        .db
        .batch_execute(&format!(
            "INSERT INTO items SELECT 'churn' || g, 'c' FROM generate_series(1, {CHURN_ROWS}) g"
        ))
        .await
        .expect("churn rows");
    world.write().await;
    world.converge("start").await;
    let oracle = oracle();
    let mut lagging = FaultClient::new(
        &world.service.endpoint(),
        "u1",
        world.keys.token("u1", 3600, Value::Null),
    );
    lagging.client_id = "fault-u1-lagging".into();
    let converge = |e| panic!("the lagging client: {e}");
    lagging
        .converge(&world.db, &oracle, CONVERGE)
        .await
        .unwrap_or_else(converge);
    let mut compacted = (0u64, 0u64);
    for point in COMPACTION_POINTS {
        for crash in [true, false] {
            let action = if crash { "return(exit)" } else { "1*return" };
            world.service.kill().await;
            world
                .start_service(Some(&format!("{point}={action}")))
                .await;
            world.churn().await;
            world.write().await;
            // Storage holds the churn (compaction takes ops up to the checkpoint) and every
            // client is connected and up to date.
            world.converge("churn").await;
            let result = world.compact().await;
            let fault = if crash {
                assert!(
                    world.service.wait_exit(CONVERGE).await,
                    "{point} did not end the process ({result:?}):\n{}",
                    world.service.log_tail(40)
                );
                world.write().await;
                world.start_service(None).await;
                format!("a crash at {point}")
            } else {
                assert!(result.is_err(), "{point} did not fail the run: {result:?}");
                let log = std::fs::read_to_string(world.service.log_path()).unwrap_or_default();
                assert!(
                    log.contains(&format!("failpoint {point} fired")),
                    "the failed run does not name {point}:\n{}",
                    world.service.log_tail(40)
                );
                format!("a failed compaction at {point}")
            };
            world.write().await;
            world.converge(&fault).await;
            // The next run completes what the fault left.
            let done = world.compact().await.unwrap_or_else(|e| {
                panic!(
                    "compaction after {fault}: {e}\n{}",
                    world.service.log_tail(40)
                )
            });
            compacted.0 += done["ops_moved"].as_u64().unwrap_or(0);
            compacted.1 += done["ops_removed"].as_u64().unwrap_or(0);
            world.write().await;
            world
                .converge(&format!("the compaction after {fault}"))
                .await;
            lagging.disconnect();
            lagging
                .converge(&world.db, &oracle, CONVERGE)
                .await
                .unwrap_or_else(converge);
        }
    }
    let mut fresh = FaultClient::new(
        &world.service.endpoint(),
        "u2",
        world.keys.token("u2", 3600, Value::Null),
    );
    fresh.client_id = "fault-u2-fresh".into();
    fresh
        .converge(&world.db, &oracle, CONVERGE)
        .await
        .unwrap_or_else(|e| panic!("a fresh client: {e}"));
    eprintln!(
        "compaction after the faults: {} ops moved, {} removed",
        compacted.0, compacted.1
    );
    assert!(
        compacted.0 > 0 && compacted.1 > 0,
        "the runs after the faults compacted nothing: {compacted:?}"
    );
    // Compaction keeps every checksum: no client ever had to download a bucket again.
    for client in world.clients.iter().chain([&lagging, &fresh]) {
        assert_eq!(
            client.checksum_failures, 0,
            "{} ({}) saw a checksum mismatch",
            client.user, client.client_id
        );
    }
    world.service.kill().await;
}

/// The long soak: `FAULT_SOAK_MINUTES` (30 by default) of a fault a minute, clients writing
/// and converging throughout. `cargo test -p riptide-cli --features failpoints --test
/// integration -- faults::soak --ignored --nocapture` (not nextest: its timeout ends it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 30-minute soak; run by hand (docs/architecture.md, Failure modes)"]
async fn soak() {
    let minutes: u64 = std::env::var("FAULT_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(30);
    let end = Instant::now() + Duration::from_secs(minutes * 60);
    let mut world = World::start().await;
    world.converge("start").await;
    let mut report = Vec::new();
    let mut next = 0usize;
    while Instant::now() < end {
        let minute = Instant::now() + Duration::from_secs(60);
        let fault = Fault::ALL[next % Fault::ALL.len()];
        next += 1;
        let took = world.fault(fault).await;
        report.push((fault.name(), took));
        // Clients keep writing and reading until the minute is over.
        while Instant::now() < minute {
            world.write().await;
            world.converge("steady writes").await;
        }
    }
    world.service.kill().await;
    eprintln!("soak: {} faults, {} writes", report.len(), world.writes);
    for (fault, took) in &report {
        eprintln!("  {fault}: {took:?}");
    }
}
