//! Live table-set changes while streaming (no restart): new, renamed, dropped and
//! unpublished tables (`src/tables.rs`). Each test checks the bucket's final rows and that no
//! row change was applied twice (a replayed change shows as two identical PUTs in a row).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use riptide_protocol::{OpId, OpType};
use riptide_storage::{BucketStorage, PgStorage};
use riptide_testkit::TestDatabase;

/// (table, id) → `title`/`v` column value.
type Rows = BTreeMap<(String, String), String>;

/// PUT values per object, in op order.
type History = HashMap<(String, String), Vec<String>>;

/// The `global[]` bucket's rows at the latest checkpoint, the objects that got the same PUT
/// twice in a row, and every object's PUT values in order.
async fn bucket_rows(running: &Running) -> (Rows, Vec<String>, History) {
    let storage = &running.storage;
    let Some(checkpoint) = storage.checkpoint(running.deployment.id).await.unwrap() else {
        return (Rows::new(), Vec::new(), History::new());
    };
    let mut rows = Rows::new();
    let mut last: HashMap<(String, String), Option<String>> = HashMap::new();
    let mut repeated = Vec::new();
    let mut history = History::new();
    let mut after = OpId(0);
    loop {
        let chunks = storage
            .bucket_data(
                running.deployment.id,
                checkpoint.op_id,
                &[("global[]".into(), after)],
                1000,
            )
            .await
            .unwrap();
        let Some(chunk) = chunks.into_iter().next() else {
            break;
        };
        for op in &chunk.ops {
            after = op.op_id;
            let id = (
                op.object_type.clone().unwrap_or_default(),
                op.object_id.clone().unwrap_or_default(),
            );
            match op.op {
                OpType::Put => {
                    let data: serde_json::Value =
                        serde_json::from_str(op.data.as_deref().unwrap()).unwrap();
                    let value = data
                        .get("title")
                        .or_else(|| data.get("v"))
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_owned();
                    if last.get(&id) == Some(&op.data) {
                        repeated.push(format!("{id:?}"));
                    }
                    last.insert(id.clone(), op.data.clone());
                    history.entry(id.clone()).or_default().push(value.clone());
                    rows.insert(id, value);
                }
                OpType::Remove => {
                    last.insert(id.clone(), None);
                    rows.remove(&id);
                }
                OpType::Clear => {
                    last.clear();
                    rows.clear();
                }
                OpType::Move => {}
            }
        }
        if !chunk.has_more {
            break;
        }
    }
    (rows, repeated, history)
}

/// Waits until the bucket holds exactly `expected`, then checks nothing was replayed.
/// Returns each object's PUT values in order.
async fn wait_rows(running: &Running, expected: &[(&str, &str, &str)]) -> History {
    let expected: Rows = expected
        .iter()
        .map(|(t, id, v)| (((*t).to_owned(), (*id).to_owned()), (*v).to_owned()))
        .collect();
    let mut seen = Rows::new();
    let result = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (rows, repeated, history) = bucket_rows(running).await;
            if rows == expected {
                return (repeated, history);
            }
            seen = rows;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    match result {
        Ok((repeated, history)) => {
            assert!(repeated.is_empty(), "changes applied twice: {repeated:?}");
            history
        }
        Err(_) => panic!("bucket rows: expected {expected:?}, last seen {seen:?}"),
    }
}

const TWO_TABLES: &str = "
bucket_definitions:
  global:
    data:
      - SELECT id, title FROM todos
      - SELECT id, v FROM notes
";

