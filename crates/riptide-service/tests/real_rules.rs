//! A stream over real sync rules (`riptide_rules::SyncRules`): rows evaluated by the rules go
//! into `MemoryStorage`, a user's stream gets exactly its buckets, and a membership row (a
//! parameter-query lookup) grants another bucket live.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{Harness, Spec};
use riptide_protocol::Lsn;
use riptide_rules::{Row, SqliteValue, SyncRules, TableRef};
use riptide_storage::{
    BatchOperation, BucketRow, BucketStorage, ParameterRow, RowChange, RowOperation,
};
use riptide_testkit::SyncClient;
use serde_json::json;

const RULES: &str = r#"
bucket_definitions:
  global:
    data:
      - SELECT * FROM lists WHERE shared = 1
  own_lists:
    priority: 1
    parameters: SELECT request.user_id() AS user_id
    data:
      - SELECT * FROM lists WHERE owner_id = bucket.user_id
  member_lists:
    parameters: SELECT list_id FROM members WHERE user_id = request.user_id()
    data:
      - SELECT * FROM todos WHERE list_id = bucket.list_id
"#;

fn text_row(cols: &[(&str, &str)]) -> Row {
    let mut row = Row::new();
    for (k, v) in cols {
        row.insert(*k, SqliteValue::Text((*v).to_owned()));
    }
    row
}

/// What the replicator would write for a source row.
fn evaluate(rules: &SyncRules, table: &str, row: &Row) -> BatchOperation {
    let t = TableRef::new("public", table);
    let eval = rules.evaluate_row(&t, row);
    assert!(eval.errors.is_empty(), "{:?}", eval.errors);
    let id = match row.get("id") {
        Some(SqliteValue::Text(s)) => s.clone(),
        _ => panic!("row without id"),
    };
    BatchOperation::Row(RowOperation {
        source_table: t.qualified(),
        key: id.into_bytes(),
        change: RowChange::Upsert {
            row: row.encode(),
            buckets: eval
                .rows
                .into_iter()
                .map(|r| BucketRow {
                    bucket: r.bucket,
                    table: r.table,
                    id: r.id,
                    data: r.data,
                })
                .collect(),
            parameters: rules
                .evaluate_parameter_row(&t, row)
                .into_iter()
                .map(|p| ParameterRow {
                    lookup: p.lookup.key(),
                    result: p.result,
                })
                .collect(),
        },
    })
}

#[tokio::test]
async fn streams_the_buckets_real_rules_grant() {
    let rules = Arc::new(SyncRules::parse(RULES).unwrap());
    let mut mine = text_row(&[("id", "l1"), ("owner_id", "u1"), ("name", "Mine")]);
    mine.insert("shared", SqliteValue::Integer(0));
    let mut shared = text_row(&[("id", "l2"), ("owner_id", "u2"), ("name", "Shared")]);
    shared.insert("shared", SqliteValue::Integer(1));
    let snapshot = vec![
        evaluate(&rules, "lists", &mine),
        evaluate(&rules, "lists", &shared),
        evaluate(
            &rules,
            "todos",
            &text_row(&[("id", "t1"), ("list_id", "l2")]),
        ),
    ];
    let mut spec = Spec::new(rules.clone(), snapshot);
    spec.rules_text = RULES.into();
    spec.snapshot_lsn = Lsn(100);
    let h = Harness::start(spec, |_| {}, |storage, _| Arc::new(storage)).await;
    let (storage, keys, events, state) = (&h.storage, &h.keys, &h.events, h.state.clone());
    let dep_id = h.deployment;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(riptide_service::serve(listener, state, cancel.clone()));

    let client = SyncClient::new(format!("http://{addr}"), keys.token("u1", 300, json!({})));
    let mut stream = client.stream(json!({"client_id": "c1"})).await;
    let lines = stream
        .until("checkpoint_complete", Duration::from_secs(5))
        .await;
    let cp = &lines[0]["checkpoint"];
    let names: Vec<&str> = cp["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bucket"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{cp}");
    assert!(names.iter().any(|n| n.contains("global")), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.contains("own_lists") && n.contains("u1")),
        "{names:?}"
    );
    assert_eq!(cp["streams"].as_array().unwrap().len(), 3);
    // Classic definitions are default streams: each bucket serves its definition's entry.
    for b in cp["buckets"].as_array().unwrap() {
        let definition = if b["bucket"].as_str().unwrap().contains("global") {
            0
        } else {
            1
        };
        assert_eq!(
            b["subscriptions"],
            json!([{ "default": definition }]),
            "{cp}"
        );
    }
    let synced: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.get("data"))
        .flat_map(|d| d["data"].as_array().unwrap())
        .map(|op| op["object_id"].as_str().unwrap())
        .collect();
    assert_eq!(synced.len(), 2, "{lines:?}");
    assert!(synced.contains(&"l1") && synced.contains(&"l2"));

    // Membership in list l2 grants its todos.
    let mut batch = storage.begin_batch(dep_id).await.unwrap();
    batch
        .save(vec![evaluate(
            &rules,
            "members",
            &text_row(&[("id", "m1"), ("user_id", "u1"), ("list_id", "l2")]),
        )])
        .await
        .unwrap();
    let event = batch.commit(Lsn(200)).await.unwrap();
    assert!(!event.changed_lookups.is_empty());
    events.send(event).unwrap();
    let lines = stream
        .until("checkpoint_complete", Duration::from_secs(5))
        .await;
    let diff = &lines[0]["checkpoint_diff"];
    assert_eq!(
        diff["updated_buckets"].as_array().unwrap().len(),
        1,
        "{diff}"
    );
    assert!(
        diff["updated_buckets"][0]["bucket"]
            .as_str()
            .unwrap()
            .contains("member_lists")
    );
    let todo = lines.iter().find_map(|l| l.get("data")).unwrap();
    assert_eq!(todo["data"][0]["object_id"], "t1");
    cancel.cancel();
}

