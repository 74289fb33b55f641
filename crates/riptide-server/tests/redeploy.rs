//! Zero-downtime rule deployments through the admin API, against a real Postgres: a connected
//! client moves from the old deployment's buckets to the new one's through ordinary checkpoint
//! lines, never sees an error, and the old slot and storage are removed.

use std::time::Duration;

use riptide_server::config::{Logging, ServeConfig};
use riptide_server::embedded::DEMO_SCHEMA;
use riptide_server::serve;
use riptide_testkit::{SyncClient, TestDatabase, TestKeys, wait_for};
use serde_json::{Value, json};

use crate::common;

const T: Duration = Duration::from_secs(30);
const ADMIN: &str = "test-admin-token";

const LISTS_ONLY: &str = "bucket_definitions:
  mine:
    parameters: SELECT request.user_id() AS user_id
    data:
      - SELECT * FROM lists WHERE owner_id = bucket.user_id
";

const LISTS_AND_TODOS: &str = "bucket_definitions:
  by_owner:
    parameters: SELECT request.user_id() AS user_id
    data:
      - SELECT * FROM lists WHERE owner_id = bucket.user_id
      - SELECT * FROM todos WHERE created_by = bucket.user_id
";

/// No sync_config: rules come from the admin API.
fn config(source: &TestDatabase, storage: &TestDatabase, keys: &TestKeys) -> ServeConfig {
    let mut config = common::serve_config(source, storage, keys);
    config.sync_rules_origin = "the admin API".into();
    config.api_tokens = vec![ADMIN.into()];
    config
}