/// (a) A table created in a FOR ALL TABLES publication starts syncing: rows inserted in its
/// creating transaction and right after arrive once.
#[tokio::test]
async fn new_table_starts_syncing() {
    let db = source_db().await;
    let client = db.client().await;
    client
        .batch_execute("INSERT INTO todos VALUES ('a', 'first', 1, NULL)")
        .await
        .unwrap();
    let running = start(&db, memory_storage(), None, TWO_TABLES).await;
    running.wait_commits(1).await;
    wait_rows(&running, &[("todos", "a", "first")]).await;
    client
        .batch_execute(
            "BEGIN;
             CREATE TABLE notes (id text PRIMARY KEY, v text);
             INSERT INTO notes VALUES ('n1', 'one'), ('n2', 'two');
             COMMIT;
             INSERT INTO notes VALUES ('n3', 'three');
             UPDATE notes SET v = 'one!' WHERE id = 'n1';
             DELETE FROM notes WHERE id = 'n2';
             INSERT INTO todos VALUES ('b', 'second', 2, NULL);",
        )
        .await
        .unwrap();
    wait_rows(
        &running,
        &[
            ("notes", "n1", "one!"),
            ("notes", "n3", "three"),
            ("todos", "a", "first"),
            ("todos", "b", "second"),
        ],
    )
    .await;
    // Changes after the copy stream as usual.
    client
        .batch_execute("INSERT INTO notes VALUES ('n4', 'four')")
        .await
        .unwrap();
    wait_rows(
        &running,
        &[
            ("notes", "n1", "one!"),
            ("notes", "n3", "three"),
            ("notes", "n4", "four"),
            ("todos", "a", "first"),
            ("todos", "b", "second"),
        ],
    )
    .await;
    running.stop().await;
}

/// (a) A new table with rows, added to an explicit publication, is copied (its earlier rows
/// were never streamed) and then streams.
#[tokio::test]
async fn table_added_to_publication_starts_syncing() {
    let db = source_db().await;
    let client = db.client().await;
    client
        .batch_execute(
            "DROP PUBLICATION powersync;
             CREATE PUBLICATION powersync FOR TABLE todos;",
        )
        .await
        .unwrap();
    let running = start(&db, memory_storage(), None, TWO_TABLES).await;
    running.wait_commits(1).await;
    client
        .batch_execute(
            "CREATE TABLE notes (id text PRIMARY KEY, v text);
             INSERT INTO notes VALUES ('n1', 'one'), ('n2', 'two');
             INSERT INTO todos VALUES ('a', 'first', 1, NULL);
             BEGIN;
             UPDATE notes SET v = 'two!' WHERE id = 'n2';
             ALTER PUBLICATION powersync ADD TABLE notes;
             INSERT INTO notes VALUES ('n3', 'three');
             COMMIT;
             DELETE FROM notes WHERE id = 'n1';
             INSERT INTO notes VALUES ('n4', 'four');",
        )
        .await
        .unwrap();
    wait_rows(
        &running,
        &[
            ("notes", "n2", "two!"),
            ("notes", "n3", "three"),
            ("notes", "n4", "four"),
            ("todos", "a", "first"),
        ],
    )
    .await;
    running.stop().await;
}

const TODOS_AND_TASKS: &str = "
bucket_definitions:
  global:
    data:
      - SELECT id, title FROM todos
      - SELECT id, title FROM tasks
";

/// (b) Renaming a referenced table to another referenced name moves its rows; renaming it
/// to an unreferenced name removes them; renaming it back copies them again.
#[tokio::test]
async fn renamed_table_moves_leaves_and_returns() {
    let db = source_db().await;
    renamed_table(&db, memory_storage()).await;
}

#[tokio::test]
async fn renamed_table_moves_leaves_and_returns_postgres_storage() {
    let db = source_db().await;
    let storage_db = TestDatabase::create().await;
    renamed_table(&db, pg_storage(&storage_db).await).await;
}

/// Postgres storage in `db` (its own database, as in production).
async fn pg_storage(db: &TestDatabase) -> Arc<RecordingStorage> {
    let pg = PgStorage::connect(&db.url()).await.unwrap();
    pg.migrate().await.unwrap();
    RecordingStorage::new(Arc::new(pg))
}

