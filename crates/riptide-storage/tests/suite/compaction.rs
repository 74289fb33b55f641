//! Compaction cases of the behavioural suite: MOVE/CLEAR as docs/protocol.md §3.6 describes,
//! checked with a client model that applies ops the way the official client's Rust core does
//! (`powersync-sqlite-core` `sync/operations.rs`: a PUT/REMOVE supersedes the held op of its
//! row, a MOVE only adds its checksum, a CLEAR empties the bucket and takes its checksum).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use riptide_protocol::{Checksum, OpId, OpType, OplogEntry};
use riptide_storage::{
    BatchOperation, BucketStorage, CompactLimits, CompactOptions, CompactStats, DeploymentId,
    compact_deployment,
};

use super::{commit, delete, new_deployment, read_all, upsert};

/// One bucket as the client holds it.
#[derive(Debug, Default, Clone)]
pub struct ClientBucket {
    /// Row key (`type/id/subkey`) → (op checksum, type, id, data) of the PUT held.
    oplog: BTreeMap<String, (Checksum, String, String, String)>,
    add: Checksum,
    ops: Checksum,
    pub last_op: OpId,
}

impl ClientBucket {
    pub fn apply(&mut self, op: &OplogEntry) {
        match op.op {
            OpType::Put | OpType::Remove => {
                let (t, i, s) = (
                    op.object_type.clone().unwrap(),
                    op.object_id.clone().unwrap(),
                    op.subkey.clone().unwrap(),
                );
                let key = format!("{t}/{i}/{s}");
                if let Some((old, ..)) = self.oplog.remove(&key) {
                    self.add += old;
                    self.ops = Checksum(self.ops.0 - old.0);
                }
                if op.op == OpType::Put {
                    self.oplog
                        .insert(key, (op.checksum, t, i, op.data.clone().unwrap()));
                    self.ops += op.checksum;
                } else {
                    self.add += op.checksum;
                }
            }
            OpType::Move => self.add += op.checksum,
            OpType::Clear => {
                self.oplog.clear();
                self.add = op.checksum;
                self.ops = Checksum::ZERO;
            }
        }
        self.last_op = op.op_id;
    }

    pub fn checksum(&self) -> Checksum {
        self.add + self.ops
    }

    /// `(type, id)` → data of the rows held.
    pub fn rows(&self) -> BTreeMap<(String, String), String> {
        self.oplog
            .values()
            .map(|(_, t, i, d)| ((t.clone(), i.clone()), d.clone()))
            .collect()
    }
}

/// A client holding some buckets.
#[derive(Debug, Default, Clone)]
pub struct Client {
    pub buckets: BTreeMap<String, ClientBucket>,
}

impl Client {
    /// Downloads `buckets` from their positions up to `checkpoint` (small pages) and checks
    /// each bucket's checksum against storage's, as the client does on `checkpoint_complete`.
    pub async fn sync(
        &mut self,
        s: &dyn BucketStorage,
        id: DeploymentId,
        checkpoint: OpId,
        buckets: &[String],
    ) {
        let states = s.bucket_states(id, checkpoint, buckets).await.unwrap();
        for b in buckets {
            let held = self.buckets.entry(b.clone()).or_default();
            for op in read_after(s, id, checkpoint, b, held.last_op).await {
                held.apply(&op);
            }
            held.last_op = checkpoint;
            let expected = states.get(b).map(|st| st.checksum).unwrap_or_default();
            assert_eq!(
                held.checksum(),
                expected,
                "client checksum of {b} at {checkpoint:?}"
            );
        }
    }
}

/// Ops of `bucket` with `after < op_id <= checkpoint`, in pages of 3.
pub async fn read_after(
    s: &dyn BucketStorage,
    id: DeploymentId,
    checkpoint: OpId,
    bucket: &str,
    mut after: OpId,
) -> Vec<OplogEntry> {
    let mut out = Vec::new();
    loop {
        let chunks = s
            .bucket_data(id, checkpoint, &[(bucket.to_owned(), after)], 3)
            .await
            .unwrap();
        let Some(c) = chunks.into_iter().next() else {
            return out;
        };
        after = c.ops.last().unwrap().op_id;
        out.extend(c.ops);
        if !c.has_more {
            return out;
        }
    }
}

fn kinds(ops: &[OplogEntry]) -> Vec<(i64, OpType)> {
    kinds_from(ops, 0)
}