async fn admin(
    http: &reqwest::Client,
    endpoint: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http
        .request(method, format!("{endpoint}{path}"))
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn slots(db: &tokio_postgres::Client) -> Vec<String> {
    db.query("SELECT slot_name FROM pg_replication_slots ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploy_with_a_connected_client_switches_buckets_without_errors() {
    riptide_server::logging::init(&Logging {
        level: "info".into(),
        json: false,
    });
    let source = TestDatabase::create().await;
    let storage = source.sibling("storage").await;
    let db = source.client().await;
    db.batch_execute(DEMO_SCHEMA).await.unwrap();
    db.batch_execute(
        "INSERT INTO lists (id, name, owner_id) VALUES
           ('00000000-0000-0000-0000-00000000000a', 'A groceries', 'alice'),
           ('00000000-0000-0000-0000-00000000000b', 'B work', 'bob');
         INSERT INTO todos (id, list_id, description, created_by) VALUES
           ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-00000000000a', 'milk', 'alice'),
           ('00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-00000000000b', 'report', 'bob');",
    )
    .await
    .unwrap();
    let keys = TestKeys::generate();
    let running = serve::start(config(&source, &storage, &keys))
        .await
        .expect("service starts without rules");
    let endpoint = format!("http://127.0.0.1:{}", running.port);
    let http = riptide_testkit::http();

    // No rules yet: nothing current; the first deploy becomes active.
    let (s, body) = admin(
        &http,
        &endpoint,
        reqwest::Method::GET,
        "/api/sync-rules/v1/current",
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["data"]["current"], Value::Null);
    let (s, body) = admin(
        &http,
        &endpoint,
        reqwest::Method::POST,
        "/api/sync-rules/v1/deploy",
        Some(json!({ "content": LISTS_ONLY })),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let first_id = body["data"]["id"].as_i64().unwrap();
    let first_slot = body["data"]["slot_name"].as_str().unwrap().to_owned();
    wait_for("first deployment active", T, || {
        let http = http.clone();
        let url = format!("{endpoint}/probes/readiness");
        async move {
            http.get(url)
                .send()
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(())
        }
    })
    .await;

    // Invalid rules are refused with their location; nothing changes.
    let (s, body) = admin(
        &http,
        &endpoint,
        reqwest::Method::POST,
        "/api/sync-rules/v1/deploy",
        Some(json!({ "content": LISTS_ONLY.replace("owner_id = bucket", "no_such_column = bucket") })),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    let errors = body["error"]["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(
            |e| e["message"].as_str().unwrap().contains("no_such_column")
                && e["line"].as_u64() == Some(5)
        ),
        "{body}"
    );

    // alice streams under the first rules: her list, no todos.
    let alice = SyncClient::new(&endpoint, keys.token("alice", 600, json!({})));
    let mut a = alice
        .stream(json!({"client_id": "a1", "raw_data": true}))
        .await;
    let lines = a.until("checkpoint_complete", T).await;
    let first = lines[0]["checkpoint"]["buckets"].as_array().unwrap();
    let first_names: Vec<&str> = first
        .iter()
        .map(|b| b["bucket"].as_str().unwrap())
        .collect();
    assert_eq!(first_names, vec![format!("{first_id}#mine[\"alice\"]")]);
    assert_eq!(
        common::put_ids(&lines, "lists"),
        vec!["00000000-0000-0000-0000-00000000000a"]
    );
    assert!(common::put_ids(&lines, "todos").is_empty());

    // Redeploy while she is connected.
    let (s, body) = admin(
        &http,
        &endpoint,
        reqwest::Method::POST,
        "/api/sync-rules/v1/deploy",
        Some(json!({ "content": LISTS_AND_TODOS })),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let second_id = body["data"]["id"].as_i64().unwrap();
    assert!(second_id > first_id);
    assert_ne!(body["data"]["slot_name"].as_str().unwrap(), first_slot);

    // Her stream moves to the new buckets through a checkpoint_diff, with their data.
    let mut seen: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + T;
    let switched = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no switch: {seen:?}"
        );
        let lines = a.until("checkpoint_complete", T).await;
        for l in &lines {
            assert!(l.get("error").is_none(), "error line: {l}");
        }
        let diff = lines.iter().find_map(|l| l.get("checkpoint_diff")).cloned();
        seen.extend(lines.iter().cloned());
        if let Some(diff) = diff
            && diff["removed_buckets"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        {
            break (diff, lines);
        }
    };
    let (diff, lines) = switched;
    assert_eq!(
        diff["removed_buckets"],
        json!([format!("{first_id}#mine[\"alice\"]")]),
        "{diff}"
    );
    let added: Vec<&str> = diff["updated_buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bucket"].as_str().unwrap())
        .collect();
    assert_eq!(
        added,
        vec![format!("{second_id}#by_owner[\"alice\"]")],
        "{diff}"
    );
    assert_eq!(
        common::put_ids(&lines, "lists"),
        vec!["00000000-0000-0000-0000-00000000000a"]
    );
    assert_eq!(
        common::put_ids(&lines, "todos"),
        vec!["00000000-0000-0000-0000-0000000000a1"]
    );

    // The old deployment is gone: slot dropped, storage terminated.
    wait_for("old slot dropped", T, || {
        let db = &db;
        let first_slot = first_slot.clone();
        async move { (!slots(db).await.contains(&first_slot)).then_some(()) }
    })
    .await;
    let storage_db = storage.client().await;
    wait_for("old deployment terminated", T, || {
        let storage_db = &storage_db;
        async move {
            let row = storage_db
                .query_one(
                    "SELECT state FROM riptide.deployments WHERE id = $1",
                    &[&first_id],
                )
                .await
                .ok()?;
            (row.get::<_, String>(0) == "TERMINATED").then_some(())
        }
    })
    .await;
    let (s, body) = admin(
        &http,
        &endpoint,
        reqwest::Method::GET,
        "/api/sync-rules/v1/current",
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["data"]["current"]["id"], second_id);
    assert_eq!(body["data"]["current"]["state"], "ACTIVE");
    assert_eq!(body["data"]["current"]["content"], LISTS_AND_TODOS);
    assert_eq!(body["data"]["next"], Value::Null);

    // The same stream keeps receiving live changes under the new rules.
    db.execute(
        "INSERT INTO todos (id, list_id, description, created_by) VALUES ('00000000-0000-0000-0000-0000000000a2', '00000000-0000-0000-0000-00000000000a', 'eggs', 'alice')",
        &[],
    )
    .await
    .unwrap();
    let lines = a.until("checkpoint_complete", T).await;
    assert_eq!(
        common::put_ids(&lines, "todos"),
        vec!["00000000-0000-0000-0000-0000000000a2"]
    );

    // Deploying the serving rules again changes nothing.
    let (s, body) = admin(
        &http,
        &endpoint,
        reqwest::Method::POST,
        "/api/sync-rules/v1/deploy",
        Some(json!({ "content": LISTS_AND_TODOS })),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["data"]["id"], second_id);

    running.cancel.cancel();
    running.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_rules_file_at_start_up_replaces_the_deployment_in_the_background() {
    let source = TestDatabase::create().await;
    let storage = source.sibling("storage").await;
    let db = source.client().await;
    db.batch_execute(DEMO_SCHEMA).await.unwrap();
    db.batch_execute(
        "INSERT INTO lists (id, name, owner_id) VALUES ('00000000-0000-0000-0000-00000000000a', 'A', 'alice');
         INSERT INTO todos (id, list_id, description, created_by) VALUES
           ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-00000000000a', 'milk', 'alice');",
    )
    .await
    .unwrap();
    let keys = TestKeys::generate();
    let http = riptide_testkit::http();
    // First start: rules from the config; the admin API refuses deploys (422).
    let mut cfg = config(&source, &storage, &keys);
    cfg.sync_rules = Some(LISTS_ONLY.into());
    let running = serve::start(cfg.clone()).await.unwrap();
    let endpoint = format!("http://127.0.0.1:{}", running.port);
    common::wait_ready(&http, &endpoint, T).await;
    let (s, body) = admin(
        &http,
        &endpoint,
        reqwest::Method::POST,
        "/api/sync-rules/v1/deploy",
        Some(json!({ "content": LISTS_AND_TODOS })),
    )
    .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["error"]["code"], "PSYNC_S4105");
    let (_, body) = admin(
        &http,
        &endpoint,
        reqwest::Method::GET,
        "/api/sync-rules/v1/current",
        None,
    )
    .await;
    let old_id = body["data"]["current"]["id"].as_i64().unwrap();
    let old_slot = body["data"]["current"]["slot_name"]
        .as_str()
        .unwrap()
        .to_owned();
    running.cancel.cancel();
    running.task.await.unwrap().unwrap();

    // Restart with the same rules: nothing changes.
    let running = serve::start(cfg.clone()).await.unwrap();
    let endpoint = format!("http://127.0.0.1:{}", running.port);
    common::wait_ready(&http, &endpoint, T).await;
    let (_, body) = admin(
        &http,
        &endpoint,
        reqwest::Method::GET,
        "/api/sync-rules/v1/current",
        None,
    )
    .await;
    assert_eq!(body["data"]["current"]["id"], old_id);
    assert_eq!(body["data"]["next"], Value::Null);
    running.cancel.cancel();
    running.task.await.unwrap().unwrap();

    // Restart with changed rules: the old deployment serves at once, the new one takes over.
    cfg.sync_rules = Some(LISTS_AND_TODOS.into());
    let running = serve::start(cfg).await.unwrap();
    let endpoint = format!("http://127.0.0.1:{}", running.port);
    common::wait_ready(&http, &endpoint, T).await;
    let new_id = wait_for("new deployment current", T, || {
        let http = http.clone();
        let endpoint = endpoint.clone();
        async move {
            let (_, body) = admin(
                &http,
                &endpoint,
                reqwest::Method::GET,
                "/api/sync-rules/v1/current",
                None,
            )
            .await;
            let current = &body["data"]["current"];
            (current["content"] == LISTS_AND_TODOS && body["data"]["next"].is_null())
                .then(|| current["id"].as_i64().unwrap())
        }
    })
    .await;
    assert!(new_id > old_id);
    wait_for("old slot dropped", T, || {
        let db = &db;
        let old_slot = old_slot.clone();
        async move { (!slots(db).await.contains(&old_slot)).then_some(()) }
    })
    .await;
    let alice = SyncClient::new(&endpoint, keys.token("alice", 600, json!({})));
    let mut a = alice
        .stream(json!({"client_id": "a1", "raw_data": true}))
        .await;
    let lines = a.until("checkpoint_complete", T).await;
    let names: Vec<&str> = lines[0]["checkpoint"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bucket"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec![format!("{new_id}#by_owner[\"alice\"]")]);
    assert_eq!(
        common::put_ids(&lines, "todos"),
        vec!["00000000-0000-0000-0000-0000000000a1"]
    );
    // The old deployment is marked TERMINATED after its slot is dropped (STOP in between).
    let storage_db = storage.client().await;
    wait_for("old deployment terminated", T, || {
        let storage_db = &storage_db;
        async move {
            let state: String = storage_db
                .query_one(
                    "SELECT state FROM riptide.deployments WHERE id = $1",
                    &[&old_id],
                )
                .await
                .unwrap()
                .get(0);
            (state == "TERMINATED").then_some(())
        }
    })
    .await;
    running.cancel.cancel();
    running.task.await.unwrap().unwrap();
}
