//! Golden line sequences of the session state machine.

use std::collections::{BTreeMap, HashMap};

use riptide_protocol::{BucketRequest, Checksum, OpId, OpType, OplogEntry};
use riptide_storage::{BucketChunk, BucketState};

use super::*;

/// Ops per bucket, standing in for storage (same paging rules as `BucketStorage::bucket_data`).
#[derive(Default)]
struct Ops(BTreeMap<String, Vec<OplogEntry>>);

impl Ops {
    fn put(&mut self, bucket: &str, op_id: i64, id: &str, data: &str) {
        let data = format!(r#"{{"id":"{id}","v":"{data}"}}"#);
        self.0
            .entry(bucket.to_owned())
            .or_default()
            .push(OplogEntry {
                op_id: OpId(op_id),
                op: OpType::Put,
                object_type: Some("t".into()),
                object_id: Some(id.into()),
                checksum: Checksum::of_put("t", id, &data),
                subkey: Some(format!("s/{id}")),
                data: Some(data),
            });
    }

    fn states(&self, checkpoint: i64) -> HashMap<String, BucketState> {
        self.0
            .iter()
            .filter_map(|(b, ops)| {
                let ops: Vec<_> = ops.iter().filter(|o| o.op_id.0 <= checkpoint).collect();
                (!ops.is_empty()).then(|| {
                    (
                        b.clone(),
                        BucketState {
                            checksum: ops.iter().map(|o| o.checksum).sum(),
                            count: ops.len() as i64,
                        },
                    )
                })
            })
            .collect()
    }

    fn page(&self, fetch: &Fetch) -> Vec<BucketChunk> {
        let mut wanted: BTreeMap<&str, OpId> = BTreeMap::new();
        for (b, after) in &fetch.buckets {
            wanted.entry(b).or_insert(*after);
        }
        let mut remaining = fetch.limit;
        let mut out = Vec::new();
        for (b, after) in wanted {
            let ops: Vec<_> = self
                .0
                .get(b)
                .into_iter()
                .flatten()
                .filter(|o| o.op_id > after && o.op_id <= fetch.checkpoint)
                .cloned()
                .collect();
            if ops.is_empty() {
                continue;
            }
            if remaining == 0 {
                break;
            }
            let take = ops.len().min(remaining);
            remaining -= take;
            out.push(BucketChunk {
                bucket: b.to_owned(),
                has_more: take < ops.len(),
                ops: ops[..take].to_vec(),
            });
            if take < ops.len() {
                break;
            }
        }
        out
    }
}

fn bucket(name: &str, priority: u8) -> SessionBucket {
    SessionBucket {
        name: name.into(),
        priority,
        subscriptions: vec![SubscriptionRef::Default(0)],
    }
}

fn streams() -> Vec<StreamDescription> {
    SessionState::streams_for(&[("global".into(), 3)])
}

/// Feeds a checkpoint and all its data; returns the NDJSON sent.
fn run(
    s: &mut SessionState,
    ops: &Ops,
    checkpoint: i64,
    buckets: &[SessionBucket],
    write_checkpoint: Option<i64>,
) -> String {
    let mut lines = s.begin_checkpoint(CheckpointInput {
        checkpoint: OpId(checkpoint),
        buckets: buckets.to_vec(),
        states: ops.states(checkpoint),
        write_checkpoint: write_checkpoint.map(OpId),
    });
    while let Some(fetch) = s.next_fetch() {
        let page = ops.page(&fetch);
        lines.extend(feed(s, &fetch, page, &HashMap::new()));
    }
    ndjson(&lines)
}

/// A page read from storage, then the compaction check when it finishes a group, with these
/// compaction points.
fn feed(
    s: &mut SessionState,
    fetch: &Fetch,
    page: Vec<BucketChunk>,
    points: &HashMap<String, OpId>,
) -> Vec<SyncLine> {
    let mut lines = s.on_data(fetch, page);
    if let Some(check) = s.compaction_check() {
        assert!(
            s.next_fetch().is_none(),
            "no more data while the check is due"
        );
        lines.extend(s.on_compaction_points(&check, points));
    }
    lines
}

fn ndjson(lines: &[SyncLine]) -> String {
    let mut out = Vec::new();
    for l in lines {
        l.write_ndjson(&mut out);
    }
    String::from_utf8(out).unwrap()
}

/// Compact form of data lines for readable goldens: `data b after..next_after [op ids] more`.
fn summary(ndjson: &str) -> Vec<String> {
    ndjson
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(d) = v.get("data") {
                let ids: Vec<&str> = d["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o["op_id"].as_str().unwrap())
                    .collect();
                format!(
                    "data {} {}..{} [{}]{}",
                    d["bucket"].as_str().unwrap(),
                    d["after"].as_str().unwrap(),
                    d["next_after"].as_str().unwrap(),
                    ids.join(","),
                    if d["has_more"].as_bool().unwrap() {
                        " more"
                    } else {
                        ""
                    }
                )
            } else {
                l.to_owned()
            }
        })
        .collect()
}

