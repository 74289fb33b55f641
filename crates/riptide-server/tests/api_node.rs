//! Two processes' worth of service on one storage, in process: node 1 is `serve::start` (it
//! replicates), node 2 an "API node" — a second `AppState` on its own `PgStorage`, no
//! replicator, following node 1's commits through its `CheckpointListener`. A client on node 2
//! gets every write, bucket changes from parameter lookups, and the write checkpoints it
//! requested on node 1; node 2 hears of the deployment node 1 activates.

use std::sync::Arc;
use std::time::Duration;

use riptide_server::config::Logging;
use riptide_server::deployments::deployment_rules;
use riptide_server::embedded::{DEMO_RULES, DEMO_SCHEMA};
use riptide_server::serve;
use riptide_service::node_notifications::DeploymentHook;
use riptide_service::{ActiveRules, AppState, KeyStore, PgSourceDatabase, ServiceOptions};
use riptide_storage::{
    BucketStorage, CheckpointEvent, CheckpointListener, DeploymentState, PgStorage,
};
use riptide_testkit::{SyncClient, TestDatabase, TestKeys, wait_for};
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::common;

const T: Duration = Duration::from_secs(30);
const ADMIN: &str = "admin-token";

/// Node 2: the service on `storage` without a replicator, listening for node 1's commits.
async fn api_node(
    source: &TestDatabase,
    storage: &TestDatabase,
    keys: &TestKeys,
    cancel: &CancellationToken,
    on_deployment: DeploymentHook,
) -> String {
    let pg = PgStorage::connect(&storage.url()).await.unwrap();
    let active = pg
        .active_deployment()
        .await
        .unwrap()
        .expect("node 1 deployed");
    let (rules_tx, rules_rx) = watch::channel(Some(ActiveRules {
        deployment: active.id,
        rules: deployment_rules(&active).unwrap(),
    }));
    // The sender lives as long as the service (a closed rules channel ends every stream).
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            cancel.cancelled().await;
            drop(rules_tx);
        }
    });
    let (events, _) = broadcast::channel::<CheckpointEvent>(1024);
    let state = AppState::new(
        ServiceOptions::new(KeyStore::new(common::auth(keys)).unwrap()),
        Arc::new(pg.clone()),
        rules_rx,
        events,
        Arc::new(PgSourceDatabase::new(source.connection().pool(2).unwrap())),
    );
    CheckpointListener::new(&storage.connection(), &pg)
        .spawn(state.notification_sink(Some(on_deployment)), cancel.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(riptide_service::serve(listener, state, cancel.clone()));
    format!("http://127.0.0.1:{port}")
}

