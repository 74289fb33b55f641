//! Streamed in-progress transactions (pgoutput protocol 2) against a real Postgres, with
//! Postgres bucket storage (its deployment lock is what makes a streamed transaction's open
//! batch exclusive): saved while the transaction runs, visible only at its commit, gone at its
//! abort, deferred to protocol 1 when another transaction needs storage, and neither lost nor
//! applied twice across a restart.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::*;
use riptide_replication::StreamOptions;
use riptide_rules::Row;
use riptide_storage::{BatchOperation, BucketStorage, PgStorage, RowChange};
use riptide_testkit::{TestDatabase, wait_for};

/// Postgres streams a transaction past 64 kB of decoded changes (the least it takes).
fn streaming() -> StreamOptions {
    StreamOptions {
        stream_in_progress_kb: Some(64),
        ..StreamOptions::default()
    }
}

const ROWS: u64 = 20_000;

fn insert_rows(prefix: &str, from: u64, to: u64) -> String {
    format!(
        "INSERT INTO todos SELECT '{prefix}' || i, 'title', i, NULL FROM generate_series({from}, {to}) i"
    )
}

/// The key the replicator makes for a single text identity column.
fn key(id: &str) -> Vec<u8> {
    let mut k = vec![1];
    k.extend_from_slice(&(id.len() as u32).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

async fn pg_storage() -> (TestDatabase, Arc<RecordingStorage>) {
    let storage_db = TestDatabase::create().await;
    let pg = PgStorage::connect(&storage_db.url()).await.unwrap();
    pg.migrate().await.unwrap();
    (storage_db, RecordingStorage::new(Arc::new(pg)))
}

/// A source database, its storage database and the storage, and a streaming replicator past
/// its first commit; with the number of storage commits so far.
async fn streaming_replicator() -> (
    TestDatabase,
    TestDatabase,
    Arc<RecordingStorage>,
    Running,
    usize,
) {
    let db = source_db().await;
    let (storage_db, storage) = pg_storage().await;
    let running = start_with(&db, storage.clone(), None, RULES, streaming()).await;
    running.wait_commits(1).await;
    let before = storage.commits().len();
    (db, storage_db, storage, running, before)
}

/// Waits until storage has been sent at least `rows` rows (committed or not).
async fn wait_saved(storage: &Arc<RecordingStorage>, rows: u64) {
    let storage = storage.clone();
    wait_for("rows saved", Duration::from_secs(30), || {
        let storage = storage.clone();
        async move { (storage.rows_saved.load(Ordering::SeqCst) >= rows).then_some(()) }
    })
    .await;
}

/// Upserted ids of every committed source change after the first `skip` commits, with
/// deletes applied, in order.
fn stored_ids(storage: &RecordingStorage, skip: usize) -> Vec<String> {
    let mut ids = std::collections::BTreeMap::new();
    for op in storage.ops_after(skip) {
        let BatchOperation::Row(r) = op else { continue };
        match r.change {
            RowChange::Upsert { row, .. } => {
                let row = Row::decode(&row).unwrap();
                let Some(riptide_rules::SqliteValue::Text(id)) = row.get("id").cloned() else {
                    panic!("row without a text id");
                };
                *ids.entry(id).or_insert(0) += 1;
            }
            RowChange::Delete => {}
        }
    }
    for (id, n) in &ids {
        assert_eq!(*n, 1, "{id} applied {n} times");
    }
    ids.into_keys().collect()
}

async fn wait_ids(storage: &Arc<RecordingStorage>, skip: usize, n: usize) -> Vec<String> {
    let storage = storage.clone();
    wait_for("stored rows", Duration::from_secs(60), || {
        let storage = storage.clone();
        async move {
            let ids = stored_ids(&storage, skip);
            (ids.len() >= n).then_some(ids)
        }
    })
    .await
}

#[tokio::test]
async fn a_large_transaction_is_saved_before_its_commit_and_visible_at_it() {
    let (db, _storage_db, storage, running, before) = streaming_replicator().await;

    let mut client = db.client().await;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(&insert_rows("r", 1, ROWS)).await.unwrap();
    // Streamed and saved while the transaction is open, nothing committed or readable.
    wait_saved(&storage, ROWS / 2).await;
    assert_eq!(storage.commits().len(), before);
    let stored = storage
        .current_rows(running.deployment.id, "public.todos", &[key("r1")])
        .await
        .unwrap();
    assert!(stored.is_empty(), "readable before the commit");
    tx.commit().await.unwrap();

    let ids = wait_ids(&storage, before, ROWS as usize).await;
    assert_eq!(ids.len(), ROWS as usize);
    let data: Vec<_> = storage.commits().into_iter().skip(before).collect();
    assert_eq!(data.len(), 1, "one storage commit");
    let stored = storage
        .current_rows(running.deployment.id, "public.todos", &[key("r1")])
        .await
        .unwrap();
    assert_eq!(stored.len(), 1, "readable after the commit");
    running.stop().await;
}

#[tokio::test]
async fn an_aborted_streamed_transaction_leaves_nothing() {
    let (db, _storage_db, storage, running, before) = streaming_replicator().await;

    let mut client = db.client().await;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(&insert_rows("r", 1, ROWS)).await.unwrap();
    wait_saved(&storage, ROWS / 2).await;
    tx.rollback().await.unwrap();
    client
        .batch_execute(&insert_rows("after", 1, 1))
        .await
        .unwrap();
    let ids = wait_ids(&storage, before, 1).await;
    assert_eq!(ids, ["after1"]);
    running.stop().await;
}

#[tokio::test]
async fn a_transaction_committed_beside_a_streamed_one_defers_it() {
    let (db, _storage_db, storage, running, before) = streaming_replicator().await;

    let mut big = db.client().await;
    let small = db.client().await;
    let tx = big.transaction().await.unwrap();
    tx.batch_execute(&insert_rows("r", 1, ROWS)).await.unwrap();
    wait_saved(&storage, ROWS / 2).await;
    // Committed while the streamed transaction holds storage: it is deferred, this one
    // stored first, and the big one replayed whole (protocol 1) at its commit.
    small
        .batch_execute(&insert_rows("small", 1, 3))
        .await
        .unwrap();
    let ids = wait_ids(&storage, before, 3).await;
    assert_eq!(ids, ["small1", "small2", "small3"]);
    // A subtransaction rolled back inside the big one.
    tx.batch_execute(&format!(
        "SAVEPOINT s; {}; ROLLBACK TO SAVEPOINT s; {}",
        insert_rows("gone", 1, 5_000),
        insert_rows("tail", 1, 10)
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let ids = wait_ids(&storage, before, ROWS as usize + 13).await;
    assert_eq!(ids.len(), ROWS as usize + 13);
    assert!(ids.iter().all(|id| !id.starts_with("gone")));

    // Streaming again afterwards: the next big transaction is saved before its commit.
    let saved = storage.rows_saved.load(Ordering::SeqCst);
    let tx = big.transaction().await.unwrap();
    tx.batch_execute(&insert_rows("next", 1, ROWS))
        .await
        .unwrap();
    wait_saved(&storage, saved + ROWS / 2).await;
    tx.commit().await.unwrap();
    wait_ids(&storage, before, 2 * ROWS as usize + 13).await;
    running.stop().await;
}

#[tokio::test]
async fn a_subtransaction_abort_inside_a_stream_keeps_the_rest() {
    let (db, _storage_db, storage, running, before) = streaming_replicator().await;

    let mut client = db.client().await;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(&format!(
        "{}; SAVEPOINT s; {}; ROLLBACK TO SAVEPOINT s; {}",
        insert_rows("r", 1, ROWS),
        insert_rows("gone", 1, ROWS),
        insert_rows("tail", 1, 10)
    ))
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let ids = wait_ids(&storage, before, ROWS as usize + 10).await;
    assert_eq!(ids.len(), ROWS as usize + 10);
    assert!(ids.iter().all(|id| !id.starts_with("gone")));
    running.stop().await;
}

#[tokio::test]
async fn a_restart_mid_stream_loses_and_duplicates_nothing() {
    let (db, _storage_db, storage, running, before) = streaming_replicator().await;

    let mut client = db.client().await;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(&insert_rows("r", 1, ROWS)).await.unwrap();
    wait_saved(&storage, ROWS / 2).await;
    // Stopped with the streamed batch open: rolled back.
    let (storage, deployment) = running.stop().await;
    assert_eq!(storage.commits().len(), before);
    tx.commit().await.unwrap();

    let deployment = storage.deployment(deployment.id).await.unwrap();
    let running = start_with(&db, storage.clone(), Some(deployment), RULES, streaming()).await;
    let ids = wait_ids(&storage, before, ROWS as usize).await;
    assert_eq!(ids.len(), ROWS as usize);
    running.stop().await;
}
