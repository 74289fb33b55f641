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

fn rules(version: u32) -> String {
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

fn oracle() -> Oracle {
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
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn config(proxy_port: u16, storage: &PgServer, keys: &TestKeys, rules: &str) -> Value {
    json!({
        "replication": {"connections": [{
            "type": "postgresql",
            "uri": format!("postgres://postgres@127.0.0.1:{proxy_port}/source"),
            "sslmode": "disable",
        }]},
        "storage": {"type": "postgresql", "uri": storage.url("storage")},
        "sync_config": {"content": rules},
        "client_auth": {"jwks": keys.jwks(), "audience": [keys.audience]},
        "system": {"logging": {"level": "info"}},
    })
}

impl World {
    async fn start() -> World {
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
        let port = free_port();
        let service = ServiceProcess::new(
            Path::new(env!("CARGO_BIN_EXE_riptide")),
            dir.path(),
            config(proxy.port(), &storage, &keys, &rules(1)),
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
            config(self.proxy.port(), &self.storage, &self.keys, &rules),
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
