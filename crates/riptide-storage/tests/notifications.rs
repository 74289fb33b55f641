//! Notifications across processes on a real Postgres: what commits send, and what a
//! [`CheckpointListener`] of another "node" (another `PgStorage` on the same database) hands
//! on — lists, the too-many path, its own node skipped, catch-up after its connection is
//! terminated.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use riptide_pg::Backoff;
use riptide_protocol::{Lsn, OpId};
use riptide_storage::notifications::{Notice, NoticeBody};
use riptide_storage::{
    BucketStorage, CheckpointEvent, CheckpointListener, DeploymentId, DeploymentState,
    NotificationSink, PgStorage,
};
use riptide_testkit::TestDatabase;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::suite;

const WAIT: Duration = Duration::from_secs(20);

/// What the sink was handed.
#[derive(Debug)]
enum Got {
    Checkpoint(CheckpointEvent, Option<SystemTime>),
    WriteCheckpoint(String, String, OpId),
    Deployment(DeploymentId, DeploymentState),
    Bad,
    Reconnecting,
    Listening,
}

struct Sink(mpsc::UnboundedSender<Got>);

impl NotificationSink for Sink {
    fn checkpoint(&self, event: CheckpointEvent, sent_at: Option<SystemTime>) {
        let _ = self.0.send(Got::Checkpoint(event, sent_at));
    }
    fn write_checkpoint(&self, user: String, client: String, id: OpId, _: Option<SystemTime>) {
        let _ = self.0.send(Got::WriteCheckpoint(user, client, id));
    }
    fn deployment(&self, id: DeploymentId, state: DeploymentState, _: Option<SystemTime>) {
        let _ = self.0.send(Got::Deployment(id, state));
    }
    fn bad_notification(&self) {
        let _ = self.0.send(Got::Bad);
    }
    fn reconnecting(&self) {
        let _ = self.0.send(Got::Reconnecting);
    }
    fn listening(&self) {
        let _ = self.0.send(Got::Listening);
    }
}

/// Two nodes on one storage database: `writer` commits, `reader` runs the listener.
struct Nodes {
    writer: PgStorage,
    reader: PgStorage,
    rx: mpsc::UnboundedReceiver<Got>,
    cancel: CancellationToken,
    db: TestDatabase,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn nodes(backoff: Backoff) -> Nodes {
    let db = TestDatabase::create().await;
    let writer = PgStorage::connect(&db.url())
        .await
        .unwrap()
        .with_node_id("writer");
    writer.migrate().await.unwrap();
    let reader = PgStorage::connect(&db.url())
        .await
        .unwrap()
        .with_node_id("reader");
    let (tx, rx) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    CheckpointListener::new(&db.connection(), &reader)
        .with_backoff(backoff)
        .spawn(Arc::new(Sink(tx)), cancel.clone());
    let mut nodes = Nodes {
        writer,
        reader,
        rx,
        cancel,
        db,
    };
    nodes.until(|g| matches!(g, Got::Listening)).await;
    nodes
}

impl Nodes {
    /// The next thing handed on that `pick` accepts (others are dropped).
    async fn until(&mut self, pick: impl Fn(&Got) -> bool) -> Got {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .expect("nothing handed on in time")
                .expect("listener gone");
            if pick(&got) {
                return got;
            }
        }
    }

    async fn next_event(&mut self) -> (CheckpointEvent, Option<SystemTime>) {
        match self.until(|g| matches!(g, Got::Checkpoint(..))).await {
            Got::Checkpoint(e, at) => (e, at),
            _ => unreachable!(),
        }
    }

    /// Nothing more is handed on for a moment (what the writer did is all there).
    async fn assert_quiet(&mut self) {
        if let Ok(Some(got)) =
            tokio::time::timeout(Duration::from_millis(300), self.rx.recv()).await
        {
            panic!("unexpected {got:?}");
        }
    }
}

async fn active_deployment(s: &dyn BucketStorage) -> DeploymentId {
    let id = suite::new_deployment(s).await;
    s.complete_snapshot(id).await.unwrap();
    id
}

fn with_lookup(key: &str, bucket: &str, lookup: &str) -> riptide_storage::BatchOperation {
    suite::upsert_with("public.t", key, &[(bucket, key, "{}")], &[(lookup, "r")])
}

fn upserts(n: usize, bucket: impl Fn(usize) -> String) -> Vec<riptide_storage::BatchOperation> {
    (0..n)
        .map(|i| {
            let b = bucket(i);
            suite::upsert("public.t", &format!("k{i}"), &[(&b, "1", "{}")])
        })
        .collect()
}