#[test]
fn first_sync_matches_official_shape() {
    let mut ops = Ops::default();
    ops.put("1#global[]", 1, "a", "x");
    ops.put("1#global[]", 2, "b", "y");
    let mut s = SessionState::new(streams(), &[]);
    let out = run(&mut s, &ops, 2, &[bucket("1#global[]", 3)], None);
    let expected_checksum = (Checksum::of_put("t", "a", r#"{"id":"a","v":"x"}"#)
        + Checksum::of_put("t", "b", r#"{"id":"b","v":"y"}"#))
    .as_signed();
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!(
            r#"{{"checkpoint":{{"last_op_id":"2","buckets":[{{"bucket":"1#global[]","checksum":{expected_checksum},"count":2,"priority":3,"subscriptions":[{{"default":0}}]}}],"streams":[{{"name":"global","is_default":true,"errors":[]}}]}}}}"#
        )
    );
    let data: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(data["data"]["after"], "0");
    assert_eq!(data["data"]["next_after"], "2");
    assert_eq!(data["data"]["has_more"], false);
    assert_eq!(data["data"]["data"][0]["op_id"], "1");
    assert_eq!(data["data"]["data"][0]["data"], r#"{"id":"a","v":"x"}"#);
    assert_eq!(
        lines.next().unwrap(),
        r#"{"checkpoint_complete":{"last_op_id":"2"}}"#
    );
    assert_eq!(lines.next(), None);
    assert!(s.is_idle());
    assert_eq!(s.ops_sent_total(), 2);
}

#[test]
fn zero_buckets_still_complete() {
    let mut s = SessionState::new(Vec::new(), &[]);
    let out = run(&mut s, &Ops::default(), 7, &[], None);
    assert_eq!(
        out,
        concat!(
            r#"{"checkpoint":{"last_op_id":"7","buckets":[],"streams":[]}}"#,
            "\n",
            r#"{"checkpoint_complete":{"last_op_id":"7"}}"#,
            "\n"
        )
    );
}

#[test]
fn priorities_grouped_with_partial_completes() {
    let mut ops = Ops::default();
    ops.put("low", 1, "a", "x");
    ops.put("high", 2, "b", "x");
    ops.put("mid", 3, "c", "x");
    let mut s = SessionState::new(streams(), &[]);
    let out = run(
        &mut s,
        &ops,
        3,
        &[bucket("low", 3), bucket("high", 0), bucket("mid", 1)],
        None,
    );
    let got = summary(&out);
    assert!(got[0].starts_with(r#"{"checkpoint":"#));
    assert_eq!(
        got[1..],
        [
            "data high 0..2 [2]",
            r#"{"partial_checkpoint_complete":{"last_op_id":"3","priority":0}}"#,
            "data mid 0..3 [3]",
            r#"{"partial_checkpoint_complete":{"last_op_id":"3","priority":1}}"#,
            "data low 0..1 [1]",
            r#"{"checkpoint_complete":{"last_op_id":"3"}}"#,
        ]
    );
}

#[test]
fn diff_with_changed_new_and_removed_buckets() {
    let mut ops = Ops::default();
    ops.put("a", 1, "1", "x");
    ops.put("b", 2, "2", "x");
    ops.put("c", 3, "3", "x");
    let mut s = SessionState::new(streams(), &[]);
    run(
        &mut s,
        &ops,
        3,
        &[bucket("a", 3), bucket("b", 3), bucket("c", 3)],
        None,
    );

    ops.put("a", 4, "1", "y");
    ops.put("d", 5, "4", "x");
    let out = run(
        &mut s,
        &ops,
        5,
        &[bucket("a", 3), bucket("c", 3), bucket("d", 3)],
        None,
    );
    let got = summary(&out);
    let diff: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    let diff = &diff["checkpoint_diff"];
    assert_eq!(diff["last_op_id"], "5");
    assert_eq!(diff["removed_buckets"], serde_json::json!(["b"]));
    let updated: Vec<&str> = diff["updated_buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bucket"].as_str().unwrap())
        .collect();
    assert_eq!(updated, ["a", "d"]);
    assert_eq!(diff["updated_buckets"][0]["count"], 2);
    assert!(diff.get("write_checkpoint").is_none());
    // Changed bucket continues after the last checkpoint; the new one starts at 0.
    assert_eq!(
        got[1..],
        [
            "data a 3..4 [4]",
            "data d 0..5 [5]",
            r#"{"checkpoint_complete":{"last_op_id":"5"}}"#,
        ]
    );
}

#[test]
fn nothing_changed_sends_nothing_but_write_checkpoint_alone_sends_empty_diff() {
    let mut ops = Ops::default();
    ops.put("a", 1, "1", "x");
    ops.put("other", 2, "2", "x");
    let mut s = SessionState::new(streams(), &[]);
    run(&mut s, &ops, 1, &[bucket("a", 3)], None);
    // A checkpoint that only changed a bucket this client does not have.
    assert_eq!(run(&mut s, &ops, 2, &[bucket("a", 3)], None), "");
    assert_eq!(
        run(&mut s, &ops, 2, &[bucket("a", 3)], Some(3)),
        concat!(
            r#"{"checkpoint_diff":{"last_op_id":"2","write_checkpoint":"3","updated_buckets":[],"removed_buckets":[]}}"#,
            "\n",
            r#"{"checkpoint_complete":{"last_op_id":"2"}}"#,
            "\n"
        )
    );
    assert_eq!(s.reported_write_checkpoint(), Some(OpId(3)));
    assert_eq!(run(&mut s, &ops, 2, &[bucket("a", 3)], Some(3)), "");
}

#[test]
fn request_positions_are_used_for_known_buckets() {
    let mut ops = Ops::default();
    for i in 1..=4 {
        ops.put("a", i, &i.to_string(), "x");
        ops.put("b", 10 + i, &i.to_string(), "x");
    }
    let requested = [
        BucketRequest {
            name: "a".into(),
            after: OpId(2),
        },
        BucketRequest {
            name: "gone".into(),
            after: OpId(9),
        },
    ];
    let mut s = SessionState::new(streams(), &requested);
    let out = run(&mut s, &ops, 14, &[bucket("a", 3), bucket("b", 3)], None);
    assert_eq!(
        summary(&out)[1..],
        [
            "data a 2..4 [3,4]",
            "data b 0..14 [11,12,13,14]",
            r#"{"checkpoint_complete":{"last_op_id":"14"}}"#,
        ]
    );
    // The checkpoint lists only current buckets (the client deletes "gone").
    assert!(!out.lines().next().unwrap().contains("gone"));
    assert_eq!(s.position("a"), Some(OpId(14)));
    assert_eq!(s.position("gone"), None);
}

#[test]
fn pages_and_byte_limit_split_data_lines() {
    let mut ops = Ops::default();
    for i in 1..=2500 {
        ops.put("a", i, &i.to_string(), "x");
    }
    ops.put("b", 2501, "z", "x");
    let mut s = SessionState::new(streams(), &[]);
    let out = run(&mut s, &ops, 2501, &[bucket("a", 3), bucket("b", 3)], None);
    let got: Vec<String> = summary(&out)
        .into_iter()
        .skip(1)
        .map(|l| {
            l.split(" [").next().unwrap().to_owned()
                + if l.ends_with("more") { " more" } else { "" }
        })
        .collect();
    assert_eq!(
        got,
        [
            "data a 0..1000 more",
            "data a 1000..2000 more",
            "data a 2000..2500",
            "data b 0..2501",
            r#"{"checkpoint_complete":{"last_op_id":"2501"}}"#,
        ]
    );

    // ~1 MiB per line: with a 1 KiB limit the 13 ops need several lines.
    let mut s = SessionState::new(streams(), &[]).with_line_bytes(1024);
    let mut small = Ops::default();
    for i in 1..=13 {
        small.put("a", i, &i.to_string(), "x");
    }
    let out = run(&mut s, &small, 13, &[bucket("a", 3)], None);
    let got = summary(&out);
    let data = &got[1..got.len() - 1];
    assert!(data.len() >= 2, "{got:?}");
    for (i, l) in data.iter().enumerate() {
        assert_eq!(l.ends_with("more"), i + 1 < data.len(), "{got:?}");
    }
    for l in out.lines().skip(1).take(data.len()) {
        assert!(l.len() <= 1024 + 200, "{}", l.len());
    }
    assert_eq!(s.ops_sent_total(), 13);
}

#[test]
fn abandoned_checkpoint_resumes_in_the_next() {
    let mut ops = Ops::default();
    for i in 1..=1500 {
        ops.put("a", i, &i.to_string(), "x");
    }
    let mut s = SessionState::new(streams(), &[]);
    let first = s.begin_checkpoint(CheckpointInput {
        checkpoint: OpId(1500),
        buckets: vec![bucket("a", 3)],
        states: ops.states(1500),
        write_checkpoint: None,
    });
    assert_eq!(first.len(), 1);
    let fetch = s.next_fetch().unwrap();
    let lines = s.on_data(&fetch, ops.page(&fetch));
    assert_eq!(
        summary(&ndjson(&lines)),
        ["data a 0..1000 [".to_owned()
            + &(1..=1000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
            + "] more"]
    );
    assert_eq!(s.ops_sent_for_pending(), 1000);

    // A newer checkpoint arrives; bucket "a" unchanged since, but its data is unfinished.
    let out = run(&mut s, &ops, 1600, &[bucket("a", 3)], None);
    let got = summary(&out);
    assert_eq!(
        got[0],
        r#"{"checkpoint_diff":{"last_op_id":"1600","updated_buckets":[],"removed_buckets":[]}}"#
    );
    assert!(got[1].starts_with("data a 1000..1500 [1001,"));
    assert_eq!(got[2], r#"{"checkpoint_complete":{"last_op_id":"1600"}}"#);
}

/// The ops of `ops` with `from < op_id <= to`, per bucket: what the checkpoint bus carried.
fn new_ops(ops: &Ops, from: i64, to: i64) -> HashMap<String, Vec<OplogEntry>> {
    ops.0
        .iter()
        .filter_map(|(b, ops)| {
            let ops: Vec<OplogEntry> = ops
                .iter()
                .filter(|o| o.op_id.0 > from && o.op_id.0 <= to)
                .cloned()
                .collect();
            (!ops.is_empty()).then(|| (b.clone(), ops))
        })
        .collect()
}

#[test]
fn checkpoint_from_ops_sends_what_storage_reads_would() {
    let mut ops = Ops::default();
    ops.put("a", 1, "1", "x");
    ops.put("b", 2, "2", "x");
    let buckets = [bucket("a", 3), bucket("b", 1), bucket("c", 3)];
    // Two sessions: one reads storage, one serves the later checkpoints from memory.
    let mut from_storage = SessionState::new(streams(), &[]);
    let mut from_memory = SessionState::new(streams(), &[]);
    run(&mut from_storage, &ops, 2, &buckets, None);
    run(&mut from_memory, &ops, 2, &buckets, None);
    ops.put("a", 3, "3", "y");
    ops.put("other", 4, "4", "y");
    ops.put("b", 5, "2", "z");
    ops.put("a", 6, "1", "z");
    let expected = run(&mut from_storage, &ops, 6, &buckets, Some(7));
    let lines = from_memory
        .checkpoint_from_ops(
            OpId(6),
            buckets.to_vec(),
            Some(OpId(7)),
            &new_ops(&ops, 2, 6),
        )
        .expect("served from memory");
    assert_eq!(ndjson(&lines), expected);
    assert!(expected.contains(r#""bucket":"a","checksum""#));
    assert_eq!(
        summary(&expected)
            .into_iter()
            .filter(|l| l.starts_with("data"))
            .collect::<Vec<_>>(),
        vec!["data b 2..5 [5]", "data a 2..6 [3,6]"]
    );
    assert!(from_memory.is_idle());
    // And again from the new base.
    ops.put("c", 7, "7", "w");
    let expected = run(&mut from_storage, &ops, 7, &buckets, Some(7));
    let lines = from_memory
        .checkpoint_from_ops(
            OpId(7),
            buckets.to_vec(),
            Some(OpId(7)),
            &new_ops(&ops, 6, 7),
        )
        .unwrap();
    assert_eq!(ndjson(&lines), expected);
}

#[test]
fn checkpoint_from_ops_untouched_buckets_send_nothing_but_a_write_checkpoint_is_reported() {
    let mut ops = Ops::default();
    ops.put("a", 1, "1", "x");
    let buckets = [bucket("a", 3)];
    let mut s = SessionState::new(streams(), &[]);
    run(&mut s, &ops, 1, &buckets, None);
    // Commits to a bucket this stream does not have.
    ops.put("other", 2, "2", "x");
    let lines = s
        .checkpoint_from_ops(OpId(2), buckets.to_vec(), None, &new_ops(&ops, 1, 2))
        .unwrap();
    assert!(lines.is_empty());
    // Only a write checkpoint became visible: an empty diff and a complete.
    let lines = s
        .checkpoint_from_ops(OpId(2), buckets.to_vec(), Some(OpId(9)), &HashMap::new())
        .unwrap();
    assert_eq!(
        ndjson(&lines),
        concat!(
            r#"{"checkpoint_diff":{"last_op_id":"2","write_checkpoint":"9","updated_buckets":[],"removed_buckets":[]}}"#,
            "\n",
            r#"{"checkpoint_complete":{"last_op_id":"2"}}"#,
            "\n"
        )
    );
    assert_eq!(s.reported_write_checkpoint(), Some(OpId(9)));
}

#[test]
fn checkpoint_from_ops_declines_when_memory_cannot_cover() {
    let mut ops = Ops::default();
    for i in 1..=3 {
        ops.put("a", i, &i.to_string(), "x");
    }
    let buckets = [bucket("a", 3)];
    let mut s = SessionState::new(streams(), &[]);
    // Nothing sent yet: the first checkpoint always comes from storage.
    assert!(
        s.checkpoint_from_ops(OpId(1), buckets.to_vec(), None, &new_ops(&ops, 0, 1))
            .is_none()
    );
    // A checkpoint in progress (its data not all sent).
    s.begin_checkpoint(CheckpointInput {
        checkpoint: OpId(2),
        buckets: buckets.to_vec(),
        states: ops.states(2),
        write_checkpoint: None,
    });
    assert!(
        s.checkpoint_from_ops(OpId(3), buckets.to_vec(), None, &new_ops(&ops, 2, 3))
            .is_none()
    );
    while let Some(fetch) = s.next_fetch() {
        let page = ops.page(&fetch);
        feed(&mut s, &fetch, page, &HashMap::new());
    }
    // A bucket the client was never told about.
    let more = [bucket("a", 3), bucket("new", 3)];
    assert!(
        s.checkpoint_from_ops(OpId(3), more.to_vec(), None, &new_ops(&ops, 2, 3))
            .is_none()
    );
    // More ops than a page.
    for i in 4..(4 + DATA_PAGE_OPS as i64) {
        ops.put("a", i, &i.to_string(), "x");
    }
    let last = 3 + DATA_PAGE_OPS as i64;
    assert!(
        s.checkpoint_from_ops(OpId(last), buckets.to_vec(), None, &new_ops(&ops, 2, last))
            .is_none()
    );
    // Still consistent: storage serves it.
    assert!(run(&mut s, &ops, last, &buckets, None).contains("checkpoint_complete"));
}

/// docs/protocol.md §3.6: storage compacted a bucket at a newer checkpoint than the one being
/// served while its data was read. The checkpoint is not completed; the next one (at least the
/// compaction point, from storage) sends the rest and completes.
#[test]
fn a_checkpoint_compacted_past_is_not_completed() {
    let mut ops = Ops::default();
    for i in 1..=4 {
        ops.put("a", i, &i.to_string(), "x");
    }
    ops.put("b", 5, "5", "x");
    let buckets = [bucket("a", 0), bucket("b", 3)];
    let mut s = SessionState::new(streams(), &[]);
    let mut lines = s.begin_checkpoint(CheckpointInput {
        checkpoint: OpId(5),
        buckets: buckets.to_vec(),
        states: ops.states(5),
        write_checkpoint: None,
    });
    // Priority 0: bucket "a" was compacted at 5 (not past the checkpoint): it completes.
    let fetch = s.next_fetch().unwrap();
    let points = HashMap::from([("a".to_owned(), OpId(5)), ("b".to_owned(), OpId(8))]);
    lines.extend(feed(&mut s, &fetch, ops.page(&fetch), &points));
    // Priority 3: bucket "b" was compacted at 8.
    let fetch = s.next_fetch().unwrap();
    lines.extend(feed(&mut s, &fetch, ops.page(&fetch), &points));
    let got = summary(&ndjson(&lines));
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got[0].starts_with(r#"{"checkpoint":{"last_op_id":"5""#));
    assert_eq!(got[1], "data a 0..4 [1,2,3,4]");
    assert_eq!(
        got[2],
        r#"{"partial_checkpoint_complete":{"last_op_id":"5","priority":0}}"#
    );
    assert_eq!(got[3], "data b 0..5 [5]", "no checkpoint_complete");
    assert_eq!(s.invalidated(), Some(OpId(8)));
    assert!(s.is_idle() && s.next_fetch().is_none());
    // Not from memory: the next checkpoint must come from storage.
    assert!(
        s.checkpoint_from_ops(OpId(8), buckets.to_vec(), None, &HashMap::new())
            .is_none()
    );
    // Storage is at 8 (ops 6..=8 in "b"); "b" continues from 5, "a" is done.
    for i in 6..=8 {
        ops.put("b", i, &i.to_string(), "y");
    }
    let out = run(&mut s, &ops, 8, &buckets, None);
    let got = summary(&out);
    assert!(got[0].starts_with(r#"{"checkpoint_diff":{"last_op_id":"8""#));
    assert_eq!(got[1], "data b 5..8 [6,7,8]");
    assert_eq!(got[2], r#"{"checkpoint_complete":{"last_op_id":"8"}}"#);
    assert_eq!(got.len(), 3);
    assert_eq!(s.invalidated(), None);
}

/// A bucket whose data was complete before the checkpoint (nothing new in it) is still owed a
/// completion after the abandoned one: the next checkpoint sends a diff and completes even when
/// no bucket changed.
#[test]
fn after_an_abandoned_checkpoint_the_next_completes_without_changes() {
    let mut ops = Ops::default();
    ops.put("a", 1, "1", "x");
    let buckets = [bucket("a", 3)];
    let mut s = SessionState::new(streams(), &[]);
    s.begin_checkpoint(CheckpointInput {
        checkpoint: OpId(1),
        buckets: buckets.to_vec(),
        states: ops.states(1),
        write_checkpoint: None,
    });
    let fetch = s.next_fetch().unwrap();
    let points = HashMap::from([("a".to_owned(), OpId(2))]);
    let lines = feed(&mut s, &fetch, ops.page(&fetch), &points);
    assert_eq!(summary(&ndjson(&lines)), ["data a 0..1 [1]"]);
    let got = summary(&run(&mut s, &ops, 2, &buckets, None));
    assert_eq!(
        got,
        [
            r#"{"checkpoint_diff":{"last_op_id":"2","updated_buckets":[],"removed_buckets":[]}}"#,
            r#"{"checkpoint_complete":{"last_op_id":"2"}}"#
        ]
    );
}

/// Data served from the checkpoint bus's ops needs no compaction check: they are the ops as
/// written.
#[test]
fn memory_checkpoints_complete_without_a_check() {
    let mut ops = Ops::default();
    ops.put("a", 1, "1", "x");
    let buckets = [bucket("a", 3)];
    let mut s = SessionState::new(streams(), &[]);
    run(&mut s, &ops, 1, &buckets, None);
    ops.put("a", 2, "2", "x");
    let lines = s
        .checkpoint_from_ops(OpId(2), buckets.to_vec(), None, &new_ops(&ops, 1, 2))
        .unwrap();
    assert!(s.compaction_check().is_none());
    assert!(ndjson(&lines).contains(r#"{"checkpoint_complete":{"last_op_id":"2"}}"#));
}

#[test]
fn changed_stream_errors_resend_a_full_checkpoint_without_resending_data() {
    let mut ops = Ops::default();
    ops.put("1#global[]", 1, "a", "x");
    let mut s = SessionState::new(streams(), &[]);
    run(&mut s, &ops, 1, &[bucket("1#global[]", 3)], None);
    // The same streams again: nothing to tell.
    s.set_streams(streams());
    assert_eq!(run(&mut s, &ops, 1, &[bucket("1#global[]", 3)], None), "");
    // A subscription went over a limit: only a full checkpoint carries the error.
    let mut with_error = streams();
    with_error[0].errors.push(riptide_protocol::StreamError {
        subscription: riptide_protocol::ErrorSubscription::Sub(0),
        message: "too many buckets".into(),
    });
    s.set_streams(with_error);
    ops.put("1#global[]", 2, "b", "y");
    let out = summary(&run(&mut s, &ops, 2, &[bucket("1#global[]", 3)], None));
    assert!(
        out[0].starts_with(r#"{"checkpoint":{"last_op_id":"2""#),
        "{out:?}"
    );
    assert!(out[0].contains("too many buckets"), "{out:?}");
    assert_eq!(out[1], "data 1#global[] 1..2 [2]");
    assert_eq!(out[2], r#"{"checkpoint_complete":{"last_op_id":"2"}}"#);
    // Later checkpoints are diffs again.
    ops.put("1#global[]", 3, "c", "z");
    let out = summary(&run(&mut s, &ops, 3, &[bucket("1#global[]", 3)], None));
    assert!(out[0].starts_with(r#"{"checkpoint_diff""#), "{out:?}");
}
