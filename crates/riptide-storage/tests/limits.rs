//! Storage's part of the service's limits, on both storages: data pages bounded by bytes
//! (`bucket_data_page`) and write-checkpoint counters pruned per user.

use std::time::Duration;

use crate::suite::{commit, new_deployment, upsert};
use riptide_protocol::{Lsn, OpId};
use riptide_storage::{BucketStorage, MemoryStorage, PageLimit, PgStorage, op_bytes};
use riptide_testkit::TestDatabase;

async fn pg() -> (PgStorage, TestDatabase) {
    let db = TestDatabase::create().await;
    let storage = PgStorage::connect(&db.url()).await.unwrap();
    storage.migrate().await.unwrap();
    (storage, db)
}

/// 10 ops of about 10 KiB in bucket `a`, 2 in `b`; pages of 25 KiB end after the third op.
async fn pages_end_at_their_byte_budget(s: &dyn BucketStorage) {
    let id = new_deployment(s).await;
    let big = format!("{{\"x\":\"{}\"}}", "x".repeat(10 * 1024));
    let mut ops = Vec::new();
    for i in 0..10 {
        ops.push(upsert(
            "t",
            &format!("a{i}"),
            &[("a", &format!("a{i}"), &big)],
        ));
    }
    for i in 0..2 {
        ops.push(upsert(
            "t",
            &format!("b{i}"),
            &[("b", &format!("b{i}"), &big)],
        ));
    }
    let e = commit(s, id, ops, 1).await;
    let checkpoint = e.checkpoint.op_id;
    let limit = PageLimit {
        ops: 1000,
        bytes: 25 * 1024,
    };
    let mut after = (OpId(0), OpId(0));
    let mut pages = 0;
    let mut seen = 0;
    loop {
        let req = vec![("a".to_owned(), after.0), ("b".to_owned(), after.1)];
        let page = s
            .bucket_data_page(id, checkpoint, &req, limit)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        pages += 1;
        let ops: Vec<_> = page.iter().flat_map(|c| &c.ops).collect();
        let bytes: usize = ops.iter().map(|o| op_bytes(o)).sum();
        // At most one op beyond the budget.
        assert!(ops.len() <= 3, "{} ops in a page", ops.len());
        assert!(bytes - op_bytes(ops[ops.len() - 1]) < limit.bytes);
        for chunk in &page {
            let last = chunk.ops.last().unwrap().op_id;
            match chunk.bucket.as_str() {
                "a" => after.0 = last,
                _ => after.1 = last,
            }
            seen += chunk.ops.len();
        }
        assert!(pages < 20, "paging does not advance");
    }
    assert_eq!(seen, 12);
    assert_eq!(pages, 4);
    // Without a byte bound, one page holds everything.
    let all = s
        .bucket_data(
            id,
            checkpoint,
            &[("a".into(), OpId(0)), ("b".into(), OpId(0))],
            1000,
        )
        .await
        .unwrap();
    assert_eq!(all.iter().map(|c| c.ops.len()).sum::<usize>(), 12);
}

/// Five clients of one user, keep three: the two least recently used go, with their history;
/// another user's counters stay.
async fn write_checkpoint_counters_are_pruned(s: &dyn BucketStorage) {
    for i in 0..5 {
        s.create_write_checkpoint("u", &format!("c{i}"), Lsn(10))
            .await
            .unwrap();
    }
    s.create_write_checkpoint("other", "c0", Lsn(10))
        .await
        .unwrap();
    let pruned = s
        .prune_write_checkpoints("u", 3, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(pruned, 2);
    for (i, kept) in [(0, false), (1, false), (2, true), (3, true), (4, true)] {
        let found = s
            .write_checkpoint("u", &format!("c{i}"), Lsn(100))
            .await
            .unwrap();
        assert_eq!(found.is_some(), kept, "c{i}");
    }
    // A pruned client starts over.
    assert_eq!(
        s.create_write_checkpoint("u", "c0", Lsn(10)).await.unwrap(),
        OpId(1)
    );
    assert!(
        s.write_checkpoint("other", "c0", Lsn(100))
            .await
            .unwrap()
            .is_some()
    );
    // Age: everything older than zero seconds goes.
    let pruned = s
        .prune_write_checkpoints("u", 100, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(pruned, 4);
}

#[tokio::test]
async fn memory_pages_end_at_their_byte_budget() {
    pages_end_at_their_byte_budget(&MemoryStorage::new()).await;
}

#[tokio::test]
async fn memory_write_checkpoint_counters_are_pruned() {
    write_checkpoint_counters_are_pruned(&MemoryStorage::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pages_end_at_their_byte_budget() {
    let (s, _db) = pg().await;
    pages_end_at_their_byte_budget(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_write_checkpoint_counters_are_pruned() {
    let (s, _db) = pg().await;
    write_checkpoint_counters_are_pruned(&s).await;
}
