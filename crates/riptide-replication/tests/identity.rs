//! Replica identity (DEFAULT, USING INDEX, FULL, NOTHING), unchanged TOAST columns re-read from
//! the table, and primary-key changes, against a real Postgres.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use riptide_protocol::{OpId, OpType};
use riptide_rules::{Row, SqliteValue};
use riptide_storage::{BatchOperation, BucketStorage, RowChange};
use riptide_testkit::{TestDatabase, wait_for};

/// Row ops committed after the first `skip` commits, once there are at least `n`.
async fn wait_ops(storage: &Arc<RecordingStorage>, skip: usize, n: usize) -> Vec<BatchOperation> {
    let storage = storage.clone();
    wait_for("row ops", Duration::from_secs(30), || {
        let storage = storage.clone();
        async move {
            let ops = storage.ops_after(skip);
            (ops.len() >= n).then_some(ops)
        }
    })
    .await
}

fn upsert(op: &BatchOperation) -> Option<(Vec<u8>, Row)> {
    match op {
        BatchOperation::Row(r) => match &r.change {
            RowChange::Upsert { row, .. } => Some((r.key.clone(), Row::decode(row).unwrap())),
            RowChange::Delete => None,
        },
        BatchOperation::Truncate { .. } => None,
    }
}

fn deleted_key(op: &BatchOperation) -> Option<Vec<u8>> {
    match op {
        BatchOperation::Row(r) if r.change == RowChange::Delete => Some(r.key.clone()),
        _ => None,
    }
}

fn key_of(parts: &[&str]) -> Vec<u8> {
    let mut k = Vec::new();
    for p in parts {
        k.push(1);
        k.extend_from_slice(&(p.len() as u32).to_be_bytes());
        k.extend_from_slice(p.as_bytes());
    }
    k
}

const ITEMS_RULES: &str = "
bucket_definitions:
  global:
    data:
      - SELECT code AS id, name, n FROM items
";

async fn identity_case(setup: &str, a_key: &[&str], b_key: &[&str]) {
    let db = TestDatabase::create().await;
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "{setup}
             CREATE PUBLICATION powersync FOR ALL TABLES;
             INSERT INTO items VALUES (1, 'a', 'first', 1), (2, 'b', 'second', 2);"
        ))
        .await
        .unwrap();
    let storage = memory_storage();
    let running = start(&db, storage.clone(), None, ITEMS_RULES).await;
    running.wait_commits(1).await;
    client
        .batch_execute("UPDATE items SET n = 10 WHERE code = 'a'")
        .await
        .unwrap();
    client
        .batch_execute("DELETE FROM items WHERE code = 'b'")
        .await
        .unwrap();
    let ops = wait_ops(&storage, 1, 2).await;
    // The update hits row a (its identity key), the delete row b.
    let (key, row) = ops.iter().find_map(upsert).unwrap();
    assert_eq!(key, key_of(a_key));
    assert_eq!(row.get("n"), Some(&SqliteValue::Integer(10)));
    assert_eq!(row.get("code"), Some(&SqliteValue::Text("a".into())));
    let deletes: Vec<Vec<u8>> = ops.iter().filter_map(deleted_key).collect();
    assert_eq!(deletes, vec![key_of(b_key)]);
    running.stop().await;
}

#[tokio::test]
async fn replica_identity_default_uses_the_primary_key() {
    identity_case(
        "CREATE TABLE items (pk int4 PRIMARY KEY, code text NOT NULL, name text, n int4);",
        &["1"],
        &["2"],
    )
    .await;
}

#[tokio::test]
async fn replica_identity_using_index() {
    identity_case(
        "CREATE TABLE items (pk int4, code text NOT NULL, name text, n int4);
         CREATE UNIQUE INDEX items_code ON items (code);
         ALTER TABLE items REPLICA IDENTITY USING INDEX items_code;",
        &["a"],
        &["b"],
    )
    .await;
}

#[tokio::test]
async fn replica_identity_full_removes_the_old_image() {
    let db = TestDatabase::create().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE items (pk int4, code text NOT NULL, name text, n int4);
             ALTER TABLE items REPLICA IDENTITY FULL;
             CREATE PUBLICATION powersync FOR ALL TABLES;
             INSERT INTO items VALUES (1, 'a', 'first', 1), (2, 'b', 'second', 2);",
        )
        .await
        .unwrap();
    let storage = memory_storage();
    let running = start(&db, storage.clone(), None, ITEMS_RULES).await;
    running.wait_commits(1).await;
    client
        .batch_execute("UPDATE items SET n = 10 WHERE code = 'a'")
        .await
        .unwrap();
    client
        .batch_execute("DELETE FROM items WHERE code = 'b'")
        .await
        .unwrap();
    let ops = wait_ops(&storage, 1, 3).await;
    let deletes: Vec<Vec<u8>> = ops.iter().filter_map(deleted_key).collect();
    assert!(
        deletes.contains(&key_of(&["1", "a", "first", "1"])),
        "{deletes:?}"
    );
    assert!(
        deletes.contains(&key_of(&["2", "b", "second", "2"])),
        "{deletes:?}"
    );
    let (key, row) = ops.iter().find_map(upsert).unwrap();
    assert_eq!(key, key_of(&["1", "a", "first", "10"]));
    assert_eq!(row.get("n"), Some(&SqliteValue::Integer(10)));
    // At the bucket level a's id stays: the client sees a PUT of `a` last.
    let checkpoint = storage
        .checkpoint(running.deployment.id)
        .await
        .unwrap()
        .unwrap();
    let chunks = storage
        .bucket_data(
            running.deployment.id,
            checkpoint.op_id,
            &[("global[]".into(), OpId(0))],
            100,
        )
        .await
        .unwrap();
    let last_a = chunks[0]
        .ops
        .iter()
        .rev()
        .find(|o| o.object_id.as_deref() == Some("a"))
        .unwrap();
    assert_eq!(last_a.op, OpType::Put);
    running.stop().await;
}