/// Object ids of the PUT ops of `table` in the lines, any order.
fn puts(lines: &[Value], table: &str) -> Vec<String> {
    common::put_ids(lines, table)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_an_api_node_gets_every_write_and_its_write_checkpoints() {
    riptide_server::logging::init(&Logging {
        level: "debug".into(),
        json: false,
    });
    let source = TestDatabase::create().await;
    let storage = source.sibling("storage").await;
    let db = source.client().await;
    db.batch_execute(DEMO_SCHEMA).await.unwrap();
    db.batch_execute(
        "INSERT INTO lists (id, name, owner_id) VALUES
           ('00000000-0000-0000-0000-00000000000a', 'A groceries', 'alice'),
           ('00000000-0000-0000-0000-00000000000b', 'B work', 'bob');",
    )
    .await
    .unwrap();
    let keys = TestKeys::generate();
    let mut config = common::serve_config(&source, &storage, &keys);
    config.sync_rules = Some(DEMO_RULES.to_owned());
    config.api_tokens = vec![ADMIN.into()];
    let node1 = serve::start(config).await.expect("node 1 starts");
    let endpoint1 = format!("http://127.0.0.1:{}", node1.port);
    let http = riptide_testkit::http();
    common::wait_ready(&http, &endpoint1, T).await;

    let cancel = CancellationToken::new();
    let (deployed_tx, mut deployed) = tokio::sync::mpsc::unbounded_channel();
    let hook: DeploymentHook = Arc::new(move |id, state| {
        let _ = deployed_tx.send((id, state));
    });
    let endpoint2 = api_node(&source, &storage, &keys, &cancel, hook).await;
    // Both listeners listening (node 1's and node 2's).
    let admin = storage.client().await;
    wait_for("two listeners", T, || {
        let admin = &admin;
        async move {
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND application_name = $1",
                    &[&riptide_storage::LISTENER_APPLICATION_NAME],
                )
                .await
                .ok()?
                .get(0);
            (n == 2).then_some(())
        }
    })
    .await;

    let token = keys.token("alice", 600, json!({}));
    let on_node2 = SyncClient::new(&endpoint2, token.clone());
    let on_node1 = SyncClient::new(&endpoint1, token);
    let mut a = on_node2.stream(json!({"client_id": "a1"})).await;
    let lines = a.until("checkpoint_complete", T).await;
    assert_eq!(
        puts(&lines, "lists"),
        vec!["00000000-0000-0000-0000-00000000000a"]
    );

    // Writes replicated by node 1 reach the stream on node 2, one checkpoint each.
    for description in ["milk", "eggs", "bread"] {
        db.execute(
            "INSERT INTO todos (list_id, description, created_by) \
             VALUES ('00000000-0000-0000-0000-00000000000a', $1, 'alice')",
            &[&description],
        )
        .await
        .unwrap();
        let lines = a.until("checkpoint_complete", T).await;
        assert_eq!(puts(&lines, "todos").len(), 1, "{lines:?}");
    }

    // A parameter lookup changed by node 1 adds a bucket on node 2.
    db.execute(
        "INSERT INTO list_members (list_id, user_id) \
         VALUES ('00000000-0000-0000-0000-00000000000b', 'alice')",
        &[],
    )
    .await
    .unwrap();
    let lines = a.until("checkpoint_complete", T).await;
    assert_eq!(
        puts(&lines, "lists"),
        vec!["00000000-0000-0000-0000-00000000000b"],
        "{lines:?}"
    );

    // A write checkpoint requested on node 1 is reported on node 2's stream.
    let wc: i64 = on_node1.write_checkpoint("a1").await.parse().unwrap();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "write checkpoint {wc} never reported on node 2"
        );
        let line = a.next_line(T).await.expect("stream stays open");
        let reported = line
            .pointer("/checkpoint_diff/write_checkpoint")
            .or_else(|| line.pointer("/checkpoint/write_checkpoint"))
            .and_then(Value::as_str)
            .and_then(|w| w.parse::<i64>().ok());
        if reported.is_some_and(|w| w >= wc) {
            break;
        }
    }

    // Node 2 counted what it received.
    let metrics = http
        .get(format!("{endpoint2}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |series: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let received = |kind: &str| {
        value(&format!(
            "riptide_notifications_received_total{{kind=\"{kind}\"}}"
        ))
    };
    assert!(received("checkpoint") >= 4.0, "{metrics}");
    assert!(received("write_checkpoint") >= 1.0, "{metrics}");
    assert_eq!(value("riptide_notifications_bad_total "), 0.0);
    assert!(
        metrics.contains("riptide_notification_lag_seconds"),
        "{metrics}"
    );

    // The rules reprocessed on node 1 (a new deployment on a new slot, activated once its
    // snapshot is done): node 2 hears of the activation.
    let resp = http
        .post(format!("{endpoint1}/api/sync-rules/v1/reprocess"))
        .bearer_auth(ADMIN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let (id, state) = tokio::time::timeout(T, deployed.recv())
        .await
        .expect("node 2 hears of the new deployment")
        .unwrap();
    assert_eq!(state, DeploymentState::Active);
    let pg = PgStorage::connect(&storage.url()).await.unwrap();
    assert_eq!(
        pg.active_deployment().await.unwrap().map(|d| d.id),
        Some(id)
    );
    cancel.cancel();
    node1.cancel.cancel();
}
