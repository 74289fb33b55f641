//! End-to-end replication against a real Postgres (riptide-testkit).

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use riptide_protocol::Lsn;
use riptide_replication::pgoutput::{self, LogicalMessage, TupleValue};
use riptide_replication::{ReplicationError, Replicator, SourceError};
use riptide_rules::{Row, SqliteValue, SyncRules};
use riptide_storage::{BatchOperation, BucketStorage, PgStorage, RowChange, RowOperation};
use riptide_testkit::{TestDatabase, wait_for};

/// The key the replicator makes for a single text identity column.
fn key(id: &str) -> Vec<u8> {
    let mut k = vec![1];
    k.extend_from_slice(&(id.len() as u32).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

fn row_op(op: &BatchOperation) -> &RowOperation {
    match op {
        BatchOperation::Row(r) => r,
        other => panic!("expected a row op, got {other:?}"),
    }
}

fn upserted_row(op: &BatchOperation) -> Row {
    match &row_op(op).change {
        RowChange::Upsert { row, .. } => Row::decode(row).unwrap(),
        RowChange::Delete => panic!("expected an upsert"),
    }
}

fn is_delete(op: &BatchOperation, id: &str) -> bool {
    matches!(op, BatchOperation::Row(r) if r.key == key(id) && r.change == RowChange::Delete)
}

/// Non-empty commits after the first `skip` commits, waiting until there are `n` of them.
async fn wait_data_commits(
    storage: &Arc<RecordingStorage>,
    skip: usize,
    n: usize,
) -> Vec<Committed> {
    wait_data(storage, skip, |c| c.len() >= n).await
}

/// The data commits after the first `skip` commits, once they hold at least `n` ops
/// (consecutive transactions may share a storage commit: group commit).
async fn wait_data_ops(storage: &Arc<RecordingStorage>, skip: usize, n: usize) -> Vec<Committed> {
    wait_data(storage, skip, |c| {
        c.iter().map(|c| c.ops.len()).sum::<usize>() >= n
    })
    .await
}

/// The commits with ops after the first `skip` commits, once `enough` says so.
async fn wait_data(
    storage: &Arc<RecordingStorage>,
    skip: usize,
    enough: impl Fn(&[Committed]) -> bool + Copy,
) -> Vec<Committed> {
    let storage = storage.clone();
    wait_for("data commits", Duration::from_secs(30), || {
        let storage = storage.clone();
        async move {
            let c: Vec<Committed> = storage
                .commits()
                .into_iter()
                .skip(skip)
                .filter(|c| !c.ops.is_empty())
                .collect();
            enough(&c).then_some(c)
        }
    })
    .await
}

async fn snapshot_then_live_changes(storage: Arc<RecordingStorage>) {
    let db = source_db().await;
    let client = db.client().await;
    client
        .batch_execute(
            "INSERT INTO todos VALUES ('a', 'first', 1, 'x'), ('b', 'second', 2, NULL);
             INSERT INTO other VALUES (1, 'ignored');",
        )
        .await
        .unwrap();
    let running = start(&db, storage.clone(), None, RULES).await;
    let commits = running.wait_commits(1).await;

    // The snapshot: both rows, one commit, deployment active.
    let snapshot = &commits[0];
    assert_eq!(snapshot.ops.len(), 2);
    let mut keys: Vec<_> = snapshot.ops.iter().map(|o| row_op(o).key.clone()).collect();
    keys.sort();
    assert_eq!(keys, vec![key("a"), key("b")]);
    assert!(
        snapshot
            .ops
            .iter()
            .all(|o| row_op(o).source_table == "public.todos")
    );
    let deployment = storage.deployment(running.deployment.id).await.unwrap();
    assert!(deployment.snapshot_done);
    assert_eq!(deployment.state, riptide_storage::DeploymentState::Active);
    let first = upserted_row(&snapshot.ops[0]);
    assert_eq!(first.get("n"), Some(&SqliteValue::Integer(1)));
    match &row_op(&snapshot.ops[0]).change {
        RowChange::Upsert { buckets, .. } => {
            assert_eq!(buckets.len(), 1);
            assert_eq!(buckets[0].bucket, "global[]");
            assert_eq!(buckets[0].id, "a");
        }
        RowChange::Delete => unreachable!(),
    }

    // Live changes, one transaction each, plus one on a table the rules do not use.
    // (A multi-statement simple query is one transaction: run them one by one.)
    for sql in [
        "INSERT INTO todos VALUES ('c', 'third', 3, NULL)",
        "UPDATE todos SET title = 'changed' WHERE id = 'a'",
        "INSERT INTO other VALUES (2, 'ignored')",
        "DELETE FROM todos WHERE id = 'b'",
        "TRUNCATE todos",
    ] {
        client.batch_execute(sql).await.unwrap();
    }
    // Consecutive transactions may share a storage commit (group commit): read the ops of
    // the commits in order.
    let data = wait_data_ops(&storage, 1, 4).await;
    let ops: Vec<&BatchOperation> = data.iter().flat_map(|c| &c.ops).collect();
    assert_eq!(ops.len(), 4, "{data:?}");
    assert_eq!(row_op(ops[0]).key, key("c"));
    assert_eq!(
        upserted_row(ops[0]).get("title"),
        Some(&SqliteValue::Text("third".into()))
    );
    assert_eq!(row_op(ops[1]).key, key("a"));
    let a = upserted_row(ops[1]);
    assert_eq!(a.get("title"), Some(&SqliteValue::Text("changed".into())));
    assert_eq!(a.get("body"), Some(&SqliteValue::Text("x".into())));
    assert!(is_delete(ops[2], "b"));
    assert_eq!(
        *ops[3],
        BatchOperation::Truncate {
            source_table: "public.todos".into()
        }
    );
    // Commit LSNs increase and storage's checkpoint follows them.
    assert!(data.windows(2).all(|w| w[0].lsn < w[1].lsn));
    let checkpoint = storage
        .checkpoint(running.deployment.id)
        .await
        .unwrap()
        .unwrap();
    assert!(checkpoint.lsn >= data.last().unwrap().lsn);
    assert!(running.replicator.status().transactions() >= 4);
    running.stop().await;
}

#[tokio::test]
async fn snapshot_then_live_changes_memory() {
    snapshot_then_live_changes(memory_storage()).await;
}

#[tokio::test]
async fn snapshot_then_live_changes_postgres_storage() {
    let db = TestDatabase::create().await;
    let pg = PgStorage::connect(&db.url()).await.unwrap();
    pg.migrate().await.unwrap();
    snapshot_then_live_changes(RecordingStorage::new(Arc::new(pg))).await;
}

/// A burst of small source transactions: consecutive ones share storage commits (group
/// commit), but every storage commit holds whole transactions, in order.
#[tokio::test]
async fn burst_of_transactions_is_group_committed_whole() {
    let db = source_db().await;
    let client = db.client().await;
    let storage_db = TestDatabase::create().await;
    let pg = PgStorage::connect(&storage_db.url()).await.unwrap();
    pg.migrate().await.unwrap();
    let storage = RecordingStorage::new(Arc::new(pg));
    let running = start(&db, storage.clone(), None, RULES).await;
    running.wait_commits(1).await;

    // 300 transactions of two rows each, sent in one round trip (explicit BEGIN/COMMIT: one
    // source transaction each).
    const TRANSACTIONS: usize = 300;
    let sql: String = (0..TRANSACTIONS)
        .map(|t| {
            format!(
                "BEGIN; INSERT INTO todos VALUES ('t{t}-a', 'x', {t}, NULL); \
                 INSERT INTO todos VALUES ('t{t}-b', 'y', {t}, NULL); COMMIT;"
            )
        })
        .collect();
    client.batch_execute(&sql).await.unwrap();

    let data = wait_data_ops(&storage, 1, 2 * TRANSACTIONS).await;
    let ops: Vec<&BatchOperation> = data.iter().flat_map(|c| &c.ops).collect();
    assert_eq!(ops.len(), 2 * TRANSACTIONS);
    // In commit order, and no storage commit splits a source transaction.
    for (t, pair) in ops.chunks(2).enumerate() {
        assert_eq!(row_op(pair[0]).key, key(&format!("t{t}-a")));
        assert_eq!(row_op(pair[1]).key, key(&format!("t{t}-b")));
    }
    assert!(
        data.iter().all(|c| c.ops.len() % 2 == 0),
        "a transaction was split"
    );
    assert!(
        data.len() < TRANSACTIONS / 2,
        "{} storage commits for {TRANSACTIONS} source transactions: not grouped",
        data.len()
    );
    assert!(running.replicator.status().transactions() >= TRANSACTIONS as u64);
    running.stop().await;
}

const BIG: &str = "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 3000) i)";

#[tokio::test]
async fn unchanged_toast_columns_are_filled() {
    let db = source_db().await;
    let client = db.client().await;
    client
        .batch_execute(&format!("INSERT INTO todos VALUES ('a', 't', 1, {BIG})"))
        .await
        .unwrap();
    let big: String = client
        .query_one("SELECT body FROM todos WHERE id = 'a'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(big.len() > 50_000);
    let storage = memory_storage();
    let running = start(&db, storage.clone(), None, RULES).await;
    running.wait_commits(1).await;

    // Unchanged TOAST from storage; then insert + update in one transaction (from the
    // transaction's own earlier row).
    client
        .batch_execute("UPDATE todos SET n = 2 WHERE id = 'a'")
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO todos VALUES ('b', 't', 1, {BIG});
             UPDATE todos SET n = 5 WHERE id = 'b';
             COMMIT;"
        ))
        .await
        .unwrap();
    let data = wait_data_ops(&storage, 1, 3).await;
    let ops: Vec<&BatchOperation> = data.iter().flat_map(|c| &c.ops).collect();
    let a = upserted_row(ops[0]);
    assert_eq!(a.get("n"), Some(&SqliteValue::Integer(2)));
    assert_eq!(a.get("body"), Some(&SqliteValue::Text(big.clone())));
    assert_eq!(a.0.keys().collect::<Vec<_>>(), ["id", "title", "n", "body"]);
    assert_eq!(ops.len(), 3);
    let b = upserted_row(ops[2]);
    assert_eq!(b.get("n"), Some(&SqliteValue::Integer(5)));
    assert_eq!(b.get("body"), Some(&SqliteValue::Text(big)));
    running.stop().await;
}

#[tokio::test]
async fn key_change_is_delete_then_upsert() {
    let db = source_db().await;
    let client = db.client().await;
    client
        .batch_execute("INSERT INTO todos VALUES ('a', 't', 1, NULL)")
        .await
        .unwrap();
    let storage = memory_storage();
    let running = start(&db, storage.clone(), None, RULES).await;
    running.wait_commits(1).await;
    client
        .batch_execute("UPDATE todos SET id = 'z' WHERE id = 'a'")
        .await
        .unwrap();
    let data = wait_data_commits(&storage, 1, 1).await;
    assert_eq!(data[0].ops.len(), 2);
    assert!(is_delete(&data[0].ops[0], "a"));
    assert_eq!(row_op(&data[0].ops[1]).key, key("z"));
    running.stop().await;
}

#[tokio::test]
async fn large_transaction_is_one_commit() {
    let db = source_db().await;
    let client = db.client().await;
    let storage = memory_storage();
    let running = start(&db, storage.clone(), None, RULES).await;
    running.wait_commits(1).await;
    client
        .batch_execute(
            "INSERT INTO todos SELECT 'r' || i, 'title', i, NULL FROM generate_series(1, 20000) i",
        )
        .await
        .unwrap();
    let data = wait_data_commits(&storage, 1, 1).await;
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].ops.len(), 20_000);
    // Saved in chunks of `StreamOptions::chunk_rows` (10 000), not all at once.
    assert!(data[0].saves >= 2, "saved in chunks: {}", data[0].saves);
    running.stop().await;
}

