//! Compaction wired into the service: `serve::start` runs the background compactor with the
//! config's `compaction` section, and `compact::compact_now` (`riptide compact`) compacts the
//! storage a config names. Real Postgres, the service in process.

use std::time::Duration;

use riptide_server::compact::{CompactOptions, compact_now};
use riptide_server::config::ServeConfig;
use riptide_server::embedded::{DEMO_RULES, DEMO_SCHEMA};
use riptide_server::serve;
use riptide_testkit::{SyncClient, TestDatabase, TestKeys, wait_for};
use serde_json::{Value, json};

use crate::common;

const T: Duration = Duration::from_secs(30);
const UPDATES: usize = 5;

struct Churned {
    _source: TestDatabase,
    storage: TestDatabase,
    keys: TestKeys,
    config: ServeConfig,
    endpoint: String,
    running: serve::Running,
}

/// A service on the demo schema with `compaction` as given, after alice's todo was updated
/// [`UPDATES`] times and the last update replicated.
async fn churned(compaction: riptide_server::config::CompactorConfig) -> Churned {
    let source = TestDatabase::create().await;
    let storage = source.sibling("storage").await;
    let db = source.client().await;
    db.batch_execute(DEMO_SCHEMA).await.unwrap();
    db.batch_execute(
        "INSERT INTO lists (id, name, owner_id) VALUES
           ('00000000-0000-0000-0000-00000000000a', 'A groceries', 'alice');
         INSERT INTO todos (list_id, description, created_by) VALUES
           ('00000000-0000-0000-0000-00000000000a', 'milk 0', 'alice');",
    )
    .await
    .unwrap();
    let keys = TestKeys::generate();
    let mut config = common::serve_config(&source, &storage, &keys);
    config.sync_rules = Some(DEMO_RULES.to_owned());
    config.compaction = compaction;
    let running = serve::start(config.clone()).await.expect("service starts");
    let endpoint = format!("http://127.0.0.1:{}", running.port);
    common::wait_ready(&riptide_testkit::http(), &endpoint, T).await;
    for i in 1..=UPDATES {
        db.execute("UPDATE todos SET description = $1", &[&format!("milk {i}")])
            .await
            .unwrap();
    }
    let last = format!("%milk {UPDATES}%");
    let ops = storage.client().await;
    wait_for("the last update in bucket storage", T, || {
        let (ops, last) = (&ops, &last);
        async move {
            let row = ops
                .query_one(
                    "SELECT count(*) FROM riptide.bucket_data WHERE data LIKE $1",
                    &[last],
                )
                .await
                .ok()?;
            (row.get::<_, i64>(0) > 0).then_some(())
        }
    })
    .await;
    Churned {
        _source: source,
        storage,
        keys,
        config,
        endpoint,
        running,
    }
}

async fn moved_ops(storage: &tokio_postgres::Client) -> i64 {
    storage
        .query_one(
            "SELECT count(*) FROM riptide.bucket_data WHERE op = 'MOVE'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// The todo descriptions of the PUTs a fresh client of alice's gets up to its first complete
/// checkpoint, and how many MOVEs it got.
async fn fresh_download(c: &Churned) -> (Vec<String>, usize) {
    let alice = SyncClient::new(&c.endpoint, c.keys.token("alice", 600, json!({})));
    let mut stream = alice
        .stream(json!({"client_id": "fresh", "raw_data": true}))
        .await;
    let lines = stream.until("checkpoint_complete", T).await;
    let ops: Vec<&Value> = lines
        .iter()
        .filter_map(|l| l.pointer("/data/data").and_then(Value::as_array))
        .flatten()
        .collect();
    let todos = ops
        .iter()
        .filter(|op| op["op"] == "PUT" && op["object_type"] == "todos")
        .filter_map(|op| op["data"].as_str())
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|d| d["description"].as_str().map(str::to_owned))
        .collect();
    let moves = ops.iter().filter(|op| op["op"] == "MOVE").count();
    (todos, moves)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_now_compacts_the_storage_a_config_names() {
    let off = riptide_server::config::CompactorConfig {
        enabled: false,
        ..Default::default()
    };
    let c = churned(off).await;
    let storage = c.storage.client().await;
    assert_eq!(moved_ops(&storage).await, 0, "the compactor is off");
    let (todos, moves) = fresh_download(&c).await;
    assert_eq!((todos.len(), moves), (UPDATES + 1, 0), "{todos:?}");

    let report = compact_now(&c.config, &CompactOptions::default())
        .await
        .expect("compaction runs");
    assert!(report.deployment.is_some(), "{report:?}");
    assert!(report.done.ops_moved >= UPDATES as u64, "{report:?}");
    assert!(moved_ops(&storage).await >= UPDATES as i64);

    // A fresh client gets the todo's data once, at its last value; the superseded PUTs are
    // MOVEs (same op ids and checksums, no data).
    let (todos, moves) = fresh_download(&c).await;
    assert_eq!(todos, vec![format!("milk {UPDATES}")]);
    assert!(moves >= UPDATES, "{moves} MOVEs");
    c.running.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_background_compactor_from_the_config() {
    let eager = riptide_server::config::CompactorConfig {
        threshold: 1,
        interval: Duration::from_secs(1),
        ..Default::default()
    };
    let c = churned(eager).await;
    let storage = c.storage.client().await;
    wait_for("the background compactor to move superseded ops", T, || {
        let storage = &storage;
        async move { (moved_ops(storage).await >= UPDATES as i64).then_some(()) }
    })
    .await;
    let (todos, _) = fresh_download(&c).await;
    assert_eq!(todos, vec![format!("milk {UPDATES}")]);
    c.running.cancel.cancel();
}
