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