/// Op ids relative to `base` (the op id before the deployment's first op).
fn kinds_from(ops: &[OplogEntry], base: i64) -> Vec<(i64, OpType)> {
    ops.iter().map(|o| (o.op_id.0 - base, o.op)).collect()
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| (*s).to_owned()).collect()
}

async fn compact_all(
    s: &dyn BucketStorage,
    id: DeploymentId,
    limits: CompactLimits,
) -> CompactStats {
    compact_deployment(
        s,
        id,
        &CompactOptions {
            min_superseded: 0,
            limits,
            ..CompactOptions::default()
        },
    )
    .await
    .unwrap()
}

/// Superseded ops become MOVE, the leading run one CLEAR; checksums at the checkpoint stay;
/// clients fresh or resuming from before the compaction end with the live rows.
pub async fn compaction_rewrites_superseded_ops(s: &dyn BucketStorage) {
    use OpType::*;
    let id = new_deployment(s).await;
    s.mark_snapshot_done(id).await.unwrap();
    let v = |n: u32| format!(r#"{{"v":{n}}}"#);
    commit(
        s,
        id,
        vec![
            upsert("t", "r1", &[("a", "1", &v(1))]),
            upsert("t", "r2", &[("a", "2", &v(1))]),
            upsert("t", "r3", &[("a", "3", &v(1)), ("b", "3", &v(1))]),
        ],
        1,
    )
    .await;
    // A client that saw the first commit (ops 1..=4).
    let mut early = Client::default();
    early.sync(s, id, OpId(4), &names(&["a", "b"])).await;
    commit(
        s,
        id,
        vec![
            upsert("t", "r1", &[("a", "1", &v(2))]),
            upsert("t", "r2", &[("a", "2", &v(2))]),
        ],
        2,
    )
    .await;
    commit(
        s,
        id,
        vec![delete("t", "r1"), upsert("t", "r2", &[("a", "2", &v(3))])],
        3,
    )
    .await;
    // A client that saw up to the REMOVE of r1 (op 7).
    let mut middle = Client::default();
    middle.sync(s, id, OpId(7), &names(&["a", "b"])).await;
    let last = commit(
        s,
        id,
        vec![upsert("t", "r3", &[("a", "3", &v(2)), ("b", "3", &v(1))])],
        4,
    )
    .await
    .checkpoint
    .op_id;
    assert_eq!(last, OpId(9));
    assert_eq!(
        kinds(&read_all(s, id, last, "a").await),
        vec![
            (1, Put),
            (2, Put),
            (3, Put),
            (5, Put),
            (6, Put),
            (7, Remove),
            (8, Put),
            (9, Put)
        ]
    );

    // Ops 5, 6, 7, 8 and 9 each superseded an op of their row; "b" had no change.
    let candidates = s.compaction_candidates(id, 1, None, 10).await.unwrap();
    assert_eq!(candidates.len(), 1);
    assert_eq!(
        (candidates[0].bucket.as_str(), candidates[0].superseded),
        ("a", 5)
    );
    assert!(
        s.compaction_candidates(id, 6, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let before = s
        .bucket_states(id, last, &names(&["a", "b"]))
        .await
        .unwrap();
    let at_7 = s.bucket_states(id, OpId(7), &names(&["a"])).await.unwrap()["a"];
    let stats = compact_all(s, id, CompactLimits::default()).await;
    assert_eq!(stats.buckets, 1);
    // Ops 1, 2, 3, 5 and 6 are superseded, 7 is a REMOVE: all of 1..=7 is the leading run, so
    // one CLEAR replaces it and none is rewritten as MOVE first.
    assert_eq!(stats.ops_moved, 0);
    assert_eq!(stats.ops_removed, 5, "ops 1..=7 became one CLEAR");
    assert!(stats.bytes_reclaimed > 0);
    assert_eq!(stats.buckets_busy, 0);

    let ops = read_all(s, id, last, "a").await;
    assert_eq!(kinds(&ops), vec![(7, Clear), (8, Put), (9, Put)]);
    let clear = &ops[0];
    assert_eq!(
        (
            &clear.object_type,
            &clear.object_id,
            &clear.subkey,
            &clear.data
        ),
        (&None, &None, &None, &None)
    );
    assert_eq!(kinds(&read_all(s, id, last, "b").await), vec![(4, Put)]);
    let after = s
        .bucket_states(id, last, &names(&["a", "b"]))
        .await
        .unwrap();
    assert_eq!(after["a"].checksum, before["a"].checksum);
    assert_eq!(after["a"].count, 3);
    assert_eq!(after["b"], before["b"]);
    // The sum of the CLEAR is the sum of ops 1..=7 as they were.
    assert_eq!(clear.checksum, at_7.checksum);

    let points = s
        .compaction_points(id, &names(&["a", "b", "x"]))
        .await
        .unwrap();
    assert_eq!(points, HashMap::from([("a".to_owned(), last)]));
    assert!(
        s.compaction_candidates(id, 1, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "the counter restarts after a compaction"
    );

    // Fresh, and resuming from op 4 (gets the CLEAR) and from op 7 (after it).
    let mut fresh = Client::default();
    for client in [&mut fresh, &mut early, &mut middle] {
        client.sync(s, id, last, &names(&["a", "b"])).await;
        let rows = client.buckets["a"].rows();
        assert_eq!(
            rows,
            BTreeMap::from([
                (("items".into(), "2".into()), v(3)),
                (("items".into(), "3".into()), v(2)),
            ])
        );
        assert_eq!(client.buckets["b"].rows().len(), 1);
    }

    // Compacting again changes nothing.
    assert_eq!(
        compact_all(s, id, CompactLimits::default()).await,
        CompactStats::default()
    );
    // A deployment without a checkpoint is left alone; an unknown bucket too.
    let other = new_deployment(s).await;
    commit(s, other, vec![upsert("t", "r", &[("a", "1", "{}")])], 1).await;
    commit(s, other, vec![upsert("t", "r", &[("a", "1", "{}x")])], 2).await;
    assert_eq!(
        s.compact_bucket(other, "a", &CompactLimits::default())
            .await
            .unwrap(),
        CompactStats::default()
    );
    assert_eq!(
        s.compact_bucket(id, "nope", &CompactLimits::default())
            .await
            .unwrap(),
        CompactStats::default()
    );
}

/// A superseded op behind a live row becomes a MOVE (no CLEAR: the bucket starts with a PUT
/// that stays); checksums stay and clients converge.
pub async fn compaction_moves_ops_behind_a_live_row(s: &dyn BucketStorage) {
    use OpType::*;
    let id = new_deployment(s).await;
    s.mark_snapshot_done(id).await.unwrap();
    let base = commit(
        s,
        id,
        vec![
            upsert("t", "r0", &[("x", "0", "{}")]),
            upsert("t", "r1", &[("x", "1", r#"{"v":1}"#)]),
        ],
        1,
    )
    .await
    .previous
    .0;
    let mut early = Client::default();
    early.sync(s, id, OpId(base + 2), &names(&["x"])).await;
    commit(
        s,
        id,
        vec![upsert("t", "r1", &[("x", "1", r#"{"v":2}"#)])],
        2,
    )
    .await;
    let last = commit(
        s,
        id,
        vec![upsert("t", "r1", &[("x", "1", r#"{"v":3}"#)])],
        3,
    )
    .await
    .checkpoint
    .op_id;
    let before = s.bucket_states(id, last, &names(&["x"])).await.unwrap();
    let stats = compact_all(s, id, CompactLimits::default()).await;
    assert_eq!(
        (stats.buckets, stats.ops_moved, stats.ops_removed),
        (1, 2, 0)
    );
    assert!(stats.bytes_reclaimed > 0);
    let ops = read_all(s, id, last, "x").await;
    assert_eq!(
        kinds_from(&ops, base),
        vec![(1, Put), (2, Move), (3, Move), (4, Put)]
    );
    assert_eq!((&ops[1].object_id, &ops[1].data), (&None, &None));
    let after = s.bucket_states(id, last, &names(&["x"])).await.unwrap();
    assert_eq!(after, before, "MOVE keeps checksums and counts");
    let mut fresh = Client::default();
    for client in [&mut fresh, &mut early] {
        client.sync(s, id, last, &names(&["x"])).await;
        assert_eq!(
            client.buckets["x"].rows(),
            BTreeMap::from([
                (("items".into(), "0".into()), "{}".to_owned()),
                (("items".into(), "1".into()), r#"{"v":3}"#.to_owned()),
            ])
        );
    }
}

/// Tiny transactions and scan pages give the same result as one step.
pub async fn compaction_in_small_steps_matches_one_step(s: &dyn BucketStorage) {
    let small = CompactLimits {
        ops_per_transaction: 2,
        scan_page: 3,
        key_memory: 1 << 20,
    };
    let mut logs = Vec::new();
    for limits in [CompactLimits::default(), small] {
        let id = new_deployment(s).await;
        s.mark_snapshot_done(id).await.unwrap();
        let mut base = None;
        for round in 0..6 {
            let mut ops = Vec::new();
            for row in 0..12 {
                let key = format!("r{row}");
                if (row + round) % 5 == 0 {
                    ops.push(delete("t", &key));
                } else {
                    let data = format!(r#"{{"round":{round}}}"#);
                    let bucket = if row % 3 == 0 { "x" } else { "y" };
                    ops.push(upsert("t", &key, &[(bucket, &key, &data)]));
                }
            }
            let e = commit(s, id, ops, round + 1).await;
            base.get_or_insert(e.previous.0);
        }
        let base = base.unwrap();
        let cp = s.checkpoint(id).await.unwrap().unwrap().op_id;
        let before = s.bucket_states(id, cp, &names(&["x", "y"])).await.unwrap();
        let stats = compact_all(s, id, limits).await;
        assert!(stats.ops_removed > 0, "{stats:?}");
        let after = s.bucket_states(id, cp, &names(&["x", "y"])).await.unwrap();
        for b in ["x", "y"] {
            assert_eq!(after[b].checksum, before[b].checksum, "bucket {b}");
        }
        let mut log = Vec::new();
        for b in ["x", "y"] {
            log.push(kinds_from(&read_all(s, id, cp, b).await, base));
        }
        logs.push((log, stats.ops_moved, stats.ops_removed));
    }
    assert_eq!(logs[0], logs[1]);
}

/// A random workload with compaction between rounds: every client, whether it follows each
/// round, resumes after several, or starts from nothing, holds exactly the live rows with
/// matching checksums; compaction leaves the checksums of the checkpoint it ran at unchanged.
pub async fn compaction_random_workload_converges(s: &dyn BucketStorage) {
    let id = new_deployment(s).await;
    s.mark_snapshot_done(id).await.unwrap();
    let mut seed: u64 = 0x00c0_ffee_1234_5678;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let buckets: Vec<String> = (0..4).map(|b| format!("bucket{b}")).collect();
    type BucketRows = Vec<(String, String, String)>;
    let mut live: BTreeMap<String, BucketRows> = BTreeMap::new();
    let mut follower = Client::default();
    let mut lagging = Client::default();
    let small = CompactLimits {
        ops_per_transaction: 3,
        scan_page: 4,
        key_memory: 1 << 20,
    };
    for round in 0..30u64 {
        let mut ops: Vec<BatchOperation> = Vec::new();
        for _ in 0..rand(25) + 1 {
            let key = format!("k{}", rand(15));
            if rand(6) == 0 {
                ops.push(delete("public.t", &key));
                live.remove(&key);
                continue;
            }
            let mut rows: BucketRows = Vec::new();
            for _ in 0..rand(3) {
                let b = buckets[rand(4) as usize].clone();
                let oid = format!("{key}-{}", rand(2));
                if !rows.iter().any(|(rb, ri, _)| *rb == b && *ri == oid) {
                    rows.push((b, oid, format!(r#"{{"v":{}}}"#, rand(4))));
                }
            }
            let r: Vec<(&str, &str, &str)> = rows
                .iter()
                .map(|(b, i, d)| (b.as_str(), i.as_str(), d.as_str()))
                .collect();
            ops.push(upsert("public.t", &key, &r));
            live.insert(key, rows);
        }
        let cp = commit(s, id, ops, 100 + round).await.checkpoint.op_id;
        if round % 3 == 2 {
            let before = s.bucket_states(id, cp, &buckets).await.unwrap();
            let limits = if round % 2 == 0 {
                small
            } else {
                CompactLimits::default()
            };
            compact_all(s, id, limits).await;
            let after = s.bucket_states(id, cp, &buckets).await.unwrap();
            for b in &buckets {
                assert_eq!(
                    after.get(b).map(|st| st.checksum),
                    before.get(b).map(|st| st.checksum),
                    "checksum of {b} at {cp:?} after compaction"
                );
            }
        }
        let mut expected: BTreeMap<String, BTreeMap<(String, String), String>> = BTreeMap::new();
        for rows in live.values() {
            for (b, oid, data) in rows {
                expected
                    .entry(b.clone())
                    .or_default()
                    .insert(("items".to_owned(), oid.clone()), data.clone());
            }
        }
        let mut fresh = Client::default();
        let mut clients = vec![&mut follower, &mut fresh];
        if round % 5 == 4 {
            clients.push(&mut lagging);
        }
        for client in clients {
            client.sync(s, id, cp, &buckets).await;
            for b in &buckets {
                assert_eq!(
                    client.buckets[b].rows(),
                    expected.get(b).cloned().unwrap_or_default(),
                    "rows of {b} in round {round}"
                );
            }
        }
    }
}

/// Compaction does not wait on an open replication transaction that writes the same bucket
/// (Postgres leaves that bucket for later after a short wait; memory compacts what is
/// committed), and what the transaction then commits is all there.
pub async fn compaction_does_not_wait_for_replication(s: &dyn BucketStorage) {
    let id = new_deployment(s).await;
    s.mark_snapshot_done(id).await.unwrap();
    for round in 0..3 {
        let data = format!(r#"{{"round":{round}}}"#);
        commit(
            s,
            id,
            vec![upsert("t", "r", &[("a", "1", &data)])],
            round + 1,
        )
        .await;
    }
    // More rows than a Postgres chunk, so the open batch has written (and locked) bucket "a".
    let mut batch = s.begin_batch(id).await.unwrap();
    let rows: Vec<BatchOperation> = (0..6_000)
        .map(|i| upsert("t", &format!("n{i}"), &[("a", &format!("n{i}"), "{}")]))
        .collect();
    batch.save(rows).await.unwrap();
    let stats = tokio::time::timeout(
        Duration::from_secs(20),
        s.compact_bucket(id, "a", &CompactLimits::default()),
    )
    .await
    .expect("compaction waited for the open batch")
    .unwrap();
    assert!(
        stats.buckets_busy == 1 || stats.ops_removed == 1,
        "either left for later or compacted: {stats:?}"
    );
    let cp = batch
        .commit(riptide_protocol::Lsn(10))
        .await
        .unwrap()
        .checkpoint
        .op_id;
    compact_all(s, id, CompactLimits::default()).await;
    let mut client = Client::default();
    client.sync(s, id, cp, &names(&["a"])).await;
    assert_eq!(client.buckets["a"].rows().len(), 6_001);
    let states = s.bucket_states(id, cp, &names(&["a"])).await.unwrap();
    assert_eq!(
        states["a"].count, 6_002,
        "one CLEAR and the 6,001 live PUTs"
    );
}

/// Replication and compaction at the same time lose nothing: a follower that completes only
/// the checkpoints no compaction rewrote under it (as streams do) and a fresh client at the
/// end hold exactly the live rows.
pub async fn compaction_concurrent_with_replication_loses_nothing(s: &dyn BucketStorage) {
    let id = new_deployment(s).await;
    s.mark_snapshot_done(id).await.unwrap();
    let buckets = names(&["p", "q"]);
    let rounds = 40u64;
    let passes = AtomicU64::new(0);
    let writer = async {
        for round in 0..rounds {
            if round % 10 == 5 {
                // Make sure compaction runs while rows keep changing.
                let seen = passes.load(Ordering::Relaxed);
                while passes.load(Ordering::Relaxed) < seen + 2 {
                    tokio::task::yield_now().await;
                }
            }
            let mut ops = Vec::new();
            for row in 0..20u64 {
                let key = format!("r{row}");
                let bucket = if (row + round).is_multiple_of(4) {
                    "p"
                } else {
                    "q"
                };
                if (row * 7 + round).is_multiple_of(9) {
                    ops.push(delete("t", &key));
                } else {
                    let data = format!(r#"{{"round":{round}}}"#);
                    ops.push(upsert("t", &key, &[(bucket, &key, &data)]));
                }
            }
            commit(s, id, ops, round + 1).await;
            tokio::task::yield_now().await;
        }
    };
    let done = AtomicBool::new(false);
    let compactor = async {
        let mut total = CompactStats::default();
        while !done.load(Ordering::Relaxed) {
            total += compact_all(
                s,
                id,
                CompactLimits {
                    ops_per_transaction: 7,
                    ..CompactLimits::default()
                },
            )
            .await;
            passes.fetch_add(1, Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
        total
    };
    let follower = async {
        let mut client = Client::default();
        let mut completed = 0;
        while !done.load(Ordering::Relaxed) {
            let Some(cp) = s.checkpoint(id).await.unwrap() else {
                continue;
            };
            // What a stream does: read states and data for a checkpoint, then complete it only
            // when no compaction rewrote these buckets past it meanwhile.
            let mut next = client.clone();
            let states = s.bucket_states(id, cp.op_id, &buckets).await.unwrap();
            for b in &buckets {
                let held = next.buckets.entry(b.clone()).or_default();
                for op in read_after(s, id, cp.op_id, b, held.last_op).await {
                    held.apply(&op);
                }
            }
            let points = s.compaction_points(id, &buckets).await.unwrap();
            if points.values().any(|p| *p > cp.op_id) {
                // Not completed; the data sent stays, and the next checkpoint goes on from it.
                client = next;
                continue;
            }
            for b in &buckets {
                let held = next.buckets.entry(b.clone()).or_default();
                held.last_op = cp.op_id;
                let expected = states.get(b).map(|st| st.checksum).unwrap_or_default();
                assert_eq!(
                    held.checksum(),
                    expected,
                    "follower checksum of {b} at {cp:?}"
                );
            }
            client = next;
            completed += 1;
            tokio::task::yield_now().await;
        }
        (client, completed)
    };
    let ((), total, (mut follower, completed)) = tokio::join!(
        async {
            writer.await;
            done.store(true, Ordering::Relaxed);
        },
        compactor,
        follower
    );
    assert!(completed > 0, "the follower completed no checkpoint");
    total_is_something(total);
    compact_all(s, id, CompactLimits::default()).await;
    let cp = s.checkpoint(id).await.unwrap().unwrap().op_id;
    let mut fresh = Client::default();
    fresh.sync(s, id, cp, &buckets).await;
    follower.sync(s, id, cp, &buckets).await;
    // The live rows after the last round.
    let last = rounds - 1;
    let mut expected: BTreeMap<String, BTreeMap<(String, String), String>> = BTreeMap::new();
    for row in 0..20u64 {
        if (row * 7 + last).is_multiple_of(9) {
            continue;
        }
        let key = format!("r{row}");
        let bucket = if (row + last).is_multiple_of(4) {
            "p"
        } else {
            "q"
        };
        expected
            .entry(bucket.to_owned())
            .or_default()
            .insert(("items".to_owned(), key), format!(r#"{{"round":{last}}}"#));
    }
    for client in [&fresh, &follower] {
        for b in &buckets {
            assert_eq!(
                client.buckets[b].rows(),
                expected.get(b).cloned().unwrap_or_default(),
                "rows of {b}"
            );
        }
    }
}

fn total_is_something(total: CompactStats) {
    // The compactor ran while rows changed every round: it must have rewritten something.
    assert!(total.ops_moved + total.ops_removed > 0, "{total:?}");
}

/// A bucket name too long to be stored as it is (Postgres stores a digest form): the background
/// path compacts it, and its compaction point is found under the full name streams ask with.
pub async fn compaction_of_a_bucket_with_a_long_name(s: &dyn BucketStorage) {
    let id = new_deployment(s).await;
    s.mark_snapshot_done(id).await.unwrap();
    let long = format!("long[\"{}\"]", "x".repeat(3_000));
    for n in 1..=3 {
        commit(
            s,
            id,
            vec![upsert(
                "t",
                "r1",
                &[(&long, "1", &format!(r#"{{"v":{n}}}"#))],
            )],
            n,
        )
        .await;
    }
    let checkpoint = s.checkpoint(id).await.unwrap().unwrap().op_id;
    let done = compact_all(s, id, CompactLimits::default()).await;
    assert_eq!(done.buckets, 1, "{done:?}");
    let points = s
        .compaction_points(id, std::slice::from_ref(&long))
        .await
        .unwrap();
    assert_eq!(points.get(&long), Some(&checkpoint), "{points:?}");
    let ops = read_after(s, id, checkpoint, &long, OpId::ZERO).await;
    assert_eq!(ops.len(), 2, "a CLEAR and the live PUT: {ops:?}");
    assert_eq!(ops.last().unwrap().op, OpType::Put);
}
