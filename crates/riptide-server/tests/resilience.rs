//! Failure modes of a long-running service (issue 12), each against a real Postgres: a source
//! transaction that storage refuses is reported (readiness probe, metrics, dashboard) and
//! applied once storage takes it, never skipped; the retry backoff starts small again after a
//! success; the service starts and serves what storage holds while the source is down; a
//! replication stream whose walsender stops answering is noticed and reopened; slots left by
//! old deployments are dropped; a slot invalidated by `max_slot_wal_keep_size` is replaced by a
//! new snapshot of the same rules.

use std::time::{Duration, Instant};

use riptide_server::config::{Logging, ServeConfig};
use riptide_server::serve;
use riptide_storage::{BucketStorage, PgStorage};
use riptide_testkit::fault::{FaultClient, Oracle, PgServer, ProxyMode, TcpProxy};
use riptide_testkit::{TestDatabase, TestKeys, wait_for};
use serde_json::Value;

use crate::common;

const T: Duration = Duration::from_secs(30);

const RULES: &str = "bucket_definitions:
  global:
    data:
      - SELECT id, v FROM items
";

fn oracle() -> Oracle {
    Oracle::new([("items", "SELECT id, v FROM items")])
}

fn init_logs() {
    riptide_server::logging::init(&Logging {
        level: "warn".into(),
        json: false,
    });
}