/// NOTHING at start is a source error (see `source_checks_name_the_fix`); set while streaming,
/// the table's changes are skipped with an error instead of merging all rows under one key,
/// and replication of other tables goes on.
#[tokio::test]
async fn replica_identity_nothing_at_runtime_skips_the_table() {
    let db = source_db().await;
    let client = db.client().await;
    client
        .batch_execute("INSERT INTO todos VALUES ('a', 'first', 1, 'x')")
        .await
        .unwrap();
    let rules = "
bucket_definitions:
  global:
    data:
      - SELECT id, title FROM todos
      - SELECT id, v FROM other
";
    let storage = memory_storage();
    let running = start(&db, storage.clone(), None, rules).await;
    running.wait_commits(1).await;
    client
        .batch_execute(
            "ALTER TABLE todos REPLICA IDENTITY NOTHING;
             INSERT INTO todos VALUES ('b', 'second', 2, NULL);",
        )
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO other VALUES (7, 'still replicating')")
        .await
        .unwrap();
    let ops = wait_ops(&storage, 1, 1).await;
    assert_eq!(ops.len(), 1, "{ops:?}");
    match &ops[0] {
        BatchOperation::Row(r) => assert_eq!(r.source_table, "public.other"),
        other => panic!("{other:?}"),
    }
    running.stop().await;
}

/// An update leaving a TOASTed column unchanged, when storage has no copy of the row, reads
/// the row back from the table by key instead of replicating NULL.
#[tokio::test]
async fn unchanged_toast_column_is_reread_when_storage_lacks_it() {
    let db = source_db().await;
    let client = db.client().await;
    client
        .batch_execute(
            "ALTER TABLE todos ALTER COLUMN body SET STORAGE EXTERNAL;
             INSERT INTO todos VALUES ('a', 'first', 1,
               (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i));",
        )
        .await
        .unwrap();
    let body: String = client
        .query_one("SELECT body FROM todos WHERE id = 'a'", &[])
        .await
        .unwrap()
        .get(0);
    let storage = memory_storage();
    let running = start(&db, storage.clone(), None, RULES).await;
    running.wait_commits(1).await;
    storage
        .forget_rows
        .store(true, std::sync::atomic::Ordering::SeqCst);
    client
        .batch_execute("UPDATE todos SET n = 2 WHERE id = 'a'")
        .await
        .unwrap();
    let ops = wait_ops(&storage, 1, 1).await;
    let (_, row) = ops.iter().find_map(upsert).unwrap();
    assert_eq!(row.get("n"), Some(&SqliteValue::Integer(2)));
    assert_eq!(row.get("body"), Some(&SqliteValue::Text(body)));
    assert_eq!(
        row.0.keys().collect::<Vec<_>>(),
        ["id", "title", "n", "body"]
    );
    running.stop().await;
}

/// A primary-key change: the bucket gets a REMOVE of the old id and a PUT of the new.
#[tokio::test]
async fn primary_key_change_is_remove_then_put_in_the_bucket() {
    let db = source_db().await;
    let client = db.client().await;
    client
        .batch_execute("INSERT INTO todos VALUES ('a', 'first', 1, NULL)")
        .await
        .unwrap();
    let storage = memory_storage();
    let running = start(&db, storage.clone(), None, RULES).await;
    running.wait_commits(1).await;
    client
        .batch_execute("UPDATE todos SET id = 'z' WHERE id = 'a'")
        .await
        .unwrap();
    wait_ops(&storage, 1, 2).await;
    let checkpoint = storage
        .checkpoint(running.deployment.id)
        .await
        .unwrap()
        .unwrap();
    let chunks = storage
        .bucket_data(
            running.deployment.id,
            checkpoint.op_id,
            &[("global[]".into(), OpId(0))],
            100,
        )
        .await
        .unwrap();
    let ops: Vec<(OpType, Option<String>)> = chunks[0]
        .ops
        .iter()
        .map(|o| (o.op, o.object_id.clone()))
        .collect();
    assert_eq!(
        ops,
        vec![
            (OpType::Put, Some("a".into())),
            (OpType::Remove, Some("a".into())),
            (OpType::Put, Some("z".into())),
        ]
    );
    running.stop().await;
}