/// What a commit sends, as the listener parses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_notifies() {
    use futures::StreamExt;
    let db = TestDatabase::create().await;
    let storage = PgStorage::connect(&db.url()).await.unwrap();
    storage.migrate().await.unwrap();
    let (client, mut conn) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
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
    let before = SystemTime::now() - Duration::from_secs(5);
    suite::commit(
        s,
        id,
        vec![suite::upsert("t", "k", &[("a", "1", "{}")])],
        0x1_0000_0010,
    )
    .await;
    let payload = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    let notice = Notice::parse(&payload).unwrap();
    assert_eq!(notice.node, storage.node_id());
    assert!(
        notice.sent_at.unwrap() > before,
        "database clock in the payload"
    );
    let NoticeBody::Checkpoint(c) = notice.body else {
        panic!("not a checkpoint: {payload}");
    };
    assert_eq!(c.deployment, id);
    assert_eq!(c.previous, OpId(0));
    assert_eq!(c.checkpoint.op_id, OpId(1));
    assert_eq!(c.checkpoint.lsn, Lsn(0x1_0000_0010));
    assert_eq!(c.changed_buckets, Some(vec!["a".to_owned()]));
    assert_eq!(c.changed_lookups, Some(Vec::new()));
}

/// Another node's commits, write checkpoints and activations are handed on with their lists;
/// the listener's own node's are not, though they still count as seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_nodes_are_handed_on_and_its_own_skipped() {
    let mut n = nodes(Backoff::new(
        Duration::from_millis(50),
        Duration::from_secs(1),
    ))
    .await;
    let w: &dyn BucketStorage = &n.writer.clone();
    let r: &dyn BucketStorage = &n.reader.clone();
    let id = active_deployment(w).await;
    assert!(matches!(
        n.until(|g| matches!(g, Got::Deployment(..))).await,
        Got::Deployment(d, DeploymentState::Active) if d == id
    ));

    let e1 = suite::commit(w, id, vec![with_lookup("k1", "a", "l1")], 10).await;
    assert_eq!(e1.changed_lookups, vec![b"l1".to_vec()]);
    let (got, sent_at) = n.next_event().await;
    assert_eq!(got.checkpoint, e1.checkpoint);
    assert_eq!(got.previous, e1.previous);
    assert_eq!(got.changed_buckets, e1.changed_buckets);
    assert_eq!(got.changed_lookups, e1.changed_lookups);
    assert!(!got.all_lookups_changed);
    assert!(e1.ops.is_some());
    assert_eq!(
        got.ops.as_deref(),
        e1.ops.as_deref(),
        "a small commit's ops, read once by the listener"
    );
    assert!(sent_at.is_some());

    // The reader's own commit is not handed on; the writer's next one follows on from it.
    let own = suite::commit(r, id, vec![with_lookup("k2", "b", "l2")], 20).await;
    let e3 = suite::commit(w, id, vec![with_lookup("k3", "c", "l3")], 30).await;
    let (got, _) = n.next_event().await;
    assert_eq!(got.previous, own.checkpoint.op_id);
    assert_eq!(got.checkpoint, e3.checkpoint);

    w.create_write_checkpoint("u1", "c1", Lsn(5)).await.unwrap();
    r.create_write_checkpoint("u2", "c2", Lsn(5)).await.unwrap();
    w.request_checkpoint("u3", "c3", OpId(9), Lsn(5))
        .await
        .unwrap();
    let got = n.until(|g| matches!(g, Got::WriteCheckpoint(..))).await;
    assert!(matches!(got, Got::WriteCheckpoint(u, c, OpId(1)) if u == "u1" && c == "c1"));
    let got = n.until(|g| matches!(g, Got::WriteCheckpoint(..))).await;
    assert!(matches!(got, Got::WriteCheckpoint(u, c, OpId(9)) if u == "u3" && c == "c3"));

    // A replacement deployment activated by the writer; its predecessor terminated.
    let next = active_deployment(w).await;
    let got = n.until(|g| matches!(g, Got::Deployment(..))).await;
    assert!(matches!(got, Got::Deployment(d, DeploymentState::Active) if d == next));
    w.terminate(id).await.unwrap();
    let got = n.until(|g| matches!(g, Got::Deployment(..))).await;
    assert!(matches!(got, Got::Deployment(d, DeploymentState::Terminated) if d == id));
    n.assert_quiet().await;

    // A payload from something else on the channel is counted, not fatal.
    let client = n.db.client().await;
    client
        .execute(
            "SELECT pg_notify($1, $2)",
            &[&riptide_storage::CHECKPOINT_CHANNEL, &"{\"kind\":\"boom\"}"],
        )
        .await
        .unwrap();
    assert!(matches!(n.until(|_| true).await, Got::Bad));
    let e = suite::commit(
        w,
        next,
        vec![suite::upsert("t", "k", &[("d", "1", "{}")])],
        40,
    )
    .await;
    assert_eq!(n.next_event().await.0.checkpoint, e.checkpoint);
}