async fn renamed_table(db: &TestDatabase, storage: Arc<RecordingStorage>) {
    let client = db.client().await;
    client
        .batch_execute("INSERT INTO todos VALUES ('a', 'first', 1, NULL), ('b', 'second', 2, NULL)")
        .await
        .unwrap();
    let running = start(db, storage, None, TODOS_AND_TASKS).await;
    running.wait_commits(1).await;
    client
        .batch_execute(
            "INSERT INTO todos VALUES ('c', 'third', 3, NULL);
             BEGIN;
             UPDATE todos SET title = 'first!' WHERE id = 'a';
             ALTER TABLE todos RENAME TO tasks;
             INSERT INTO tasks VALUES ('d', 'fourth', 4, NULL);
             COMMIT;
             DELETE FROM tasks WHERE id = 'b';",
        )
        .await
        .unwrap();
    wait_rows(
        &running,
        &[
            ("tasks", "a", "first!"),
            ("tasks", "c", "third"),
            ("tasks", "d", "fourth"),
        ],
    )
    .await;
    client
        .batch_execute(
            "INSERT INTO tasks VALUES ('e', 'fifth', 5, NULL);
             ALTER TABLE tasks RENAME TO archive;
             INSERT INTO archive VALUES ('f', 'sixth', 6, NULL);",
        )
        .await
        .unwrap();
    wait_rows(&running, &[]).await;
    client
        .batch_execute(
            "ALTER TABLE archive RENAME TO todos;
             UPDATE todos SET title = 'third!' WHERE id = 'c';",
        )
        .await
        .unwrap();
    wait_rows(
        &running,
        &[
            ("todos", "a", "first!"),
            ("todos", "c", "third!"),
            ("todos", "d", "fourth"),
            ("todos", "e", "fifth"),
            ("todos", "f", "sixth"),
        ],
    )
    .await;
    running.stop().await;
}

/// (c) A dropped referenced table's rows leave the bucket, changes made just before the
/// drop do not bring them back, and a table re-created under the name syncs afresh.
#[tokio::test]
async fn dropped_table_leaves_and_recreated_table_syncs() {
    let db = source_db().await;
    let client = db.client().await;
    client
        .batch_execute("INSERT INTO todos VALUES ('a', 'first', 1, NULL), ('b', 'second', 2, NULL)")
        .await
        .unwrap();
    let running = start(&db, memory_storage(), None, RULES).await;
    running.wait_commits(1).await;
    client
        .batch_execute(
            "INSERT INTO todos VALUES ('c', 'third', 3, NULL);
             UPDATE todos SET title = 'first!' WHERE id = 'a';
             DROP TABLE todos;",
        )
        .await
        .unwrap();
    wait_rows(&running, &[]).await;
    client
        .batch_execute(
            "BEGIN;
             CREATE TABLE todos (id text PRIMARY KEY, title text, n int4, body text);
             INSERT INTO todos (id, title) VALUES ('x', 'new');
             COMMIT;
             INSERT INTO todos (id, title) VALUES ('y', 'newer');",
        )
        .await
        .unwrap();
    wait_rows(&running, &[("todos", "x", "new"), ("todos", "y", "newer")]).await;
    running.stop().await;
}

/// (d) A table removed from the publication leaves the bucket; added back, it is copied
/// with the rows changed while it was out.
#[tokio::test]
async fn unpublished_table_leaves_and_republished_table_returns() {
    let db = source_db().await;
    unpublished_table(&db, memory_storage()).await;
}

#[tokio::test]
async fn unpublished_table_leaves_and_republished_table_returns_postgres_storage() {
    let db = source_db().await;
    let storage_db = TestDatabase::create().await;
    unpublished_table(&db, pg_storage(&storage_db).await).await;
}

