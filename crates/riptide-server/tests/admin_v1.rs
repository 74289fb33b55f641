//! PowerSync's admin API v1 and the legacy write checkpoint against a real `riptide serve` and
//! Postgres: diagnostics, validate, schema, execute-sql (read-only, row limit, arguments),
//! reprocess (busy while the new deployment snapshots, then active on the new slot) and
//! `GET /write-checkpoint.json`.

use std::time::Duration;

use riptide_server::embedded::DEMO_SCHEMA;
use riptide_server::serve;
use riptide_testkit::{TestDatabase, TestKeys, wait_for};
use serde_json::{Value, json};

use crate::common;

const T: Duration = Duration::from_secs(30);
const ADMIN: &str = "v1-admin-token";

const RULES: &str = "bucket_definitions:
  mine:
    parameters: SELECT id AS list_id FROM lists WHERE owner_id = request.user_id()
    data:
      - SELECT * FROM todos WHERE list_id = bucket.list_id
";

async fn post(http: &reqwest::Client, endpoint: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = http
        .post(format!("{endpoint}{path}"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_v1_against_a_running_service() {
    let source = TestDatabase::create().await;
    let storage = source.sibling("storage").await;
    let db = source.client().await;
    db.batch_execute(DEMO_SCHEMA).await.unwrap();
    db.batch_execute(
        "INSERT INTO lists (id, name, owner_id) VALUES
           ('00000000-0000-0000-0000-00000000000a', 'A', 'alice'),
           ('00000000-0000-0000-0000-00000000000b', 'B', 'alice'),
           ('00000000-0000-0000-0000-00000000000c', 'C', 'bob');",
    )
    .await
    .unwrap();
    let keys = TestKeys::generate();
    let mut config = common::serve_config(&source, &storage, &keys);
    config.sync_rules = Some(RULES.into());
    config.api_tokens = vec![ADMIN.into()];
    config.execute_sql.enabled = true;
    config.execute_sql.max_rows = 2;
    let running = serve::start(config).await.unwrap();
    let endpoint = format!("http://127.0.0.1:{}", running.port);
    let http = riptide_testkit::http();
    common::wait_ready(&http, &endpoint, T).await;

    // Diagnostics: the connection, the active deployment and its tables.
    let (status, body) = post(
        &http,
        &endpoint,
        "/api/admin/v1/diagnostics",
        json!({"sync_rules_content": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let d = &body["data"];
    assert_eq!(d["connections"][0]["connected"], true, "{d}");
    assert_eq!(d["connections"][0]["errors"], json!([]), "{d}");
    let active = &d["active_sync_rules"];
    assert_eq!(active["content"], RULES);
    let conn = &active["connections"][0];
    assert_eq!(conn["initial_replication_done"], true, "{active}");
    let first_slot = conn["slot_name"].as_str().unwrap().to_owned();
    assert!(first_slot.starts_with("riptide_"), "{first_slot}");
    assert!(conn["last_lsn"].is_string(), "{conn}");
    assert!(conn["replication_lag_bytes"].is_u64(), "{conn}");
    let tables = conn["tables"].as_array().unwrap();
    let lists = tables.iter().find(|t| t["name"] == "lists").unwrap();
    assert_eq!(lists["schema"], "public");
    assert_eq!(lists["replication_id"], json!(["id"]));
    assert_eq!(lists["parameter_queries"], true);
    assert_eq!(lists["data_queries"], false);
    let todos = tables.iter().find(|t| t["name"] == "todos").unwrap();
    assert_eq!(todos["data_queries"], true);
    assert_eq!(active["errors"], json!([]), "{active}");
    assert!(d.get("deploying_sync_rules").is_none(), "{d}");

    // Validate: a missing table and a syntax error are fatal errors; good rules have none.
    let (_, body) = post(
        &http,
        &endpoint,
        "/api/admin/v1/validate",
        json!({"sync_rules": "bucket_definitions:\n  b:\n    data:\n      - SELECT * FROM nowhere\n"}),
    )
    .await;
    let errors = body["data"]["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["level"] == "fatal"
                && e["message"].as_str().unwrap().contains("does not exist")),
        "{body}"
    );
    let (_, body) = post(
        &http,
        &endpoint,
        "/api/admin/v1/validate",
        json!({"sync_rules": "bucket_definitions: ["}),
    )
    .await;
    assert!(
        !body["data"]["errors"].as_array().unwrap().is_empty(),
        "{body}"
    );
    let (_, body) = post(
        &http,
        &endpoint,
        "/api/admin/v1/validate",
        json!({"sync_rules": RULES}),
    )
    .await;
    assert_eq!(body["data"]["errors"], json!([]), "{body}");
    assert_eq!(
        body["data"]["connections"][0]["tables"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Schema: the demo tables with their types.
    let (_, body) = post(&http, &endpoint, "/api/admin/v1/schema", json!({})).await;
    let schemas = &body["data"]["connections"][0]["schemas"];
    let public = schemas
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "public")
        .unwrap();
    let lists = public["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "lists")
        .unwrap();
    let id = &lists["columns"][0];
    assert_eq!(id["name"], "id");
    assert_eq!(id["pg_type"], "uuid");
    assert_eq!(id["sqlite_type"], "text");
    assert_eq!(body["data"]["defaultSchema"], "public");

    // execute-sql: at most max_rows rows, arguments bound, writes refused (read-only).
    let (_, body) = post(
        &http,
        &endpoint,
        "/api/admin/v1/execute-sql",
        json!({"sql": {"query": "SELECT name FROM lists ORDER BY name", "args": []}}),
    )
    .await;
    assert_eq!(body["data"]["success"], true, "{body}");
    assert_eq!(body["data"]["results"]["columns"], json!(["name"]));
    assert_eq!(body["data"]["results"]["rows"], json!([["A"], ["B"]]));
    let (_, body) = post(
        &http,
        &endpoint,
        "/api/admin/v1/execute-sql",
        json!({"sql": {"query": "SELECT count(*) AS n FROM lists WHERE owner_id = $1 AND $2", "args": ["it's alice", true]}}),
    )
    .await;
    assert_eq!(body["data"]["results"]["rows"], json!([["0"]]), "{body}");
    let (_, body) = post(
        &http,
        &endpoint,
        "/api/admin/v1/execute-sql",
        json!({"sql": {"query": "DELETE FROM lists", "args": []}}),
    )
    .await;
    assert_eq!(body["data"]["success"], false, "{body}");
    assert!(
        body["data"]["error"]
            .as_str()
            .unwrap()
            .contains("read-only"),
        "{body}"
    );
    let left: i64 = db
        .query_one("SELECT count(*) FROM lists", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 3);

    // The legacy write checkpoint: a checkpoint id once replication passed the source's position.
    db.batch_execute(
        "INSERT INTO todos (id, list_id, description, created_by) VALUES \
         ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-00000000000a', 'milk', 'alice')",
    )
    .await
    .unwrap();
    let resp = http
        .get(format!("{endpoint}/write-checkpoint.json?client_id=c1"))
        .bearer_auth(keys.token("alice", 600, json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    let checkpoint: i64 = body["data"]["checkpoint"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(checkpoint > 0, "{body}");

    // Reprocess: hold the snapshot with a lock, so the new deployment stays processing.
    let mut locker = source.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE lists IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let (status, body) = post(&http, &endpoint, "/api/sync-rules/v1/reprocess", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let new_slot = body["data"]["slot_name"].as_str().unwrap().to_owned();
    assert_ne!(new_slot, first_slot);
    let (status, body) = post(&http, &endpoint, "/api/admin/v1/reprocess", json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "PSYNC_S4106");
    let (_, body) = post(&http, &endpoint, "/api/admin/v1/diagnostics", json!({})).await;
    let deploying = &body["data"]["deploying_sync_rules"]["connections"][0];
    assert_eq!(deploying["slot_name"], new_slot.as_str(), "{body}");
    assert_eq!(deploying["initial_replication_done"], false, "{body}");
    lock.rollback().await.unwrap();

    // Once its snapshot is done the new deployment serves.
    wait_for("the reprocessed deployment to serve", T, || {
        let http = http.clone();
        let endpoint = endpoint.clone();
        let new_slot = new_slot.clone();
        async move {
            let (_, body) = post(&http, &endpoint, "/api/admin/v1/diagnostics", json!({})).await;
            let active = &body["data"]["active_sync_rules"]["connections"][0]["slot_name"];
            (active == new_slot.as_str() && body["data"].get("deploying_sync_rules").is_none())
                .then_some(())
        }
    })
    .await;

    running.cancel.cancel();
    running.task.await.unwrap().unwrap();
}
