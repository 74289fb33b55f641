//! The behavioural test suite every [`BucketStorage`] implementation must pass. Each function
//! takes a fresh, migrated storage; `storage_suite!` turns them into `#[tokio::test]`s.

pub mod compaction;
mod long_keys;

pub use compaction::*;
pub use long_keys::keys_of_any_length;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use riptide_protocol::{Checksum, Lsn, OpId, OpType, OplogEntry};
use riptide_storage::{
    BatchOperation, BucketRow, BucketStorage, CheckpointEvent, DeploymentId, DeploymentState,
    ParameterRow, RowChange, RowOperation, StorageError,
};

/// Generates one `#[tokio::test]` per suite function. `$make` is an async expression returning
/// `(storage, guard)`; the guard (e.g. a test database) lives until the test ends.
#[macro_export]
macro_rules! storage_suite {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (storage, _guard) = $make.await;
                $crate::suite::$name(&storage).await;
            }
        )*
    };
}

pub fn upsert(table: &str, key: &str, buckets: &[(&str, &str, &str)]) -> BatchOperation {
    upsert_with(table, key, buckets, &[])
}

pub fn upsert_with(
    table: &str,
    key: &str,
    buckets: &[(&str, &str, &str)],
    params: &[(&str, &str)],
) -> BatchOperation {
    BatchOperation::Row(RowOperation {
        source_table: table.into(),
        key: key.as_bytes().to_vec(),
        change: RowChange::Upsert {
            row: format!("row:{key}:{buckets:?}").into_bytes(),
            buckets: buckets
                .iter()
                .map(|(b, id, data)| BucketRow {
                    bucket: (*b).into(),
                    table: "items".into(),
                    id: (*id).into(),
                    data: (*data).into(),
                })
                .collect(),
            parameters: params
                .iter()
                .map(|(l, r)| ParameterRow {
                    lookup: l.as_bytes().to_vec(),
                    result: r.as_bytes().to_vec(),
                })
                .collect(),
        },
    })
}

pub fn delete(table: &str, key: &str) -> BatchOperation {
    BatchOperation::Row(RowOperation {
        source_table: table.into(),
        key: key.as_bytes().to_vec(),
        change: RowChange::Delete,
    })
}

pub async fn new_deployment(s: &dyn BucketStorage) -> DeploymentId {
    let d = s
        .create_deployment("bucket_definitions: {}", "riptide_")
        .await
        .unwrap();
    d.id
}

pub async fn commit(
    s: &dyn BucketStorage,
    id: DeploymentId,
    ops: Vec<BatchOperation>,
    lsn: u64,
) -> CheckpointEvent {
    let mut b = s.begin_batch(id).await.unwrap();
    b.save(ops).await.unwrap();
    b.commit(Lsn(lsn)).await.unwrap()
}

/// All ops of `bucket` up to `checkpoint`, read in small pages.
pub async fn read_all(
    s: &dyn BucketStorage,
    id: DeploymentId,
    checkpoint: OpId,
    bucket: &str,
) -> Vec<OplogEntry> {
    let mut after = OpId::ZERO;
    let mut out = Vec::new();
    loop {
        let chunks = s
            .bucket_data(id, checkpoint, &[(bucket.to_owned(), after)], 3)
            .await
            .unwrap();
        let Some(c) = chunks.into_iter().next() else {
            return out;
        };
        assert_eq!(c.bucket, bucket);
        after = c.ops.last().unwrap().op_id;
        out.extend(c.ops);
        if !c.has_more {
            return out;
        }
    }
}

fn sum(ops: &[OplogEntry]) -> Checksum {
    ops.iter().map(|o| o.checksum).sum()
}