async fn unpublished_table(db: &TestDatabase, storage: Arc<RecordingStorage>) {
    let client = db.client().await;
    client
        .batch_execute(
            "DROP PUBLICATION powersync;
             CREATE PUBLICATION powersync FOR TABLE todos, other;
             INSERT INTO todos VALUES ('a', 'first', 1, NULL), ('b', 'second', 2, NULL);",
        )
        .await
        .unwrap();
    let running = start(db, storage, None, RULES).await;
    running.wait_commits(1).await;
    wait_rows(
        &running,
        &[("todos", "a", "first"), ("todos", "b", "second")],
    )
    .await;
    client
        .batch_execute(
            "INSERT INTO todos VALUES ('c', 'third', 3, NULL);
             ALTER PUBLICATION powersync DROP TABLE todos;
             INSERT INTO todos VALUES ('d', 'fourth', 4, NULL);
             INSERT INTO other VALUES (1, 'tick');",
        )
        .await
        .unwrap();
    wait_rows(&running, &[]).await;
    client
        .batch_execute(
            "DELETE FROM todos WHERE id = 'b';
             ALTER PUBLICATION powersync ADD TABLE todos;
             INSERT INTO todos VALUES ('e', 'fifth', 5, NULL);
             UPDATE todos SET title = 'first!' WHERE id = 'a';",
        )
        .await
        .unwrap();
    wait_rows(
        &running,
        &[
            ("todos", "a", "first!"),
            ("todos", "c", "third"),
            ("todos", "d", "fourth"),
            ("todos", "e", "fifth"),
        ],
    )
    .await;
    running.stop().await;
}

/// A table added to the publication in the middle of a burst of small transactions that
/// insert, update and delete its rows (each write a new value): the stream lags behind the
/// copy's consistent point, so the gate must skip exactly the changes the copy has. Afterwards
/// the bucket equals the table and no change was applied twice.
#[tokio::test]
async fn table_published_under_concurrent_writes_converges_exactly() {
    let db = source_db().await;
    let client = db.client().await;
    client
        .batch_execute(
            "DROP PUBLICATION powersync;
             CREATE PUBLICATION powersync FOR TABLE todos;
             CREATE TABLE notes (id text PRIMARY KEY, v text);
             INSERT INTO notes SELECT 'n' || i, 'v0' FROM generate_series(1, 20) i;",
        )
        .await
        .unwrap();
    let running = start_checking_always(&db, TWO_TABLES).await;
    running.wait_commits(1).await;
    let mut burst = String::new();
    for i in 1..=300 {
        if i == 20 {
            burst.push_str("ALTER PUBLICATION powersync ADD TABLE notes;\n");
        }
        let id = i % 25;
        burst.push_str(&format!(
            "BEGIN; INSERT INTO notes VALUES ('n{id}', 'w{i}') \
             ON CONFLICT (id) DO UPDATE SET v = excluded.v; COMMIT;\n"
        ));
        if i % 7 == 0 {
            burst.push_str(&format!(
                "BEGIN; DELETE FROM notes WHERE id = 'n{}'; COMMIT;\n",
                (i * 3) % 25
            ));
        }
    }
    client.batch_execute(&burst).await.unwrap();
    let rows = client
        .query("SELECT id, v FROM notes ORDER BY id", &[])
        .await
        .unwrap();
    let expected: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect();
    let expected: Vec<(&str, &str, &str)> = expected
        .iter()
        .map(|(id, v)| ("notes", id.as_str(), v.as_str()))
        .collect();
    let history = wait_rows(&running, &expected).await;
    // Each write has a larger number: a row's PUTs never go back (no replayed change).
    for (id, values) in &history {
        let numbers: Vec<u32> = values
            .iter()
            .map(|v| v.trim_start_matches(['v', 'w']).parse().unwrap())
            .collect();
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "{id:?} went back: {numbers:?}"
        );
    }
    running.stop().await;
}