const STREAMS: &str = r#"
config:
  edition: 3
streams:
  my_lists:
    auto_subscribe: true
    query: SELECT * FROM lists WHERE owner_id = auth.user_id()
  list_todos:
    priority: 1
    query: |
      SELECT * FROM todos WHERE list_id = subscription.parameter('list_id')
        AND list_id IN (SELECT list_id FROM members WHERE user_id = auth.user_id())
"#;

/// A service over [`STREAMS`] with lists l1 (u1's) and l2 (u2's), a todo in each, and u1 a
/// member of l1.
async fn streams_service() -> (Harness, Arc<SyncRules>, std::net::SocketAddr) {
    let rules = Arc::new(SyncRules::parse(STREAMS).unwrap());
    let snapshot = vec![
        evaluate(
            &rules,
            "lists",
            &text_row(&[("id", "l1"), ("owner_id", "u1")]),
        ),
        evaluate(
            &rules,
            "lists",
            &text_row(&[("id", "l2"), ("owner_id", "u2")]),
        ),
        evaluate(
            &rules,
            "todos",
            &text_row(&[("id", "t1"), ("list_id", "l1")]),
        ),
        evaluate(
            &rules,
            "todos",
            &text_row(&[("id", "t2"), ("list_id", "l2")]),
        ),
        evaluate(
            &rules,
            "members",
            &text_row(&[("id", "m1"), ("user_id", "u1"), ("list_id", "l1")]),
        ),
    ];
    let mut spec = Spec::new(rules.clone(), snapshot);
    spec.rules_text = STREAMS.into();
    let h = Harness::start(spec, |_| {}, |storage, _| Arc::new(storage)).await;
    let (addr, _task) = h.serve().await;
    (h, rules, addr)
}

fn put_ids(lines: &[serde_json::Value]) -> Vec<String> {
    let mut ids: Vec<String> = lines
        .iter()
        .filter_map(|l| l.get("data"))
        .flat_map(|d| d["data"].as_array().unwrap())
        .filter(|op| op["op"] == "PUT")
        .map(|op| op["object_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// The bucket entries of a `checkpoint` / `checkpoint_diff` whose name contains `part`.
fn bucket_with<'a>(buckets: &'a serde_json::Value, part: &str) -> Vec<&'a serde_json::Value> {
    buckets
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["bucket"].as_str().unwrap().contains(part))
        .collect()
}