/// A commit whose lists do not fit a notification: the buckets are read back from storage,
/// the lookups are unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_too_large_to_list_reads_its_buckets_from_storage() {
    let mut n = nodes(Backoff::new(
        Duration::from_millis(50),
        Duration::from_secs(1),
    ))
    .await;
    let w: &dyn BucketStorage = &n.writer.clone();
    let id = active_deployment(w).await;
    suite::commit(w, id, upserts(3, |i| format!("old{i}")), 10).await;
    n.next_event().await;

    // 1,000 buckets with long names do not fit; the (no) lookups do.
    let long = |i: usize| format!("{}{i}", "b".repeat(40));
    let e = suite::commit(w, id, upserts(1_000, long), 20).await;
    let (got, _) = n.next_event().await;
    assert_eq!(got.checkpoint, e.checkpoint);
    let sorted = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(sorted(&got.changed_buckets), sorted(&e.changed_buckets));
    assert!(got.ops.is_none());
    assert_eq!(got.changed_lookups, e.changed_lookups);
    assert!(!got.all_lookups_changed);

    // Too many lookups as well: any lookup may have changed.
    let ops = (0..2_000)
        .map(|i| {
            let lookup = format!("{}{i}", "l".repeat(20));
            suite::upsert_with(
                "public.t",
                &format!("p{i}"),
                &[("x", &i.to_string(), "{}")],
                &[(&lookup, "r")],
            )
        })
        .collect();
    let e = suite::commit(w, id, ops, 30).await;
    let (got, _) = n.next_event().await;
    assert_eq!(got.checkpoint, e.checkpoint);
    assert_eq!(got.changed_buckets, vec!["x".to_owned()]);
    assert!(got.all_lookups_changed);
    assert!(
        got.ops.is_none(),
        "2,000 ops are more than an event carries"
    );
    assert!(got.changed_lookups.is_empty());
}

/// The listener's connection terminated: what committed meanwhile is delivered as one event
/// from the last one it delivered, and write checkpoints created meanwhile again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_while_the_connection_was_gone_are_caught_up() {
    // Reconnecting waits long enough for the commits below to land while it is gone.
    let mut n = nodes(Backoff::fixed(Duration::from_secs(5))).await;
    let w: &dyn BucketStorage = &n.writer.clone();
    let id = active_deployment(w).await;
    let first = suite::commit(w, id, upserts(1, |_| "a".into()), 10).await;
    assert_eq!(n.next_event().await.0.checkpoint, first.checkpoint);

    let admin = n.db.client().await;
    let killed = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1",
            &[&riptide_storage::LISTENER_APPLICATION_NAME],
        )
        .await
        .unwrap();
    assert_eq!(killed, 1);
    n.until(|g| matches!(g, Got::Reconnecting)).await;
    suite::commit(w, id, upserts(1, |_| "b".into()), 20).await;
    let last = suite::commit(w, id, upserts(1, |_| "c".into()), 30).await;
    let wc = w.create_write_checkpoint("u", "c", Lsn(25)).await.unwrap();

    // Caught up before it says it listens again.
    let mut caught_up = Vec::new();
    loop {
        match n.until(|_| true).await {
            Got::Listening => break,
            got => caught_up.push(got),
        }
    }
    let [
        Got::Checkpoint(got, _),
        Got::WriteCheckpoint(user, client, i),
    ] = &caught_up[..]
    else {
        panic!("caught up with {caught_up:?}");
    };
    assert_eq!(
        got.previous, first.checkpoint.op_id,
        "follows on from the last delivered"
    );
    assert_eq!(got.checkpoint, last.checkpoint);
    assert!(got.all_lookups_changed);
    assert!(got.changed_buckets.contains(&"b".to_owned()));
    assert!(got.changed_buckets.contains(&"c".to_owned()));
    assert_eq!((user.as_str(), client.as_str(), *i), ("u", "c", wc));

    // And it listens again.
    let after = suite::commit(w, id, upserts(1, |_| "d".into()), 40).await;
    let (got, _) = n.next_event().await;
    assert_eq!(got.previous, last.checkpoint.op_id);
    assert_eq!(got.checkpoint, after.checkpoint);
}