/// A drop at the end of a burst of changes to the table: whether the catalog check sees the
/// drop before or after the stream delivers the burst, no row comes back.
#[tokio::test]
async fn dropped_table_after_a_burst_stays_empty() {
    let db = source_db().await;
    let client = db.client().await;
    client
        .batch_execute("INSERT INTO todos SELECT 't' || i, 'v0', i FROM generate_series(1, 20) i")
        .await
        .unwrap();
    // A catalog check after every transaction: it sees the drop while the stream still has
    // the burst to deliver.
    let running = start_checking_always(&db, RULES).await;
    running.wait_commits(1).await;
    let mut burst = String::new();
    for i in 1..=200 {
        burst.push_str(&format!(
            "BEGIN; INSERT INTO todos (id, title) VALUES ('t{}', 'w{i}') \
             ON CONFLICT (id) DO UPDATE SET title = excluded.title; COMMIT;\n",
            i % 30
        ));
    }
    burst.push_str("DROP TABLE todos;");
    client.batch_execute(&burst).await.unwrap();
    wait_rows(&running, &[]).await;
    // Later stream activity (and catalog checks) do not bring rows back.
    client
        .batch_execute("INSERT INTO other VALUES (1, 'tick')")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (rows, _, _) = bucket_rows(&running).await;
    assert_eq!(rows, Rows::new());
    running.stop().await;
}

/// Like `crate::common::start` with memory storage, comparing the catalog after every transaction.
async fn start_checking_always(db: &TestDatabase, rules: &str) -> Running {
    let storage = memory_storage();
    let deployment = storage.create_deployment(rules, "riptide_").await.unwrap();
    let (events, _) = tokio::sync::broadcast::channel(64);
    let replicator = Arc::new(
        riptide_replication::Replicator::new(options(db), storage.clone(), events)
            .with_stream_options(riptide_replication::StreamOptions {
                catalog_check_interval: Duration::ZERO,
                ..Default::default()
            }),
    );
    let parsed = Arc::new(riptide_rules::SyncRules::parse(rules).unwrap());
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn({
        let replicator = replicator.clone();
        let deployment = deployment.clone();
        let cancel = cancel.clone();
        async move { replicator.run(deployment, parsed, cancel).await }
    });
    Running {
        storage,
        deployment,
        replicator,
        cancel,
        task,
    }
}

/// The e2e "unpublish" case, repeated: a change to the table right before it leaves the
/// publication, while the catalog check may see the removal before the stream delivers that
/// change. With `synchronous_commit = off` (the test cluster's setting) the WAL write
/// position lags behind committed transactions, so the removal's gate must end at a
/// position past every transaction the catalog showed (the insert position), or the change
/// brings its row back after the removal.
#[tokio::test]
async fn unpublished_table_with_a_change_just_before_stays_empty_repeatedly() {
    let db = source_db().await;
    let client = db.client().await;
    client
        .batch_execute(
            "DROP PUBLICATION powersync;
             CREATE PUBLICATION powersync FOR TABLE todos, other;
             INSERT INTO todos (id, title) VALUES ('z', 'initial');",
        )
        .await
        .unwrap();
    let running = start_checking_always(&db, RULES).await;
    running.wait_commits(1).await;
    wait_rows(&running, &[("todos", "z", "initial")]).await;
    let mut expected = vec![("z".to_owned(), "initial".to_owned())];
    for i in 0..20 {
        client
            .batch_execute(&format!(
                "INSERT INTO other VALUES ({i}, 'before');
                 INSERT INTO todos (id, title) VALUES ('a{i}', 'published {i}');
                 ALTER PUBLICATION powersync DROP TABLE todos;
                 INSERT INTO todos (id, title) VALUES ('b{i}', 'unpublished {i}');
                 INSERT INTO other VALUES ({}, 'after');",
                1000 + i
            ))
            .await
            .unwrap();
        wait_rows(&running, &[]).await;
        client
            .batch_execute("ALTER PUBLICATION powersync ADD TABLE todos;")
            .await
            .unwrap();
        expected.push((format!("a{i}"), format!("published {i}")));
        expected.push((format!("b{i}"), format!("unpublished {i}")));
        let rows: Vec<(&str, &str, &str)> = expected
            .iter()
            .map(|(id, v)| ("todos", id.as_str(), v.as_str()))
            .collect();
        wait_rows(&running, &rows).await;
    }
    running.stop().await;
}