#[tokio::test]
async fn stream_subscriptions_get_their_buckets_reasons_and_errors() {
    let (mut h, rules, addr) = streams_service().await;
    let client = SyncClient::new(format!("http://{addr}"), h.token("u1"));
    let mut stream = client
        .stream(
            json!({"client_id": "c1", "streams": {"include_defaults": true, "subscriptions": [
                {"stream": "list_todos", "parameters": {"list_id": "l1"}},
                {"stream": "list_todos", "parameters": {"list_id": "l2"}, "override_priority": 0},
                {"stream": "nope", "parameters": null},
                {"stream": "list_todos", "parameters": {}},
            ]}}),
        )
        .await;
    let lines = stream
        .until("checkpoint_complete", Duration::from_secs(5))
        .await;
    let cp = &lines[0]["checkpoint"];
    // The default stream, the subscribed one (its parameterless subscription in error), and
    // the unknown one: errors per subscription, the others unaffected.
    let streams = cp["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 3, "{cp}");
    assert_eq!(
        streams[0],
        json!({"name": "my_lists", "is_default": true, "errors": []})
    );
    assert_eq!(streams[1]["name"], "list_todos");
    assert_eq!(streams[1]["is_default"], false);
    assert_eq!(streams[1]["errors"].as_array().unwrap().len(), 1, "{cp}");
    assert_eq!(streams[1]["errors"][0]["subscription"], 3);
    assert!(
        streams[1]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("list_id"),
        "{cp}"
    );
    assert_eq!(streams[2]["name"], "nope");
    assert_eq!(streams[2]["errors"][0]["subscription"], 2, "{cp}");
    // u1's lists by default; l1's todos through subscription 0 at the stream's priority; l2's
    // not (u1 is no member).
    let buckets = &cp["buckets"];
    assert_eq!(buckets.as_array().unwrap().len(), 2, "{cp}");
    let lists = bucket_with(buckets, "my_lists");
    assert_eq!(lists[0]["subscriptions"], json!([{"default": 0}]), "{cp}");
    assert_eq!(lists[0]["priority"], 3);
    let todos = bucket_with(buckets, "\"l1\"");
    assert_eq!(todos[0]["subscriptions"], json!([{"sub": 0}]), "{cp}");
    assert_eq!(todos[0]["priority"], 1);
    assert_eq!(put_ids(&lines), ["l1", "t1"]);

    // Joining l2 grants its todos live, through subscription 1 at its override priority.
    h.commit(vec![evaluate(
        &rules,
        "members",
        &text_row(&[("id", "m2"), ("user_id", "u1"), ("list_id", "l2")]),
    )])
    .await;
    let lines = stream
        .until("checkpoint_complete", Duration::from_secs(5))
        .await;
    let diff = &lines[0]["checkpoint_diff"];
    let added = bucket_with(&diff["updated_buckets"], "\"l2\"");
    assert_eq!(added.len(), 1, "{diff}");
    assert_eq!(added[0]["subscriptions"], json!([{"sub": 1}]), "{diff}");
    assert_eq!(added[0]["priority"], 0);
    assert_eq!(put_ids(&lines), ["t2"]);

    // Leaving l1 takes its todos away.
    h.commit(vec![BatchOperation::Row(RowOperation {
        source_table: "public.members".into(),
        key: b"m1".to_vec(),
        change: RowChange::Delete,
    })])
    .await;
    let lines = stream
        .until("checkpoint_complete", Duration::from_secs(5))
        .await;
    let diff = &lines[0]["checkpoint_diff"];
    let removed = diff["removed_buckets"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{diff}");
    assert!(removed[0].as_str().unwrap().contains("\"l1\""), "{diff}");
}

#[tokio::test]
async fn without_defaults_only_the_subscriptions_sync_and_they_change_between_connections() {
    let (h, _rules, addr) = streams_service().await;
    let client = SyncClient::new(format!("http://{addr}"), h.token("u1"));
    let mut stream = client
        .stream(
            json!({"client_id": "c1", "streams": {"include_defaults": false, "subscriptions": [
                {"stream": "list_todos", "parameters": {"list_id": "l1"}},
            ]}}),
        )
        .await;
    let lines = stream
        .until("checkpoint_complete", Duration::from_secs(5))
        .await;
    let cp = &lines[0]["checkpoint"];
    assert_eq!(
        cp["streams"],
        json!([{"name": "list_todos", "is_default": false, "errors": []}])
    );
    assert_eq!(cp["buckets"].as_array().unwrap().len(), 1, "{cp}");
    assert_eq!(put_ids(&lines), ["t1"]);
    drop(stream);

    // The next connection subscribes to nothing but the defaults: l1's todos bucket is gone
    // from its checkpoint, which the client holds against its local buckets.
    let mut stream = client
        .stream(json!({"client_id": "c1", "buckets": [], "streams": {"include_defaults": true, "subscriptions": []}}))
        .await;
    let lines = stream
        .until("checkpoint_complete", Duration::from_secs(5))
        .await;
    let cp = &lines[0]["checkpoint"];
    assert_eq!(
        cp["streams"],
        json!([{"name": "my_lists", "is_default": true, "errors": []}])
    );
    assert_eq!(bucket_with(&cp["buckets"], "list_todos").len(), 0, "{cp}");
    assert_eq!(put_ids(&lines), ["l1"]);
}