pub async fn puts_and_removes(s: &dyn BucketStorage) {
    let id = new_deployment(s).await;
    let e1 = commit(
        s,
        id,
        vec![upsert("public.t", "k1", &[("a", "1", r#"{"id":"1"}"#)])],
        10,
    )
    .await;
    assert_eq!(e1.checkpoint.op_id, OpId(1));
    assert_eq!(e1.checkpoint.lsn, Lsn(10));
    assert_eq!(e1.changed_buckets, vec!["a".to_string()]);
    let ops = read_all(s, id, OpId(1), "a").await;
    assert_eq!(ops.len(), 1);
    let put = &ops[0];
    assert_eq!(put.op, OpType::Put);
    assert_eq!(put.object_type.as_deref(), Some("items"));
    assert_eq!(put.object_id.as_deref(), Some("1"));
    assert_eq!(put.data.as_deref(), Some(r#"{"id":"1"}"#));
    assert_eq!(
        put.checksum,
        Checksum::of_put("items", "1", r#"{"id":"1"}"#)
    );
    let subkey = put.subkey.clone().unwrap();

    // Identical replay: no op, same op id, newer LSN.
    let e2 = commit(
        s,
        id,
        vec![upsert("public.t", "k1", &[("a", "1", r#"{"id":"1"}"#)])],
        20,
    )
    .await;
    assert_eq!(e2.checkpoint.op_id, OpId(1));
    assert_eq!(e2.checkpoint.lsn, Lsn(20));
    assert!(e2.changed_buckets.is_empty());

    // Changed data: a new PUT.
    let e3 = commit(
        s,
        id,
        vec![upsert(
            "public.t",
            "k1",
            &[("a", "1", r#"{"id":"1","v":2}"#)],
        )],
        30,
    )
    .await;
    assert_eq!(e3.checkpoint.op_id, OpId(2));

    // Move to bucket b: REMOVE in a, PUT in b, same subkey.
    let e4 = commit(
        s,
        id,
        vec![upsert(
            "public.t",
            "k1",
            &[("b", "1", r#"{"id":"1","v":2}"#)],
        )],
        40,
    )
    .await;
    assert_eq!(e4.checkpoint.op_id, OpId(4));
    assert_eq!(e4.changed_buckets, vec!["a".to_string(), "b".to_string()]);
    let a = read_all(s, id, OpId(4), "a").await;
    assert_eq!(a.len(), 3);
    assert_eq!(a[2].op, OpType::Remove);
    assert_eq!(a[2].subkey.as_deref(), Some(subkey.as_str()));
    assert_eq!(a[2].object_id.as_deref(), Some("1"));
    assert_eq!(a[2].data, None);
    assert_eq!(a[2].checksum, Checksum::of_remove(&subkey));
    let b = read_all(s, id, OpId(4), "b").await;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].subkey.as_deref(), Some(subkey.as_str()));

    // Delete: REMOVE from b.
    let e5 = commit(s, id, vec![delete("public.t", "k1")], 50).await;
    assert_eq!(e5.checkpoint.op_id, OpId(5));
    assert_eq!(e5.changed_buckets, vec!["b".to_string()]);
    let b = read_all(s, id, OpId(5), "b").await;
    assert_eq!(
        b.iter().map(|o| o.op).collect::<Vec<_>>(),
        vec![OpType::Put, OpType::Remove]
    );
    assert!(
        s.current_rows(id, "public.t", &[b"k1".to_vec()])
            .await
            .unwrap()
            .is_empty()
    );

    // Deleting an unknown row does nothing.
    let e6 = commit(s, id, vec![delete("public.t", "nope")], 60).await;
    assert_eq!(e6.checkpoint.op_id, OpId(5));
}

pub async fn same_row_twice_in_one_batch(s: &dyn BucketStorage) {
    let id = new_deployment(s).await;
    let mut b = s.begin_batch(id).await.unwrap();
    b.save(vec![upsert("t", "k", &[("a", "1", "{}")])])
        .await
        .unwrap();
    // Many other rows in between so chunked implementations flush in the middle.
    let filler: Vec<_> = (0..12_000)
        .map(|i| upsert("t", &format!("f{i}"), &[("f", &i.to_string(), "{}")]))
        .collect();
    b.save(filler).await.unwrap();
    b.save(vec![
        upsert("t", "k", &[("b", "1", "{}")]),
        upsert("t", "k", &[("b", "1", "{}")]),
    ])
    .await
    .unwrap();
    b.save(vec![
        upsert("t", "n", &[("a", "2", "{}")]),
        delete("t", "n"),
    ])
    .await
    .unwrap();
    let e = b.commit(Lsn(5)).await.unwrap();
    assert_eq!(e.checkpoint.op_id, OpId(12_005));
    let a = read_all(s, id, e.checkpoint.op_id, "a").await;
    let kinds: Vec<_> = a
        .iter()
        .map(|o| (o.op, o.object_id.clone().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (OpType::Put, "1".to_string()),
            (OpType::Remove, "1".to_string()),
            (OpType::Put, "2".to_string()),
            (OpType::Remove, "2".to_string()),
        ]
    );
    assert_eq!(read_all(s, id, e.checkpoint.op_id, "b").await.len(), 1);
    let rows = s
        .current_rows(id, "t", &[b"k".to_vec(), b"n".to_vec(), b"f11999".to_vec()])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.contains_key(b"k".as_slice()));
    let states = s
        .bucket_states(id, e.checkpoint.op_id, &["f".into()])
        .await
        .unwrap();
    assert_eq!(states["f"].count, 12_000);
}

pub async fn checksums_match_sent_ops(s: &dyn BucketStorage) {
    let id = new_deployment(s).await;
    let buckets: Vec<String> = (0..4).map(|b| format!("b{b}")).collect();
    let mut checkpoints = Vec::new();
    for round in 0..8u64 {
        let mut ops = Vec::new();
        for k in 0..10u64 {
            let key = format!("k{k}");
            if (k + round) % 5 == 0 {
                ops.push(delete("t", &key));
            } else {
                let b1 = format!("b{}", (k + round) % 4);
                let b2 = format!("b{}", (k * 3 + round / 2) % 4);
                let data = format!(r#"{{"v":{}}}"#, (k * round) % 3);
                ops.push(upsert("t", &key, &[(&b1, &key, &data), (&b2, &key, &data)]));
            }
        }
        let e = commit(s, id, ops, 100 + round).await;
        checkpoints.push(e.checkpoint.op_id);
        for cp in &checkpoints {
            let states = s.bucket_states(id, *cp, &buckets).await.unwrap();
            for b in &buckets {
                let ops = read_all(s, id, *cp, b).await;
                match states.get(b) {
                    Some(st) => {
                        assert_eq!(st.checksum, sum(&ops), "bucket {b} at {cp:?}");
                        assert_eq!(st.count as usize, ops.len());
                    }
                    None => assert!(ops.is_empty()),
                }
                // Ops strictly increasing.
                assert!(ops.windows(2).all(|w| w[0].op_id < w[1].op_id));
                assert!(ops.iter().all(|o| o.op_id <= *cp));
            }
        }
    }
    // A bucket nobody wrote is absent; checkpoint 0 has nothing.
    assert!(
        s.bucket_states(id, OpId(1_000_000), &["zz".into()])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.bucket_states(id, OpId::ZERO, &buckets)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn bucket_data_paging(s: &dyn BucketStorage) {
    let id = new_deployment(s).await;
    let mut ops = Vec::new();
    for i in 0..6 {
        ops.push(upsert(
            "t",
            &format!("a{i}"),
            &[("a", &format!("a{i}"), "{}")],
        ));
    }
    for i in 0..3 {
        ops.push(upsert(
            "t",
            &format!("b{i}"),
            &[("b", &format!("b{i}"), "{}")],
        ));
    }
    let e = commit(s, id, ops, 1).await;
    assert_eq!(e.checkpoint.op_id, OpId(9));
    // More ops after the checkpoint must not be read.
    commit(s, id, vec![upsert("t", "a9", &[("a", "a9", "{}")])], 2).await;

    let req = |a: i64, b: i64| vec![("b".to_string(), OpId(b)), ("a".to_string(), OpId(a))];
    // Everything: ordered by bucket, then op id.
    let all = s.bucket_data(id, OpId(9), &req(0, 0), 100).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].bucket, "a");
    assert_eq!(all[0].ops.len(), 6);
    assert!(!all[0].has_more);
    assert_eq!(all[1].bucket, "b");
    assert_eq!(
        all[1].ops.iter().map(|o| o.op_id.0).collect::<Vec<_>>(),
        vec![7, 8, 9]
    );
    assert!(!all[1].has_more);

    // Limit inside bucket a.
    let p = s.bucket_data(id, OpId(9), &req(0, 0), 4).await.unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].ops.len(), 4);
    assert!(p[0].has_more);
    // Limit exactly at the end of a: a is complete; b is left out (a full page tells the
    // caller to read again).
    let p = s.bucket_data(id, OpId(9), &req(0, 0), 6).await.unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].ops.len(), 6);
    assert!(!p[0].has_more);
    let p = s.bucket_data(id, OpId(9), &req(6, 0), 6).await.unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].bucket, "b");
    assert_eq!(p[0].ops.len(), 3);
    assert!(!p[0].has_more);
    // Limit across the boundary.
    let p = s.bucket_data(id, OpId(9), &req(4, 0), 3).await.unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].ops.len(), 2);
    assert!(!p[0].has_more);
    assert_eq!(p[1].ops.len(), 1);
    assert!(p[1].has_more);
    // `after` filters, a fully read bucket is omitted.
    let p = s.bucket_data(id, OpId(9), &req(6, 8), 100).await.unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].bucket, "b");
    assert_eq!(p[0].ops[0].op_id, OpId(9));
    assert!(!p[0].has_more);
    // Unknown bucket, empty request.
    assert!(
        s.bucket_data(id, OpId(9), &[("zz".into(), OpId(0))], 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.bucket_data(id, OpId(9), &[], 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn dropped_batch_leaves_nothing(s: &dyn BucketStorage) {
    let id = new_deployment(s).await;
    commit(s, id, vec![upsert("t", "k0", &[("a", "0", "{}")])], 1).await;
    {
        let mut b = s.begin_batch(id).await.unwrap();
        let ops: Vec<_> = (0..7_000)
            .map(|i| {
                upsert(
                    "t",
                    &format!("k{i}"),
                    &[("a", &i.to_string(), r#"{"x":1}"#)],
                )
            })
            .collect();
        b.save(ops).await.unwrap();
        b.save(vec![BatchOperation::Truncate {
            source_table: "t".into(),
        }])
        .await
        .unwrap();
        // dropped here
    }
    let cp = s.deployment(id).await.unwrap();
    assert_eq!(cp.resume_lsn, Some(Lsn(1)));
    let states = s
        .bucket_states(id, OpId(100_000), &["a".into()])
        .await
        .unwrap();
    assert_eq!(states["a"].count, 1);
    assert_eq!(read_all(s, id, OpId(100_000), "a").await.len(), 1);
    let rows = s
        .current_rows(id, "t", &[b"k0".to_vec(), b"k1".to_vec()])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    // Dropped right after a save that started writing in the background.
    {
        let mut b = s.begin_batch(id).await.unwrap();
        let ops: Vec<_> = (0..5_001)
            .map(|i| {
                upsert(
                    "t",
                    &format!("k{i}"),
                    &[("a", &i.to_string(), r#"{"x":2}"#)],
                )
            })
            .collect();
        b.save(ops).await.unwrap();
    }
    // The next batch works and continues the op id sequence.
    let e = commit(s, id, vec![upsert("t", "k1", &[("a", "1", "{}")])], 2).await;
    assert_eq!(e.checkpoint.op_id, OpId(2));
    assert_eq!(read_all(s, id, OpId(100_000), "a").await.len(), 2);
}

pub async fn truncate_removes_table_rows(s: &dyn BucketStorage) {
    let id = new_deployment(s).await;
    commit(
        s,
        id,
        vec![
            upsert_with("t1", "a", &[("x", "a", "{}")], &[("L", "ra")]),
            upsert("t1", "b", &[("x", "b", "{}"), ("y", "b", "{}")]),
            upsert("t2", "c", &[("x", "c", "{}")]),
        ],
        1,
    )
    .await;
    let mut b = s.begin_batch(id).await.unwrap();
    b.save(vec![
        upsert("t1", "d", &[("y", "d", "{}")]),
        BatchOperation::Truncate {
            source_table: "t1".into(),
        },
        upsert("t1", "e", &[("y", "e", "{}")]),
    ])
    .await
    .unwrap();
    let e = b.commit(Lsn(2)).await.unwrap();
    assert_eq!(e.changed_buckets, vec!["x".to_string(), "y".to_string()]);
    assert_eq!(e.changed_lookups, vec![b"L".to_vec()]);
    let x = read_all(s, id, e.checkpoint.op_id, "x").await;
    let removed: Vec<_> = x
        .iter()
        .filter(|o| o.op == OpType::Remove)
        .map(|o| o.object_id.clone().unwrap())
        .collect();
    assert_eq!(removed.len(), 2);
    assert!(removed.contains(&"a".to_string()) && removed.contains(&"b".to_string()));
    let y = read_all(s, id, e.checkpoint.op_id, "y").await;
    let y_ops: Vec<_> = y
        .iter()
        .map(|o| (o.op, o.object_id.clone().unwrap()))
        .collect();
    // b PUT (commit 1), d PUT, then REMOVEs of b and d (any order), then e PUT.
    assert_eq!(y_ops.len(), 5);
    assert_eq!(y_ops[4], (OpType::Put, "e".to_string()));
    let rows = s
        .current_rows(
            id,
            "t1",
            &[b"a".to_vec(), b"b".to_vec(), b"d".to_vec(), b"e".to_vec()],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.keys().cloned().collect::<Vec<_>>(),
        vec![b"e".to_vec()]
    );
    assert_eq!(
        s.current_rows(id, "t2", &[b"c".to_vec()])
            .await
            .unwrap()
            .len(),
        1
    );
    let p = s.parameter_results(id, &[b"L".to_vec()]).await.unwrap();
    assert!(p[b"L".as_slice()].is_empty());
}

pub async fn parameter_lookups(s: &dyn BucketStorage) {
    let id = new_deployment(s).await;
    let e = commit(
        s,
        id,
        vec![
            upsert_with("m", "1", &[], &[("u1", "list1"), ("u2", "list1")]),
            upsert_with("m", "2", &[], &[("u1", "list2")]),
        ],
        1,
    )
    .await;
    assert_eq!(e.changed_lookups, vec![b"u1".to_vec(), b"u2".to_vec()]);
    assert_eq!(e.checkpoint.op_id, OpId::ZERO);
    let get = |r: HashMap<Vec<u8>, Vec<Vec<u8>>>, k: &str| {
        let mut v: Vec<String> = r[k.as_bytes()]
            .iter()
            .map(|x| String::from_utf8(x.clone()).unwrap())
            .collect();
        v.sort();
        v
    };
    let lookups = [b"u1".to_vec(), b"u2".to_vec(), b"u3".to_vec()];
    let r = s.parameter_results(id, &lookups).await.unwrap();
    assert_eq!(get(r.clone(), "u1"), vec!["list1", "list2"]);
    assert_eq!(get(r.clone(), "u2"), vec!["list1"]);
    assert!(get(r, "u3").is_empty());

    // Unchanged lookups are not reported; moved ones are.
    let e = commit(
        s,
        id,
        vec![
            upsert_with("m", "1", &[], &[("u1", "list1"), ("u3", "list1")]),
            upsert_with("m", "2", &[], &[("u1", "list2")]),
        ],
        2,
    )
    .await;
    assert_eq!(e.changed_lookups, vec![b"u2".to_vec(), b"u3".to_vec()]);
    let r = s.parameter_results(id, &lookups).await.unwrap();
    assert!(get(r.clone(), "u2").is_empty());
    assert_eq!(get(r, "u3"), vec!["list1"]);

    let e = commit(s, id, vec![delete("m", "2")], 3).await;
    assert_eq!(e.changed_lookups, vec![b"u1".to_vec()]);
    let r = s.parameter_results(id, &lookups).await.unwrap();
    assert_eq!(get(r, "u1"), vec!["list1"]);
}

pub async fn write_checkpoints(s: &dyn BucketStorage) {
    assert_eq!(
        s.write_checkpoint("u", "c", Lsn(u64::MAX >> 1))
            .await
            .unwrap(),
        None
    );
    let w1 = s.create_write_checkpoint("u", "c", Lsn(100)).await.unwrap();
    let w2 = s.create_write_checkpoint("u", "c", Lsn(200)).await.unwrap();
    assert_eq!((w1, w2), (OpId(1), OpId(2)));
    // Another user/client has its own counter.
    assert_eq!(
        s.create_write_checkpoint("u", "other", Lsn(50))
            .await
            .unwrap(),
        OpId(1)
    );
    assert_eq!(
        s.create_write_checkpoint("v", "c", Lsn(50)).await.unwrap(),
        OpId(1)
    );

    assert_eq!(s.write_checkpoint("u", "c", Lsn(99)).await.unwrap(), None);
    // The newer, not yet replicated one does not hide the older one.
    assert_eq!(
        s.write_checkpoint("u", "c", Lsn(150)).await.unwrap(),
        Some(OpId(1))
    );
    assert_eq!(
        s.write_checkpoint("u", "c", Lsn(200)).await.unwrap(),
        Some(OpId(2))
    );
    assert_eq!(
        s.write_checkpoint("u", "other", Lsn(200)).await.unwrap(),
        Some(OpId(1))
    );

    // Checkpoint requests: max(stored, requested).
    assert_eq!(
        s.request_checkpoint("u", "c", OpId(10), Lsn(300))
            .await
            .unwrap(),
        OpId(10)
    );
    assert_eq!(
        s.request_checkpoint("u", "c", OpId(7), Lsn(400))
            .await
            .unwrap(),
        OpId(10)
    );
    assert_eq!(
        s.write_checkpoint("u", "c", Lsn(250)).await.unwrap(),
        Some(OpId(2))
    );
    assert_eq!(
        s.write_checkpoint("u", "c", Lsn(300)).await.unwrap(),
        Some(OpId(10))
    );
    // Re-posting the same id keeps its earlier LSN.
    assert_eq!(
        s.request_checkpoint("u", "c", OpId(10), Lsn(500))
            .await
            .unwrap(),
        OpId(10)
    );
    assert_eq!(
        s.write_checkpoint("u", "c", Lsn(300)).await.unwrap(),
        Some(OpId(10))
    );
    // A created checkpoint continues after the requested id.
    assert_eq!(
        s.create_write_checkpoint("u", "c", Lsn(600)).await.unwrap(),
        OpId(11)
    );
    assert_eq!(
        s.write_checkpoint("u", "c", Lsn(599)).await.unwrap(),
        Some(OpId(10))
    );
    assert_eq!(
        s.write_checkpoint("u", "c", Lsn(600)).await.unwrap(),
        Some(OpId(11))
    );
    // Fresh key via request.
    assert_eq!(
        s.request_checkpoint("w", "c", OpId(3), Lsn(10))
            .await
            .unwrap(),
        OpId(3)
    );
    assert_eq!(
        s.write_checkpoint("w", "c", Lsn(10)).await.unwrap(),
        Some(OpId(3))
    );
    assert!(matches!(
        s.request_checkpoint("w", "c", OpId(-1), Lsn(10)).await,
        Err(StorageError::InvalidArgument(_))
    ));
}

pub async fn deployments_lifecycle(s: &dyn BucketStorage) {
    s.migrate().await.unwrap();
    assert!(s.active_deployment().await.unwrap().is_none());
    assert!(s.processing_deployment().await.unwrap().is_none());
    let d1 = s.create_deployment("rules: 1", "riptide_").await.unwrap();
    assert_eq!(d1.state, DeploymentState::Processing);
    assert_eq!(d1.content, "rules: 1");
    assert!(!d1.snapshot_done);
    assert_eq!(d1.checkpoint, None);
    let suffix = d1
        .slot_name
        .strip_prefix(&format!("riptide_{}_", d1.id))
        .unwrap();
    assert_eq!(suffix.len(), 4);
    assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(s.processing_deployment().await.unwrap().unwrap().id, d1.id);

    // Snapshot: checkpoint appears once marked done.
    commit(s, d1.id, vec![upsert("t", "k", &[("a", "1", "{}")])], 5).await;
    assert_eq!(s.checkpoint(d1.id).await.unwrap(), None);
    s.mark_snapshot_done(d1.id).await.unwrap();
    let cp = s.checkpoint(d1.id).await.unwrap().unwrap();
    assert_eq!((cp.op_id, cp.lsn), (OpId(1), Lsn(5)));
    s.activate(d1.id).await.unwrap();
    let active = s.active_deployment().await.unwrap().unwrap();
    assert_eq!(active.id, d1.id);
    assert_eq!(active.state, DeploymentState::Active);
    assert!(active.snapshot_done);
    assert_eq!(active.checkpoint, Some(cp));
    assert_eq!(active.resume_lsn, Some(Lsn(5)));
    assert!(s.processing_deployment().await.unwrap().is_none());

    // An empty commit still advances the LSN.
    commit(s, d1.id, vec![], 7).await;
    let cp = s.checkpoint(d1.id).await.unwrap().unwrap();
    assert_eq!((cp.op_id, cp.lsn), (OpId(1), Lsn(7)));

    // A second deployment's op ids continue after the first one's.
    let d2 = s.create_deployment("rules: 2", "riptide_").await.unwrap();
    assert_ne!(d2.slot_name, d1.slot_name);
    let e = commit(s, d2.id, vec![upsert("t", "k", &[("a", "1", "{}")])], 8).await;
    assert_eq!(e.checkpoint.op_id, OpId(2));
    // reset_snapshot wipes it.
    s.reset_snapshot(d2.id).await.unwrap();
    let d2r = s.deployment(d2.id).await.unwrap();
    assert_eq!(d2r.resume_lsn, None);
    assert_eq!(d2r.checkpoint, None);
    assert!(
        s.current_rows(d2.id, "t", &[b"k".to_vec()])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.bucket_states(d2.id, OpId(10), &["a".into()])
            .await
            .unwrap()
            .is_empty()
    );
    let e = commit(s, d2.id, vec![upsert("t", "k", &[("a", "1", "{}")])], 9).await;
    assert_eq!(e.checkpoint.op_id, OpId(2));
    // d1's data is untouched.
    assert_eq!(
        s.bucket_states(d1.id, OpId(10), &["a".into()])
            .await
            .unwrap()["a"]
            .count,
        1
    );

    s.mark_snapshot_done(d2.id).await.unwrap();
    s.activate(d2.id).await.unwrap();
    assert_eq!(s.active_deployment().await.unwrap().unwrap().id, d2.id);
    assert_eq!(
        s.deployment(d1.id).await.unwrap().state,
        DeploymentState::Stop
    );
    s.terminate(d1.id).await.unwrap();
    let t = s.deployment(d1.id).await.unwrap();
    assert_eq!(t.state, DeploymentState::Terminated);
    assert!(
        s.bucket_states(d1.id, OpId(10), &["a".into()])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.current_rows(d1.id, "t", &[b"k".to_vec()])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        s.activate(d1.id).await,
        Err(StorageError::InvalidState { .. })
    ));
    assert!(matches!(
        s.deployment(9999).await,
        Err(StorageError::UnknownDeployment(9999))
    ));
    assert!(s.begin_batch(9999).await.is_err());
    assert_eq!(
        s.bucket_states(d2.id, OpId(10), &["a".into()])
            .await
            .unwrap()["a"]
            .count,
        1
    );
}

pub async fn migrate_twice(s: &dyn BucketStorage) {
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    let id = new_deployment(s).await;
    commit(s, id, vec![upsert("t", "k", &[("a", "1", "{}")])], 1).await;
    s.migrate().await.unwrap();
    assert_eq!(
        s.bucket_states(id, OpId(1), &["a".into()]).await.unwrap()["a"].count,
        1
    );
}

/// CPU time (user + system) of this test process so far, from `/proc/self/stat` (Linux; zero
/// elsewhere). Printed next to wall time to show how much of a batch is client-side work.
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which ends with ')'): utime is field 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Writes `rows` source rows (each into one bucket row, 100 buckets) in one transaction and
/// prints how long save and commit took. Not a timed assertion.
pub async fn large_batch_with(s: &dyn BucketStorage, label: &str, rows: usize) {
    let id = new_deployment(s).await;
    let ops: Vec<BatchOperation> = (0..rows)
        .map(|i| {
            let data = format!(r#"{{"id":"{i}","name":"item number {i}","done":false}}"#);
            upsert(
                "public.items",
                &format!("{i:08}"),
                &[(&format!("b{}", i % 100), &i.to_string(), &data)],
            )
        })
        .collect();
    let start = Instant::now();
    let cpu_start = process_cpu();
    let mut b = s.begin_batch(id).await.unwrap();
    let mut it = ops.into_iter().peekable();
    while it.peek().is_some() {
        b.save(it.by_ref().take(1_000).collect()).await.unwrap();
    }
    let saved = start.elapsed();
    let e = b.commit(Lsn(1)).await.unwrap();
    let total = start.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_start);
    println!(
        "bench {label}: {rows} rows -> {} ops: save {:?}, commit {:?}, total {:?} \
         ({:.0} rows/s; client process CPU {:?})",
        e.checkpoint.op_id.0,
        saved,
        total - saved,
        total,
        rows as f64 / total.as_secs_f64().max(1e-9),
        cpu
    );
    assert_eq!(e.checkpoint.op_id, OpId(rows as i64));
    assert_eq!(e.changed_buckets.len(), 100.min(rows));
    let buckets: Vec<String> = (0..100).map(|b| format!("b{b}")).collect();
    let states = s
        .bucket_states(id, e.checkpoint.op_id, &buckets)
        .await
        .unwrap();
    assert_eq!(states.values().map(|s| s.count).sum::<i64>(), rows as i64);
    let req: Vec<(String, OpId)> = buckets.iter().map(|b| (b.clone(), OpId::ZERO)).collect();
    let t = Instant::now();
    let mut read = 0;
    let mut checksums: BTreeMap<String, Checksum> = BTreeMap::new();
    let mut after: HashMap<String, OpId> = HashMap::new();
    loop {
        let req: Vec<(String, OpId)> = req
            .iter()
            .map(|(b, a)| (b.clone(), *after.get(b).unwrap_or(a)))
            .collect();
        let chunks = s
            .bucket_data(id, e.checkpoint.op_id, &req, 1_000)
            .await
            .unwrap();
        let more = chunks.iter().map(|c| c.ops.len()).sum::<usize>() == 1_000;
        for c in chunks {
            read += c.ops.len();
            *checksums.entry(c.bucket.clone()).or_default() += sum(&c.ops);
            after.insert(c.bucket.clone(), c.ops.last().unwrap().op_id);
        }
        if !more {
            break;
        }
    }
    println!(
        "bench {label}: read back {read} ops in pages of 1000: {:?}",
        t.elapsed()
    );
    assert_eq!(read, rows);
    for (b, st) in states {
        assert_eq!(checksums[&b], st.checksum);
    }
    // Re-saving identical data writes no ops.
    let t = Instant::now();
    let mut b = s.begin_batch(id).await.unwrap();
    for i in 0..rows.min(20_000) {
        let data = format!(r#"{{"id":"{i}","name":"item number {i}","done":false}}"#);
        b.save(vec![upsert(
            "public.items",
            &format!("{i:08}"),
            &[(&format!("b{}", i % 100), &i.to_string(), &data)],
        )])
        .await
        .unwrap();
    }
    let e2 = b.commit(Lsn(2)).await.unwrap();
    println!(
        "bench {label}: replay of {} identical rows (one save each): {:?}",
        rows.min(20_000),
        t.elapsed()
    );
    assert_eq!(e2.checkpoint.op_id, e.checkpoint.op_id);
}

pub async fn large_batch(s: &dyn BucketStorage) {
    large_batch_with(s, "large_batch", 100_000).await;
}

/// A second batch for the same deployment waits until the first one ends.
pub async fn one_writer_per_deployment(s: &dyn BucketStorage) {
    let id = new_deployment(s).await;
    let mut first = s.begin_batch(id).await.unwrap();
    first
        .save(vec![upsert("t", "k", &[("a", "1", "{}")])])
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_millis(300), s.begin_batch(id)).await;
    assert!(second.is_err(), "second batch must wait for the first");
    first.commit(Lsn(1)).await.unwrap();
    let mut second = tokio::time::timeout(Duration::from_secs(10), s.begin_batch(id))
        .await
        .unwrap()
        .unwrap();
    second
        .save(vec![upsert("t", "k2", &[("a", "2", "{}")])])
        .await
        .unwrap();
    assert_eq!(
        second.commit(Lsn(2)).await.unwrap().checkpoint.op_id,
        OpId(2)
    );
}

/// A deterministic pseudo-random workload (inserts, updates, bucket moves, multi-bucket rows,
/// deletes, truncates, identical replays) checked against a model of the client: applying every
/// op read from storage (PUT replaces, REMOVE deletes by `(object_type, object_id, subkey)`)
/// must give exactly the bucket rows the live source rows produce now, and each bucket's
/// checksum and count must equal the sum of the ops read.
pub async fn random_workload_matches_client_model(s: &dyn BucketStorage) {
    let id = new_deployment(s).await;
    let mut seed: u64 = 0x5eed_1234_abcd_ef01;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // Live source rows: (table, key) -> bucket rows (bucket, id, data).
    type BucketRows = Vec<(String, String, String)>;
    let mut live: BTreeMap<(String, String), BucketRows> = BTreeMap::new();
    // Client model per bucket: (type, id, subkey) -> data; plus position and checksum.
    type Key = (String, String, String);
    let mut client: BTreeMap<String, BTreeMap<Key, String>> = BTreeMap::new();
    let mut positions: BTreeMap<String, OpId> = BTreeMap::new();
    let mut sums: BTreeMap<String, (Checksum, i64)> = BTreeMap::new();
    let buckets: Vec<String> = (0..6).map(|b| format!("bucket{b}")).collect();
    let tables = ["public.a", "public.b"];

    for round in 0..25u64 {
        let mut ops = Vec::new();
        for _ in 0..rand(40) + 1 {
            let table = tables[rand(2) as usize].to_string();
            let key = format!("k{}", rand(30));
            match rand(10) {
                0 => {
                    ops.push(delete(&table, &key));
                    live.remove(&(table, key));
                }
                1 if round % 7 == 6 => {
                    ops.push(BatchOperation::Truncate {
                        source_table: table.clone(),
                    });
                    live.retain(|(t, _), _| *t != table);
                }
                2 => {
                    // Identical replay of the current state (if any).
                    if let Some(rows) = live.get(&(table.clone(), key.clone())) {
                        let r: Vec<(&str, &str, &str)> = rows
                            .iter()
                            .map(|(b, i, d)| (b.as_str(), i.as_str(), d.as_str()))
                            .collect();
                        ops.push(upsert(&table, &key, &r));
                    }
                }
                _ => {
                    let mut rows: Vec<(String, String, String)> = Vec::new();
                    for _ in 0..rand(3) {
                        let b = buckets[rand(6) as usize].clone();
                        let oid = format!("{key}-{}", rand(2));
                        if rows.iter().any(|(rb, ri, _)| *rb == b && *ri == oid) {
                            continue;
                        }
                        rows.push((b, oid, format!(r#"{{"v":{}}}"#, rand(3))));
                    }
                    let r: Vec<(&str, &str, &str)> = rows
                        .iter()
                        .map(|(b, i, d)| (b.as_str(), i.as_str(), d.as_str()))
                        .collect();
                    ops.push(upsert(&table, &key, &r));
                    live.insert((table, key), rows);
                }
            }
        }
        let e = commit(s, id, ops, 1000 + round).await;
        let cp = e.checkpoint.op_id;
        // Read what changed since the client's positions.
        for b in &e.changed_buckets {
            let after = positions.get(b).copied().unwrap_or_default();
            let chunks = s
                .bucket_data(id, cp, &[(b.clone(), after)], 100_000)
                .await
                .unwrap();
            for c in chunks {
                let model = client.entry(c.bucket.clone()).or_default();
                let sum = sums.entry(c.bucket.clone()).or_default();
                for op in c.ops {
                    let key = (
                        op.object_type.clone().unwrap(),
                        op.object_id.clone().unwrap(),
                        op.subkey.clone().unwrap(),
                    );
                    match op.op {
                        OpType::Put => {
                            model.insert(key, op.data.clone().unwrap());
                        }
                        OpType::Remove => {
                            assert!(model.remove(&key).is_some(), "REMOVE of a row not there");
                        }
                        other => panic!("unexpected op {other:?}"),
                    }
                    sum.0 += op.checksum;
                    sum.1 += 1;
                    positions.insert(c.bucket.clone(), op.op_id);
                }
            }
        }
        // The model equals what the live rows produce.
        let mut expected: BTreeMap<String, BTreeMap<(String, String), String>> = BTreeMap::new();
        for rows in live.values() {
            for (b, oid, data) in rows {
                expected
                    .entry(b.clone())
                    .or_default()
                    .insert(("items".to_string(), oid.clone()), data.clone());
            }
        }
        for b in &buckets {
            let got: BTreeMap<(String, String), String> = client
                .get(b)
                .map(|m| {
                    m.iter()
                        .map(|((t, i, _), d)| ((t.clone(), i.clone()), d.clone()))
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(
                got,
                expected.get(b).cloned().unwrap_or_default(),
                "bucket {b} round {round}"
            );
        }
        let states = s.bucket_states(id, cp, &buckets).await.unwrap();
        for b in &buckets {
            let (sum, count) = sums.get(b).copied().unwrap_or_default();
            match states.get(b) {
                Some(st) => assert_eq!((st.checksum, st.count), (sum, count), "bucket {b}"),
                None => assert_eq!(count, 0),
            }
        }
    }
}

/// Concurrent write-checkpoint requests get distinct ids; concurrent activations leave exactly
/// one deployment active.
pub async fn concurrent_writers(s: &dyn BucketStorage) {
    let creates = (0..20).map(|i| s.create_write_checkpoint("u", "c", Lsn(100 + i)));
    let mut ids: Vec<i64> = futures::future::join_all(creates)
        .await
        .into_iter()
        .map(|r| r.unwrap().0)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=20).collect::<Vec<_>>());
    assert_eq!(
        s.write_checkpoint("u", "c", Lsn(1_000)).await.unwrap(),
        Some(OpId(20))
    );

    let mut deployments = Vec::new();
    for _ in 0..4 {
        deployments.push(new_deployment(s).await);
    }
    let results = futures::future::join_all(deployments.iter().map(|id| s.activate(*id))).await;
    assert!(results.iter().all(|r| r.is_ok()));
    let mut active = 0;
    for id in &deployments {
        let state = s.deployment(*id).await.unwrap().state;
        assert!(matches!(
            state,
            DeploymentState::Active | DeploymentState::Stop
        ));
        if state == DeploymentState::Active {
            active += 1;
        }
    }
    assert_eq!(active, 1);
    let a = s.active_deployment().await.unwrap().unwrap();
    assert!(deployments.contains(&a.id));
}

/// A new deployment's op ids continue after the previous deployments' ones, so a client's
/// positions (`after`) never point past a replaced deployment's ops.
pub async fn op_ids_continue_across_deployments(s: &dyn BucketStorage) {
    s.migrate().await.unwrap();
    let first = new_deployment(s).await;
    let ops = (0..5)
        .map(|i| upsert("public.t", &format!("k{i}"), &[("b[]", "x", "{}")]))
        .collect();
    let event = commit(s, first, ops, 100).await;
    assert_eq!(event.checkpoint.op_id, OpId(5));
    s.terminate(first).await.unwrap();
    let second = new_deployment(s).await;
    let event = commit(
        s,
        second,
        vec![upsert("public.t", "k0", &[("b[]", "x", "{}")])],
        200,
    )
    .await;
    assert_eq!(
        event.checkpoint.op_id,
        OpId(6),
        "op ids continue after the old deployment's"
    );
    s.reset_snapshot(second).await.unwrap();
    let event = commit(
        s,
        second,
        vec![upsert("public.t", "k0", &[("b[]", "x", "{}")])],
        300,
    )
    .await;
    assert_eq!(
        event.checkpoint.op_id,
        OpId(6),
        "a reset restarts after the other deployments"
    );
}

/// A commit's event says which ops it wrote: `previous` is the checkpoint before it, and a
/// small commit carries exactly the ops storage then serves (what streams send from memory).
pub async fn events_carry_small_commits(s: &dyn BucketStorage) {
    let id = new_deployment(s).await;
    let first = commit(
        s,
        id,
        vec![
            upsert(
                "t",
                "1",
                &[("a", "1", r#"{"v":1}"#), ("b", "1", r#"{"v":1}"#)],
            ),
            upsert("t", "2", &[("a", "2", r#"{"v":2}"#)]),
        ],
        10,
    )
    .await;
    assert_eq!(first.previous, OpId::ZERO);
    assert_eq!(first.checkpoint.op_id, OpId(3));
    // A change, a move between buckets and a delete: PUTs and REMOVEs.
    let second = commit(
        s,
        id,
        vec![
            upsert("t", "1", &[("a", "1", r#"{"v":3}"#)]),
            delete("t", "2"),
        ],
        20,
    )
    .await;
    assert_eq!(second.previous, OpId(3));
    for event in [&first, &second] {
        let ops = event.ops.as_ref().expect("a small commit carries its ops");
        let mut buckets: Vec<&String> = ops.buckets.keys().collect();
        buckets.sort();
        let mut changed: Vec<&String> = event.changed_buckets.iter().collect();
        changed.sort();
        assert_eq!(buckets, changed);
        for (bucket, carried) in &ops.buckets {
            let stored: Vec<OplogEntry> = read_all(s, id, event.checkpoint.op_id, bucket)
                .await
                .into_iter()
                .filter(|o| o.op_id > event.previous)
                .collect();
            assert_eq!(carried, &stored, "bucket {bucket}");
        }
    }
    // An empty commit: same op id, nothing carried.
    let empty = commit(s, id, vec![], 30).await;
    assert_eq!(empty.previous, OpId(second.checkpoint.op_id.0));
    assert_eq!(empty.checkpoint.op_id, second.checkpoint.op_id);
    assert!(empty.ops.as_ref().is_some_and(|o| o.is_empty()));
    // A large commit carries none.
    let many: Vec<BatchOperation> = (0..=riptide_storage::EVENT_OPS_MAX)
        .map(|i| upsert("t", &format!("k{i}"), &[("c", &format!("k{i}"), "{}")]))
        .collect();
    let large = commit(s, id, many, 40).await;
    assert_eq!(large.previous, second.checkpoint.op_id);
    assert!(large.ops.is_none());
}