/// Table changes made while the replicator is stopped are found at restart: the stored
/// tracked set differs from the catalog, so a table added to the publication (with rows
/// written before, never streamed) is copied, and a table removed from it leaves.
#[tokio::test]
async fn table_changes_while_stopped_are_found_at_restart() {
    let db = source_db().await;
    table_changes_while_stopped(&db, memory_storage()).await;
}

#[tokio::test]
async fn table_changes_while_stopped_are_found_at_restart_postgres_storage() {
    let db = source_db().await;
    let storage_db = TestDatabase::create().await;
    table_changes_while_stopped(&db, pg_storage(&storage_db).await).await;
}

async fn table_changes_while_stopped(db: &TestDatabase, storage: Arc<RecordingStorage>) {
    let client = db.client().await;
    client
        .batch_execute(
            "DROP PUBLICATION powersync;
             CREATE PUBLICATION powersync FOR TABLE todos, other;
             INSERT INTO todos VALUES ('a', 'first', 1, NULL);
             CREATE TABLE notes (id text PRIMARY KEY, v text);
             INSERT INTO notes VALUES ('n1', 'one');",
        )
        .await
        .unwrap();
    let running = start(db, storage, None, TWO_TABLES).await;
    running.wait_commits(1).await;
    wait_rows(&running, &[("todos", "a", "first")]).await;
    // Not published: streamed nowhere.
    client
        .batch_execute("INSERT INTO notes VALUES ('n2', 'two')")
        .await
        .unwrap();
    let (storage, deployment) = running.stop().await;

    client
        .batch_execute(
            "INSERT INTO todos VALUES ('b', 'second', 2, NULL);
             ALTER PUBLICATION powersync DROP TABLE todos;
             ALTER PUBLICATION powersync ADD TABLE notes;
             UPDATE notes SET v = 'one!' WHERE id = 'n1';",
        )
        .await
        .unwrap();
    let running = start(db, storage, Some(deployment), TWO_TABLES).await;
    wait_rows(&running, &[("notes", "n1", "one!"), ("notes", "n2", "two")]).await;
    // A second restart with nothing changed keeps it that way.
    let (storage, deployment) = running.stop().await;
    client
        .batch_execute("INSERT INTO notes VALUES ('n3', 'three')")
        .await
        .unwrap();
    let running = start(db, storage, Some(deployment), TWO_TABLES).await;
    wait_rows(
        &running,
        &[
            ("notes", "n1", "one!"),
            ("notes", "n2", "two"),
            ("notes", "n3", "three"),
        ],
    )
    .await;
    running.stop().await;
}

/// A table removed from the publication and added back between two catalog checks: its
/// relation OID is the same, but its membership row is new, so the check copies it again and
/// the changes made while it was out arrive.
#[tokio::test]
async fn table_unpublished_and_republished_between_checks_is_copied_again() {
    let db = source_db().await;
    let client = db.client().await;
    client
        .batch_execute(
            "DROP PUBLICATION powersync;
             CREATE PUBLICATION powersync FOR TABLE todos, other;
             INSERT INTO todos VALUES ('a', 'first', 1, NULL);",
        )
        .await
        .unwrap();
    let running = start(&db, memory_storage(), None, RULES).await;
    running.wait_commits(1).await;
    wait_rows(&running, &[("todos", "a", "first")]).await;
    client
        .batch_execute(
            "ALTER PUBLICATION powersync DROP TABLE todos;
             INSERT INTO todos VALUES ('b', 'second', 2, NULL);
             UPDATE todos SET title = 'first!' WHERE id = 'a';
             ALTER PUBLICATION powersync ADD TABLE todos;
             INSERT INTO other VALUES (1, 'tick');",
        )
        .await
        .unwrap();
    wait_rows(
        &running,
        &[("todos", "a", "first!"), ("todos", "b", "second")],
    )
    .await;
    running.stop().await;
}
