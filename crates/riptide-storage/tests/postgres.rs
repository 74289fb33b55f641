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
        compaction_random_workload_converges,
        compaction_concurrent_with_replication_loses_nothing,
    compaction_of_a_bucket_with_a_long_name,
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
    compaction_rewrites_superseded_ops,
    compaction_moves_ops_behind_a_live_row,
    compaction_in_small_steps_matches_one_step,
    compaction_random_workload_converges,
    compaction_does_not_wait_for_replication,
    compaction_concurrent_with_replication_loses_nothing,
    compaction_of_a_bucket_with_a_long_name,
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

/// Compaction does not wait on the replicator: a bucket an open batch has written (its
/// `bucket_state` row locked until the batch commits) is left for later after a short wait,
/// other buckets are compacted, and the batch then commits without waiting either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_skips_a_bucket_an_open_batch_is_writing() {
    use riptide_storage::CompactLimits;
    let (storage, _db) = make_small_chunks().await;
    let s: &dyn BucketStorage = &storage;
    let id = suite::new_deployment(s).await;
    s.mark_snapshot_done(id).await.unwrap();
    for round in 0..3u64 {
        let data = format!(r#"{{"round":{round}}}"#);
        suite::commit(
            s,
            id,
            vec![
                suite::upsert("t", "a1", &[("a", "1", &data)]),
                suite::upsert("t", "b1", &[("b", "1", &data)]),
            ],
            round + 1,
        )
        .await;
    }
    let mut batch = s.begin_batch(id).await.unwrap();
    // Three chunks of three rows: the first two are written (and lock bucket "a") before the
    // third starts.
    for i in 0..9 {
        batch
            .save(vec![suite::upsert(
                "t",
                &format!("n{i}"),
                &[("a", &format!("n{i}"), "{}")],
            )])
            .await
            .unwrap();
    }
    let limits = CompactLimits::default();
    let deadline = std::time::Duration::from_secs(10);
    let a = tokio::time::timeout(deadline, s.compact_bucket(id, "a", &limits))
        .await
        .expect("compaction waited for the batch")
        .unwrap();
    assert_eq!((a.buckets_busy, a.ops_moved), (1, 0), "{a:?}");
    let b = tokio::time::timeout(deadline, s.compact_bucket(id, "b", &limits))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (b.buckets_busy, b.ops_moved, b.ops_removed),
        (0, 0, 1),
        "{b:?}"
    );
    // "a" keeps its superseded count for the next round.
    let left = s.compaction_candidates(id, 1, None, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].bucket.as_str(), left[0].superseded), ("a", 2));
    tokio::time::timeout(deadline, batch.commit(Lsn(10)))
        .await
        .expect("the batch waited for compaction")
        .unwrap();
    let a = s.compact_bucket(id, "a", &limits).await.unwrap();
    assert_eq!(
        (a.buckets_busy, a.ops_moved, a.ops_removed),
        (0, 0, 1),
        "{a:?}"
    );
}

/// `terminate` waits for a compaction transaction and compaction writes nothing into a
/// terminated deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_after_terminate_writes_nothing() {
    use riptide_storage::CompactLimits;
    let (storage, db) = make().await;
    let s: &dyn BucketStorage = &storage;
    let id = suite::new_deployment(s).await;
    s.mark_snapshot_done(id).await.unwrap();
    for round in 0..3u64 {
        let data = format!(r#"{{"round":{round}}}"#);
        suite::commit(
            s,
            id,
            vec![suite::upsert("t", "a1", &[("a", "1", &data)])],
            round + 1,
        )
        .await;
    }
    s.terminate(id).await.unwrap();
    let done = s
        .compact_bucket(id, "a", &CompactLimits::default())
        .await
        .unwrap();
    assert_eq!(done, riptide_storage::CompactStats::default());
    let rows: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM riptide.bucket_data WHERE deployment_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
}

/// Parameter lookups need no compaction: storage keeps only their current state, so after
/// many changes of the rows that produce them the table holds exactly the live entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_lookups_hold_only_current_entries() {
    let (storage, db) = make().await;
    let s: &dyn BucketStorage = &storage;
    let id = suite::new_deployment(s).await;
    for round in 0..20 {
        let ops = (0..10)
            .map(|row| {
                let key = format!("m{row}");
                let lookup = format!("team{}", (row + round) % 3);
                if (row + round) % 7 == 0 {
                    suite::delete("public.members", &key)
                } else {
                    suite::upsert_with("public.members", &key, &[], &[(&lookup, &key)])
                }
            })
            .collect();
        suite::commit(s, id, ops, round + 1).await;
    }
    let live: i64 = (0..10).filter(|row| (row + 19) % 7 != 0).count() as i64;
    let stored: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM riptide.parameter_lookups WHERE deployment_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, live);
    let results = s
        .parameter_results(
            id,
            &[b"team0".to_vec(), b"team1".to_vec(), b"team2".to_vec()],
        )
        .await
        .unwrap();
    assert_eq!(results.values().map(Vec::len).sum::<usize>() as i64, live);
}
