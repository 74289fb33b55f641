//! The behavioural suite against [`PgStorage`] on a real Postgres (one fresh database per
//! test from `riptide-testkit`), plus Postgres-only checks.

use riptide_protocol::{Lsn, OpId};
use riptide_storage::{BucketStorage, PgStorage, SCHEMA_VERSION, StorageError};
use riptide_testkit::TestDatabase;

use crate::suite;

async fn make() -> (PgStorage, TestDatabase) {
    let db = TestDatabase::create().await;
    let storage = PgStorage::connect(&db.url()).await.unwrap();
    storage.migrate().await.unwrap();
    (storage, db)
}

/// A storage whose batches flush every 3 rows, so every chunk boundary case (a row changed in
/// the chunk being flushed, truncates between chunks, parameter rows) is exercised.
async fn make_small_chunks() -> (PgStorage, TestDatabase) {
    let (storage, db) = make().await;
    (storage.with_batch_chunk_rows(3), db)
}

mod small_chunks {
    use super::make_small_chunks;

    storage_suite!(make_small_chunks();
        puts_and_removes,
        same_row_twice_in_one_batch,
        checksums_match_sent_ops,
        dropped_batch_leaves_nothing,
        truncate_removes_table_rows,
        parameter_lookups,
        random_workload_matches_client_model,
    );
}

storage_suite!(make();
    puts_and_removes,
    same_row_twice_in_one_batch,
    checksums_match_sent_ops,
    bucket_data_paging,
    dropped_batch_leaves_nothing,
    truncate_removes_table_rows,
    parameter_lookups,
    write_checkpoints,
    deployments_lifecycle,
    migrate_twice,
    large_batch,
    one_writer_per_deployment,
    random_workload_matches_client_model,
    concurrent_writers,
    op_ids_continue_across_deployments,
    events_carry_small_commits,
    keys_of_any_length,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_are_safe() {
    let db = TestDatabase::create().await;
    let a = PgStorage::connect(&db.url()).await.unwrap();
    let b = PgStorage::connect(&db.url()).await.unwrap();
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    let client = db.client().await;
    let rows = client
        .query(
            "SELECT version FROM riptide.migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_schema_is_refused() {
    let (storage, db) = make().await;
    db.client()
        .await
        .execute(
            "INSERT INTO riptide.migrations (version, name) VALUES (999, 'future')",
            &[],
        )
        .await
        .unwrap();
    assert!(matches!(
        storage.migrate().await,
        Err(StorageError::SchemaTooNew { found: 999, .. })
    ));
}

#[tokio::test]
async fn bad_uri_is_a_typed_error() {
    assert!(matches!(
        PgStorage::connect("postgres://x:y@[bad").await,
        Err(StorageError::InvalidUri(_))
    ));
}

/// Corrupt rows from the database are typed errors, never panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_stored_data_is_a_typed_error() {
    let (storage, db) = make().await;
    let s: &dyn BucketStorage = &storage;
    let id = suite::new_deployment(s).await;
    suite::commit(s, id, vec![suite::upsert("t", "k", &[("a", "1", "{}")])], 1).await;
    let client = db.client().await;
    client
        .batch_execute(
            "UPDATE riptide.bucket_data SET checksum = -5; \
             UPDATE riptide.current_data SET buckets = '\\x0100'",
        )
        .await
        .unwrap();
    assert!(matches!(
        s.bucket_data(id, OpId(1), &[("a".into(), OpId(0))], 10)
            .await,
        Err(StorageError::Corrupt(_))
    ));
    let mut b = s.begin_batch(id).await.unwrap();
    assert!(matches!(
        b.save(vec![suite::upsert("t", "k", &[("a", "1", "{}")])])
            .await
            .and(Ok(()))
            .and(b.commit(Lsn(2)).await.map(|_| ())),
        Err(StorageError::Corrupt(_))
    ));
}

/// A checkpoint notification is sent on commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_notifies() {
    use futures::StreamExt;
    let (storage, db) = make().await;
    let (client, mut conn) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(async move {
        while let Some(Ok(m)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {}", riptide_storage::CHECKPOINT_CHANNEL))
        .await
        .unwrap();
    let s: &dyn BucketStorage = &storage;
    let id = suite::new_deployment(s).await;
    suite::commit(
        s,
        id,
        vec![suite::upsert("t", "k", &[("a", "1", "{}")])],
        0x1_0000_0010,
    )
    .await;
    let payload = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        payload,
        format!(r#"{{"deployment":{id},"op_id":"1","lsn":"1/10"}}"#)
    );
}