#[tokio::test]
async fn restart_resumes_without_loss_or_duplicates() {
    let db = source_db().await;
    let client = db.client().await;
    let storage = memory_storage();
    let running = start(&db, storage.clone(), None, RULES).await;
    running.wait_commits(1).await;
    client
        .batch_execute("INSERT INTO todos VALUES ('before', 't', 0, NULL)")
        .await
        .unwrap();
    wait_data_commits(&storage, 1, 1).await;

    // Stop while more transactions are being written.
    let writer = {
        let client = db.client().await;
        tokio::spawn(async move {
            for i in 0..200 {
                client
                    .execute(
                        "INSERT INTO todos VALUES ($1, 't', 0, NULL)",
                        &[&format!("w{i}")],
                    )
                    .await
                    .unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (storage, deployment) = running.stop().await;
    writer.await.unwrap();
    client
        .batch_execute("INSERT INTO todos VALUES ('after', 't', 0, NULL)")
        .await
        .unwrap();

    let deployment = storage.deployment(deployment.id).await.unwrap();
    let running = start(&db, storage.clone(), Some(deployment), RULES).await;
    let storage2 = storage.clone();
    wait_for("the last insert", Duration::from_secs(30), || {
        let storage = storage2.clone();
        async move {
            storage
                .ops_after(1)
                .iter()
                .any(|o| row_op(o).key == key("after"))
                .then_some(())
        }
    })
    .await;
    let ops = storage.ops_after(1);
    let mut keys: Vec<Vec<u8>> = ops.iter().map(|o| row_op(o).key.clone()).collect();
    assert_eq!(keys.len(), 202, "every insert exactly once");
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 202, "no duplicates");
    running.stop().await;
}

#[tokio::test]
async fn checkpoint_message_commits_an_empty_batch() {
    let db = source_db().await;
    let client = db.client().await;
    let storage = memory_storage();
    let running = start(&db, storage.clone(), None, RULES).await;
    running.wait_commits(1).await;
    let lsn: String = client
        .query_one(
            "SELECT pg_logical_emit_message(false, 'powersync', 'ping')::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let lsn: Lsn = lsn.parse().unwrap();
    let commits = running.wait_commits(2).await;
    assert!(commits[1].ops.is_empty());
    assert_eq!(commits[1].lsn, lsn);
    let checkpoint = storage
        .checkpoint(running.deployment.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(checkpoint.lsn, lsn);
    running.stop().await;
}

#[tokio::test]
async fn source_checks_name_the_fix() {
    let db = TestDatabase::create().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE todos (id text PRIMARY KEY, title text, n int4, body text);
             CREATE TABLE other (id int PRIMARY KEY);",
        )
        .await
        .unwrap();
    let (events, _) = tokio::sync::broadcast::channel(4);
    let replicator = Replicator::new(options(&db), memory_storage(), events);
    let rules = SyncRules::parse(RULES).unwrap();

    let problems = |e: ReplicationError| match e {
        ReplicationError::Source(p) => p,
        other => panic!("{other:?}"),
    };
    let p = problems(replicator.check_source(&rules).await.unwrap_err());
    assert_eq!(
        p,
        vec![SourceError::PublicationMissing {
            publication: "powersync".into()
        }]
    );
    assert!(
        p[0].to_string()
            .contains("CREATE PUBLICATION powersync FOR ALL TABLES")
    );

    client
        .batch_execute(
            "CREATE PUBLICATION powersync FOR TABLE other WITH (publish = 'insert, update');
             ALTER TABLE todos REPLICA IDENTITY NOTHING;",
        )
        .await
        .unwrap();
    let p = problems(replicator.check_source(&rules).await.unwrap_err());
    assert!(p.contains(&SourceError::PublicationOperations {
        publication: "powersync".into(),
        missing: "delete, truncate".into()
    }));
    let not_published = SourceError::TableNotPublished {
        table: "public.todos".into(),
        publication: "powersync".into(),
    };
    assert!(p.contains(&not_published));
    assert!(
        not_published
            .to_string()
            .contains("ALTER PUBLICATION powersync ADD TABLE public.todos")
    );
    assert!(p.contains(&SourceError::ReplicaIdentityNothing {
        table: "public.todos".into()
    }));

    client
        .batch_execute(
            "DROP PUBLICATION powersync; CREATE PUBLICATION powersync FOR ALL TABLES;
             ALTER TABLE todos REPLICA IDENTITY DEFAULT;",
        )
        .await
        .unwrap();
    replicator.check_source(&rules).await.unwrap();

    client.batch_execute("DROP TABLE todos").await.unwrap();
    let p = problems(replicator.check_source(&rules).await.unwrap_err());
    assert_eq!(
        p,
        vec![SourceError::TableMissing {
            table: "public.todos".into()
        }]
    );
}

/// Our decoder on what a real walsender wrote (via the SQL interface to pgoutput). Logical
/// `Message`s did not come out of the SQL interface here; the walsender path is covered by
/// `checkpoint_message_commits_an_empty_batch`.
#[tokio::test]
async fn decodes_real_pgoutput() {
    let db = source_db().await;
    let client = db.client().await;
    for sql in [
        "SELECT pg_create_logical_replication_slot('decoder_test', 'pgoutput')",
        "ALTER TABLE todos REPLICA IDENTITY FULL",
        "INSERT INTO todos VALUES ('a', 'hello', 42, NULL)",
        "UPDATE todos SET n = 43 WHERE id = 'a'",
        "DELETE FROM todos WHERE id = 'a'",
        "TRUNCATE todos",
    ] {
        client.batch_execute(sql).await.unwrap();
    }
    let rows = client
        .query(
            "SELECT data FROM pg_logical_slot_get_binary_changes('decoder_test', NULL, NULL, \
             'proto_version', '1', 'publication_names', 'powersync', 'messages', 'true')",
            &[],
        )
        .await
        .unwrap();
    let messages: Vec<LogicalMessage> = rows
        .iter()
        .map(|r| pgoutput::decode(&Bytes::from(r.get::<_, Vec<u8>>(0))).unwrap())
        .collect();
    let text = |s: &str| TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()));
    let relation = messages
        .iter()
        .find_map(|m| match m {
            LogicalMessage::Relation(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(relation.namespace, "public");
    assert_eq!(relation.name, "todos");
    assert_eq!(
        relation
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["id", "title", "n", "body"]
    );
    assert_eq!(relation.columns[2].type_oid, 23);
    assert!(
        relation.columns.iter().all(|c| c.is_key),
        "REPLICA IDENTITY FULL"
    );

    let insert = messages
        .iter()
        .find_map(|m| match m {
            LogicalMessage::Insert(i) => Some(i.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(insert.relation_id, relation.id);
    assert_eq!(
        insert.new.0,
        vec![text("a"), text("hello"), text("42"), TupleValue::Null]
    );
    let update = messages
        .iter()
        .find_map(|m| match m {
            LogicalMessage::Update(u) => Some(u.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(update.old.unwrap().tuple().0[2], text("42"));
    assert_eq!(update.new.0[2], text("43"));
    assert!(
        messages
            .iter()
            .any(|m| matches!(m, LogicalMessage::Delete(_)))
    );
    assert!(
        messages.iter().any(
            |m| matches!(m, LogicalMessage::Truncate(t) if t.relation_ids == vec![relation.id])
        )
    );
    let begins = messages
        .iter()
        .filter(|m| matches!(m, LogicalMessage::Begin(_)))
        .count();
    let commits = messages
        .iter()
        .filter(|m| matches!(m, LogicalMessage::Commit(_)))
        .count();
    assert_eq!(begins, commits);
    assert!(begins >= 4);
}

/// Snapshot values map like streamed ones for a range of types.
#[tokio::test]
async fn snapshot_and_stream_map_types_alike() {
    let db = TestDatabase::create().await;
    let client = db.client().await;
    client
        .batch_execute(
            "SET TimeZone = 'Europe/Berlin';
             CREATE TABLE types (id uuid PRIMARY KEY, b bool, i8 int8, f float8, num numeric,
                                 ts timestamp, tstz timestamptz, d date, j jsonb, arr int4[],
                                 bin bytea);
             CREATE PUBLICATION powersync FOR ALL TABLES;
             INSERT INTO types VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, 9007199254740993,
               'NaN', 1.50, '2024-05-01 13:45:10.123', '2024-05-01 13:45:10.123+02', 'infinity',
               '{\"k\": [1]}', '{1,NULL,3}', '\\x00ff');",
        )
        .await
        .unwrap();
    let rules = "
bucket_definitions:
  global:
    data:
      - SELECT id, b, i8, f, num, ts, tstz, d, j, arr FROM types
";
    let storage = memory_storage();
    let running = start(&db, storage.clone(), None, rules).await;
    running.wait_commits(1).await;
    client
        .batch_execute(
            "INSERT INTO types SELECT 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', b, i8, f, num, ts, tstz, d, j, arr, bin FROM types",
        )
        .await
        .unwrap();
    let data = wait_data_commits(&storage, 1, 1).await;
    let snap = upserted_row(&storage.commits()[0].ops[0]);
    let live = upserted_row(&data[0].ops[0]);
    for row in [&snap, &live] {
        assert_eq!(row.get("b"), Some(&SqliteValue::Integer(1)));
        assert_eq!(
            row.get("i8"),
            Some(&SqliteValue::Integer(9_007_199_254_740_993))
        );
        assert!(matches!(row.get("f"), Some(SqliteValue::Real(f)) if f.is_nan()));
        assert_eq!(row.get("num"), Some(&SqliteValue::Text("1.50".into())));
        assert_eq!(
            row.get("ts"),
            Some(&SqliteValue::Text("2024-05-01 13:45:10.123".into()))
        );
        assert_eq!(
            row.get("tstz"),
            Some(&SqliteValue::Text("2024-05-01 11:45:10.123Z".into()))
        );
        assert_eq!(row.get("d"), Some(&SqliteValue::Text("9999-12-31".into())));
        assert_eq!(
            row.get("j"),
            Some(&SqliteValue::Text(r#"{"k": [1]}"#.into()))
        );
        assert_eq!(
            row.get("arr"),
            Some(&SqliteValue::Text("[1,null,3]".into()))
        );
        assert_eq!(row.get("bin"), Some(&SqliteValue::Blob(vec![0, 255])));
    }
    running.stop().await;
}

/// A slot left by an interrupted snapshot is dropped and the snapshot starts over.
#[tokio::test]
async fn interrupted_snapshot_starts_over() {
    let db = source_db().await;
    let client = db.client().await;
    client
        .batch_execute("INSERT INTO todos VALUES ('a', 't', 1, NULL)")
        .await
        .unwrap();
    let storage = memory_storage();
    let deployment = storage.create_deployment(RULES, "riptide_").await.unwrap();
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&deployment.slot_name],
        )
        .await
        .unwrap();
    let running = start(&db, storage.clone(), Some(deployment), RULES).await;
    let commits = running.wait_commits(1).await;
    assert_eq!(commits[0].ops.len(), 1);
    client
        .batch_execute("INSERT INTO todos VALUES ('b', 't', 1, NULL)")
        .await
        .unwrap();
    let data = wait_data_commits(&storage, 1, 1).await;
    assert_eq!(row_op(&data[0].ops[0]).key, key("b"));
    running.stop().await;
}

/// A failure between the end of the snapshot and the deployment's activation must not leave
/// a deployment that never goes live: the next run activates it.
#[tokio::test]
async fn a_failed_activation_is_completed_by_the_next_run() {
    let db = source_db().await;
    let client = db.client().await;
    client
        .batch_execute("INSERT INTO todos VALUES ('a', 't', 1, NULL)")
        .await
        .unwrap();
    let storage = memory_storage();
    storage
        .fail_activations
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let running = start(&db, storage.clone(), None, RULES).await;
    let id = running.deployment.id;
    let first = running.task.await.unwrap();
    assert!(
        first.is_err(),
        "the injected activation failure ends the run"
    );

    // Restarted, as `riptide serve` restarts a failed replicator.
    let deployment = storage.deployment(id).await.unwrap();
    let running = start(&db, storage.clone(), Some(deployment), RULES).await;
    let storage2 = storage.clone();
    wait_for(
        "the deployment to be active",
        Duration::from_secs(30),
        || {
            let storage = storage2.clone();
            async move {
                let d = storage.deployment(id).await.ok()?;
                (d.state == riptide_storage::DeploymentState::Active && d.checkpoint.is_some())
                    .then_some(())
            }
        },
    )
    .await;
    running.stop().await;
}

/// A snapshot interrupted at 60 % of a large table resumes near there instead of from zero,
/// and ends with every row exactly once.
#[tokio::test]
async fn an_interrupted_snapshot_resumes_near_where_it_stopped() {
    const ROWS: u64 = 100_000;
    let db = source_db().await;
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "INSERT INTO todos SELECT 'r' || g, 't', g, NULL FROM generate_series(1, {ROWS}) g"
        ))
        .await
        .unwrap();
    let storage = memory_storage();
    // 60 % of the rows, plus the few progress rows saved with them.
    storage
        .fail_past_rows
        .store(ROWS * 6 / 10 + 50, std::sync::atomic::Ordering::SeqCst);
    let running = start(&db, storage.clone(), None, RULES).await;
    let id = running.deployment.id;
    assert!(running.task.await.unwrap().is_err(), "the injected fault");
    // A change while stopped, which the resumed snapshot must not lose.
    client
        .batch_execute("UPDATE todos SET title = 'changed' WHERE id = 'r1'")
        .await
        .unwrap();

    let before = storage.rows_saved.load(std::sync::atomic::Ordering::SeqCst);
    let deployment = storage.deployment(id).await.unwrap();
    let running = start(&db, storage.clone(), Some(deployment), RULES).await;
    let storage2 = storage.clone();
    let checkpoint = wait_for(
        "the deployment to be active",
        Duration::from_secs(60),
        || {
            let storage = storage2.clone();
            async move {
                let d = storage.deployment(id).await.ok()?;
                (d.state == riptide_storage::DeploymentState::Active)
                    .then_some(d.checkpoint)
                    .flatten()
            }
        },
    )
    .await;
    let resumed = storage.rows_saved.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(
        resumed < ROWS / 2,
        "the second run copied {resumed} of {ROWS} rows: it started over"
    );
    let states = storage
        .bucket_states(id, checkpoint.op_id, &["global[]".to_owned()])
        .await
        .unwrap();
    let rows = storage
        .current_rows(id, "public.todos", &[key("r1"), key("r100000")])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let r1 = Row::decode(&rows[&key("r1")]).unwrap();
    assert_eq!(r1.get("title"), Some(&SqliteValue::Text("changed".into())));
    // Every row once, plus the update's PUT (superseding the first one).
    assert_eq!(states["global[]"].count, ROWS as i64 + 1);
    running.stop().await;
}
