//! Keys of any length: bucket names, row keys and lookup keys longer than a btree index row
//! (about 2,700 bytes in Postgres) are stored and read back by their full value. A source
//! transaction carrying one must never be refused (the replicator would retry it forever).

use riptide_protocol::{Lsn, OpId, OpType};
use riptide_storage::RowOperation;
use riptide_storage::{BatchOperation, BucketRow, BucketStorage, ParameterRow, RowChange};

use super::{commit, new_deployment, read_all};

/// `len` incompressible printable characters (a fixed pseudo-random sequence per `seed`).
fn noise(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from(b'!' + ((x >> 33) % 90) as u8)
        })
        .collect()
}

fn row(key: &[u8], buckets: &[(&str, &str)], lookup: &[u8], n: u32) -> BatchOperation {
    BatchOperation::Row(RowOperation {
        source_table: "public.items".into(),
        key: key.to_vec(),
        change: RowChange::Upsert {
            row: format!("row {n}").into_bytes(),
            buckets: buckets
                .iter()
                .map(|(bucket, id)| BucketRow {
                    bucket: (*bucket).into(),
                    table: "items".into(),
                    id: (*id).into(),
                    data: format!(r#"{{"id":"{id}","n":{n}}}"#),
                })
                .collect(),
            parameters: vec![ParameterRow {
                lookup: lookup.to_vec(),
                result: format!("result {n}").into_bytes(),
            }],
        },
    })
}

pub async fn keys_of_any_length(s: &dyn BucketStorage) {
    let id = new_deployment(s).await;
    let common = noise(1, 3_000);
    // Two long names that only differ after their first 3,000 bytes are two buckets.
    let long_a = format!("1#by_list[\"{common}{}\"]", noise(2, 3_000));
    let long_b = format!("1#by_list[\"{common}{}\"]", noise(3, 3_000));
    let short = "1#by_list[\"x\"]".to_owned();
    let key = noise(4, 5_000).into_bytes();
    let lookup = noise(5, 5_000).into_bytes();
    // A short key that starts the way a long key's stored form might must not meet it.
    let odd_key = [0xff_u8, 1, 2, 3].to_vec();

    let event = commit(
        s,
        id,
        vec![
            row(&key, &[(&long_a, "a"), (&long_b, "b")], &lookup, 1),
            row(&odd_key, &[(&short, "c")], b"short lookup", 1),
        ],
        100,
    )
    .await;
    let checkpoint = event.checkpoint.op_id;
    let mut changed = event.changed_buckets.clone();
    changed.sort();
    let mut want = vec![long_a.clone(), long_b.clone(), short.clone()];
    want.sort();
    assert_eq!(changed, want, "events name buckets by their full names");
    assert_eq!(event.changed_lookups.len(), 2);
    assert!(event.changed_lookups.contains(&lookup));

    let a = read_all(s, id, checkpoint, &long_a).await;
    let b = read_all(s, id, checkpoint, &long_b).await;
    assert_eq!(a.len(), 1);
    assert_eq!(b.len(), 1);
    assert_eq!(a[0].object_id.as_deref(), Some("a"));
    assert_eq!(b[0].object_id.as_deref(), Some("b"));
    let page = s
        .bucket_data(
            id,
            checkpoint,
            &[
                (long_b.clone(), OpId::ZERO),
                (short.clone(), OpId::ZERO),
                (long_a.clone(), OpId::ZERO),
            ],
            100,
        )
        .await
        .unwrap();
    let names: Vec<&str> = page.iter().map(|c| c.bucket.as_str()).collect();
    let mut sorted = [long_a.as_str(), long_b.as_str(), short.as_str()];
    sorted.sort_unstable();
    assert!(names == sorted, "buckets in name (byte) order");

    let states = s
        .bucket_states(id, checkpoint, &[long_a.clone(), long_b.clone()])
        .await
        .unwrap();
    assert_eq!(states[&long_a].count, 1);
    assert_eq!(states[&long_a].checksum, a[0].checksum);
    assert_eq!(states[&long_b].checksum, b[0].checksum);

    let results = s
        .parameter_results(id, &[lookup.clone(), b"short lookup".to_vec()])
        .await
        .unwrap();
    assert_eq!(results[&lookup], vec![b"result 1".to_vec()]);
    assert_eq!(
        results[&b"short lookup".to_vec()],
        vec![b"result 1".to_vec()]
    );

    let current = s
        .current_rows(id, "public.items", &[key.clone(), odd_key.clone()])
        .await
        .unwrap();
    assert_eq!(current.get(&key), Some(&b"row 1".to_vec()));
    assert_eq!(current.get(&odd_key), Some(&b"row 1".to_vec()));

    // An update and a delete of the long-keyed row: PUT, then REMOVE with the PUT's subkey.
    commit(s, id, vec![row(&key, &[(&long_a, "a")], &lookup, 2)], 200).await;
    let event = commit(
        s,
        id,
        vec![BatchOperation::Row(RowOperation {
            source_table: "public.items".into(),
            key: key.clone(),
            change: RowChange::Delete,
        })],
        300,
    )
    .await;
    let a = read_all(s, id, event.checkpoint.op_id, &long_a).await;
    let kinds: Vec<OpType> = a.iter().map(|o| o.op).collect();
    assert_eq!(kinds, [OpType::Put, OpType::Put, OpType::Remove]);
    assert_eq!(a[2].subkey, a[0].subkey, "REMOVE carries the PUT's subkey");
    let b = read_all(s, id, event.checkpoint.op_id, &long_b).await;
    assert_eq!(b.last().map(|o| o.op), Some(OpType::Remove));
    let results = s
        .parameter_results(id, std::slice::from_ref(&lookup))
        .await
        .unwrap();
    assert!(results[&lookup].is_empty());

    // Truncate reaches rows under long keys too.
    commit(s, id, vec![row(&key, &[(&long_a, "a")], &lookup, 3)], 400).await;
    let event = commit(
        s,
        id,
        vec![BatchOperation::Truncate {
            source_table: "public.items".into(),
        }],
        500,
    )
    .await;
    let a = read_all(s, id, event.checkpoint.op_id, &long_a).await;
    assert_eq!(a.last().map(|o| o.op), Some(OpType::Remove));
    assert_eq!(a.last().unwrap().subkey, a[0].subkey);
    assert!(
        s.current_rows(id, "public.items", std::slice::from_ref(&key))
            .await
            .unwrap()
            .is_empty()
    );
    let d = s.deployment(id).await.unwrap();
    assert_eq!(d.resume_lsn, Some(Lsn(500)));
}