async fn get_json(endpoint: &str, path: &str) -> Option<(u16, Value)> {
    let resp = riptide_testkit::http()
        .get(format!("{endpoint}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.unwrap_or(Value::Null)))
}

/// The sum of a metric's series in `/metrics` (0 when absent).
async fn metric(endpoint: &str, name: &str) -> f64 {
    let Ok(resp) = riptide_testkit::http_get(format!("{endpoint}/metrics")).await else {
        return 0.0;
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| series.split('{').next() == Some(name))
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

/// `source` with an `items` table, published, and some rows.
async fn items_source() -> TestDatabase {
    let source = TestDatabase::create().await;
    source
        .client()
        .await
        .batch_execute(
            "CREATE TABLE items (id text PRIMARY KEY, v text);
             CREATE PUBLICATION powersync FOR ALL TABLES;
             INSERT INTO items VALUES ('a', 'first'), ('b', 'second');",
        )
        .await
        .unwrap();
    source
}

fn config_with_rules(
    source: &TestDatabase,
    storage: &TestDatabase,
    keys: &TestKeys,
) -> ServeConfig {
    let mut config = common::serve_config(source, storage, keys);
    config.sync_rules = Some(RULES.into());
    config.logging.level = "warn".into();
    config
}

/// `config` with its source reached through `port` on loopback.
fn through(mut config: ServeConfig, source: &TestDatabase, port: u16) -> ServeConfig {
    let url = format!("postgres://postgres@127.0.0.1:{port}/{}", source.name());
    config.source = url.parse::<tokio_postgres::Config>().unwrap().into();
    config
}

fn proxy_target() -> std::net::SocketAddr {
    let cluster = riptide_testkit::server();
    format!("{}:{}", cluster.host, cluster.port)
        .parse()
        .unwrap()
}

async fn converge(client: &mut FaultClient, db: &tokio_postgres::Client) -> Duration {
    client
        .converge(db, &oracle(), T)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Installs a trigger in storage that refuses ops whose data mentions `poison`.
async fn poison_storage(storage: &TestDatabase) {
    storage
        .client()
        .await
        .batch_execute(
            "CREATE OR REPLACE FUNCTION public.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.data LIKE '%poison%' THEN RAISE EXCEPTION 'storage refuses this op'; END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_poison BEFORE INSERT ON riptide.bucket_data
               FOR EACH ROW EXECUTE FUNCTION public.refuse_poison();",
        )
        .await
        .unwrap();
}

async fn cure_storage(storage: &TestDatabase) {
    storage
        .client()
        .await
        .batch_execute("DROP TRIGGER refuse_poison ON riptide.bucket_data")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_storage_refuses_is_reported_and_applied_once_it_can_be() {
    init_logs();
    let source = items_source().await;
    let storage = source.sibling("storage").await;
    let keys = TestKeys::generate();
    let running = serve::start(config_with_rules(&source, &storage, &keys))
        .await
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{}", running.port);
    common::wait_ready(&riptide_testkit::http(), &endpoint, T).await;
    let db = source.client().await;
    let mut client = FaultClient::new(&endpoint, "u1", keys.token("u1", 600, Value::Null));
    converge(&mut client, &db).await;

    poison_storage(&storage).await;
    db.batch_execute("INSERT INTO items VALUES ('p', 'poison')")
        .await
        .unwrap();
    // Loud: the readiness probe, the metrics and the dashboard say replication is failing.
    let body = wait_for("readiness to report the failure", T, || {
        let endpoint = endpoint.clone();
        async move {
            let (status, body) = get_json(&endpoint, "/probes/readiness").await?;
            (status == 200 && body["replication"]["healthy"] == false).then_some(body)
        }
    })
    .await;
    let error = body["replication"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("storage"),
        "the error names what failed: {body}"
    );
    assert!(metric(&endpoint, "riptide_replication_failures_total").await >= 1.0);
    assert_eq!(metric(&endpoint, "riptide_replication_healthy").await, 0.0);
    let (_, dashboard) = get_json(&endpoint, "/dashboard/data.json").await.unwrap();
    assert!(
        dashboard["replication"]["error"].is_string(),
        "the dashboard shows it: {dashboard}"
    );

    // Never skipped: once storage takes it, the row arrives, and later rows after it.
    cure_storage(&storage).await;
    db.batch_execute("INSERT INTO items VALUES ('q', 'after')")
        .await
        .unwrap();
    converge(&mut client, &db).await;
    wait_for("readiness to report health", T, || {
        let endpoint = endpoint.clone();
        async move {
            let (_, body) = get_json(&endpoint, "/probes/readiness").await?;
            (body["replication"]["healthy"] == true).then_some(())
        }
    })
    .await;
    assert_eq!(metric(&endpoint, "riptide_replication_healthy").await, 1.0);
    running.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_backoff_starts_small_again_after_a_success() {
    init_logs();
    let source = items_source().await;
    let storage = source.sibling("storage").await;
    let keys = TestKeys::generate();
    let running = serve::start(config_with_rules(&source, &storage, &keys))
        .await
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{}", running.port);
    common::wait_ready(&riptide_testkit::http(), &endpoint, T).await;
    let db = source.client().await;
    let mut client = FaultClient::new(&endpoint, "u1", keys.token("u1", 600, Value::Null));

    // A long failure grows the backoff (0.5 s, 1 s, 2 s, 4 s, 8 s, …).
    poison_storage(&storage).await;
    db.batch_execute("INSERT INTO items VALUES ('p1', 'poison')")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    cure_storage(&storage).await;
    converge(&mut client, &db).await;

    // A new failure after that success is retried at the small delay again.
    poison_storage(&storage).await;
    let failures = metric(&endpoint, "riptide_replication_failures_total").await;
    db.batch_execute("INSERT INTO items VALUES ('p2', 'poison')")
        .await
        .unwrap();
    wait_for("the new failure", T, || {
        let endpoint = endpoint.clone();
        async move {
            (metric(&endpoint, "riptide_replication_failures_total").await > failures).then_some(())
        }
    })
    .await;
    cure_storage(&storage).await;
    let started = Instant::now();
    converge(&mut client, &db).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "retried after {:?}: the backoff did not start over",
        started.elapsed()
    );
    running.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_and_serves_storage_while_the_source_is_down() {
    init_logs();
    let source = items_source().await;
    let storage = source.sibling("storage").await;
    let keys = TestKeys::generate();
    let proxy = TcpProxy::start(proxy_target()).await.unwrap();
    let config = through(
        config_with_rules(&source, &storage, &keys),
        &source,
        proxy.port(),
    );
    let db = source.client().await;

    // A first run replicates the rows.
    let running = serve::start(config.clone()).await.unwrap();
    let endpoint = format!("http://127.0.0.1:{}", running.port);
    common::wait_ready(&riptide_testkit::http(), &endpoint, T).await;
    let mut client = FaultClient::new(&endpoint, "u1", keys.token("u1", 600, Value::Null));
    converge(&mut client, &db).await;
    running.cancel.cancel();
    let _ = running.task.await;

    // The source goes down; the service starts anyway and serves what storage holds.
    proxy.set_mode(ProxyMode::Refuse);
    proxy.cut();
    let running = serve::start(config)
        .await
        .expect("serve starts while the source is down");
    let endpoint = format!("http://127.0.0.1:{}", running.port);
    let body = wait_for("readiness while the source is down", T, || {
        let endpoint = endpoint.clone();
        async move {
            let (status, body) = get_json(&endpoint, "/probes/readiness").await?;
            (status == 200 && body["replication"]["healthy"] == false).then_some(body)
        }
    })
    .await;
    assert!(
        body["replication"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("source")),
        "readiness says the source is unreachable: {body}"
    );
    let mut fresh = FaultClient::new(&endpoint, "u2", keys.token("u2", 600, Value::Null));
    // No write checkpoint can be taken without the source: read the stored data directly.
    let mut stream =
        riptide_testkit::SyncClient::new(&endpoint, keys.token("u2", 600, Value::Null))
            .stream(fresh.replica().request(&fresh.client_id))
            .await;
    let lines = stream.until("checkpoint_complete", T).await;
    let ids: Vec<String> = lines
        .iter()
        .filter_map(|l| l.pointer("/data/data").and_then(Value::as_array))
        .flatten()
        .filter_map(|op| op["object_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 2, "the stored rows are served: {lines:?}");

    // The source comes back: replication resumes by itself.
    proxy.set_mode(ProxyMode::Pass);
    db.batch_execute("INSERT INTO items VALUES ('c', 'third')")
        .await
        .unwrap();
    converge(&mut fresh, &db).await;
    running.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_walsender_stops_answering_is_reopened() {
    init_logs();
    // Its own server: a walsender whose client stopped answering keeps the slot until
    // wal_sender_timeout (60 s by default); 5 s here.
    let server = PgServer::start().unwrap();
    server.create_database("source").await;
    server.create_database("storage").await;
    server.set("wal_sender_timeout", "5s").await;
    let db = server.client("source").await;
    db.batch_execute(
        "CREATE TABLE items (id text PRIMARY KEY, v text);
         CREATE PUBLICATION powersync FOR ALL TABLES;
         INSERT INTO items VALUES ('a', 'first'), ('b', 'second');",
    )
    .await
    .unwrap();
    let keys = TestKeys::generate();
    let target = format!("127.0.0.1:{}", server.port()).parse().unwrap();
    let proxy = TcpProxy::start(target).await.unwrap();
    let mut config = ServeConfig {
        storage: Some(server.config("storage").into()),
        port: 0,
        sync_rules: Some(RULES.into()),
        sync_rules_origin: "test".into(),
        ..ServeConfig::new(
            format!("postgres://postgres@127.0.0.1:{}/source", proxy.port())
                .parse::<tokio_postgres::Config>()
                .unwrap(),
            common::auth(&keys),
        )
    };
    config.logging.level = "warn".into();
    let running = serve::start(config).await.unwrap();
    let endpoint = format!("http://127.0.0.1:{}", running.port);
    common::wait_ready(&riptide_testkit::http(), &endpoint, T).await;
    let mut client = FaultClient::new(&endpoint, "u1", keys.token("u1", 600, Value::Null));
    converge(&mut client, &db).await;

    // Every open source connection hangs (nothing answers, nothing is closed); new ones work.
    // (Only replication is watched here: requests that need the source, such as write
    // checkpoints, hang with their connections.)
    let mut stream =
        riptide_testkit::SyncClient::new(&endpoint, keys.token("u2", 600, Value::Null))
            .stream(serde_json::json!({"client_id": "c2", "raw_data": true}))
            .await;
    stream.until("checkpoint_complete", T).await;
    proxy.freeze_open();
    db.batch_execute("INSERT INTO items VALUES ('c', 'third')")
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let line = stream
            .next_line(Duration::from_secs(90))
            .await
            .expect("the stream stays open");
        let ops = line.pointer("/data/data").and_then(Value::as_array);
        if ops.into_iter().flatten().any(|op| op["object_id"] == "c") {
            break;
        }
    }
    eprintln!(
        "a hung replication stream was replaced in {:?}",
        started.elapsed()
    );
    running.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_left_by_old_deployments_are_dropped_and_others_kept() {
    init_logs();
    let source = items_source().await;
    let storage = source.sibling("storage").await;
    let keys = TestKeys::generate();
    let db = source.client().await;
    let store = PgStorage::connect(&storage.url()).await.unwrap();
    store.migrate().await.unwrap();
    // A replaced deployment whose slot could not be dropped.
    let old = store.create_deployment(RULES, "riptide_").await.unwrap();
    store.terminate(old.id).await.unwrap();
    // A slot with our prefix that this storage knows nothing of (another service's?).
    let foreign = format!("riptide_{}_beef", old.id + 1000);
    for slot in [&old.slot_name, &foreign] {
        db.execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[slot],
        )
        .await
        .unwrap();
    }

    let running = serve::start(config_with_rules(&source, &storage, &keys))
        .await
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{}", running.port);
    common::wait_ready(&riptide_testkit::http(), &endpoint, T).await;
    let live = store.active_deployment().await.unwrap().unwrap();
    let slots = wait_for("the orphan slot to be dropped", T, || {
        let db = &db;
        let old = old.slot_name.clone();
        async move {
            let slots: Vec<String> = db
                .query(
                    "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()",
                    &[],
                )
                .await
                .ok()?
                .iter()
                .map(|r| r.get(0))
                .collect();
            (!slots.contains(&old)).then_some(slots)
        }
    })
    .await;
    assert!(slots.contains(&foreign), "a slot it does not own is kept");
    assert!(slots.contains(&live.slot_name), "the live slot is kept");
    running.cancel.cancel();
    let _ = running.task.await;
    db.execute("SELECT pg_drop_replication_slot($1)", &[&foreign])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_slot_is_replaced_by_a_new_snapshot_of_the_same_rules() {
    init_logs();
    let server = PgServer::start().unwrap();
    server.create_database("source").await;
    server.create_database("storage").await;
    server.set("max_slot_wal_keep_size", "1MB").await;
    let db = server.client("source").await;
    db.batch_execute(
        "CREATE TABLE items (id text PRIMARY KEY, v text);
         CREATE TABLE filler (v text);
         CREATE PUBLICATION powersync FOR TABLE items;
         INSERT INTO items VALUES ('a', 'first'), ('b', 'second');",
    )
    .await
    .unwrap();
    let keys = TestKeys::generate();
    let mut config = ServeConfig {
        storage: Some(server.config("storage").into()),
        port: 0,
        sync_rules: Some(RULES.into()),
        sync_rules_origin: "test".into(),
        ..ServeConfig::new(server.config("source"), common::auth(&keys))
    };
    config.logging.level = "warn".into();
    let running = serve::start(config.clone()).await.unwrap();
    let endpoint = format!("http://127.0.0.1:{}", running.port);
    common::wait_ready(&riptide_testkit::http(), &endpoint, T).await;
    let mut client = FaultClient::new(&endpoint, "u1", keys.token("u1", 600, Value::Null));
    converge(&mut client, &db).await;
    running.cancel.cancel();
    let _ = running.task.await;

    // While the service is stopped, WAL beyond max_slot_wal_keep_size invalidates its slot.
    db.batch_execute("INSERT INTO items VALUES ('c', 'while stopped')")
        .await
        .unwrap();
    for _ in 0..4 {
        db.batch_execute(
            "INSERT INTO filler SELECT repeat(md5(g::text), 40) FROM generate_series(1, 20000) g;
             SELECT pg_switch_wal(); CHECKPOINT;",
        )
        .await
        .unwrap();
    }
    let lost: String = db
        .query_one("SELECT wal_status FROM pg_replication_slots", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(lost, "lost", "the slot is invalidated");

    let store = PgStorage::connect(&server.url("storage")).await.unwrap();
    let before = store.active_deployment().await.unwrap().unwrap();
    let running = serve::start(config).await.unwrap();
    let endpoint = format!("http://127.0.0.1:{}", running.port);
    // Detected and reported, while the old deployment keeps serving.
    wait_for("readiness to report the lost slot", T, || {
        let endpoint = endpoint.clone();
        async move {
            let (status, body) = get_json(&endpoint, "/probes/readiness").await?;
            let error = body["replication"]["error"].as_str()?.to_owned();
            (status == 200 && error.contains("slot")).then_some(())
        }
    })
    .await;
    assert!(metric(&endpoint, "riptide_replication_slot_invalidations_total").await >= 1.0);
    // Recovered by a new deployment of the same rules.
    let after = wait_for("a new deployment to serve", Duration::from_secs(60), || {
        let store = store.clone();
        let before = before.id;
        async move {
            let d = store.active_deployment().await.ok()??;
            (d.id != before).then_some(d)
        }
    })
    .await;
    assert_eq!(after.content, before.content, "the same rules");
    // A client of the old deployment moves to the new one's buckets.
    client.moved_to(&endpoint);
    converge(&mut client, &db).await;
    running.cancel.cancel();
}
