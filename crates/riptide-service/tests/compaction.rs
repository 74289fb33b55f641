//! Compaction seen from sync streams (docs/protocol.md §3.6): a connected client never sees a
//! checksum mismatch, a client resuming from before a compaction converges, a checkpoint whose
//! buckets were compacted past it while its data was read is not completed, and on Postgres
//! storage commits and streams go on while compaction runs.
//!
//! Clients are [`Model`]s: they apply sync lines the way the official client's Rust core does
//! (`powersync-sqlite-core` `sync/operations.rs`) and check every bucket's checksum on each
//! `checkpoint_complete` / `partial_checkpoint_complete`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::{FakeSource, Harness, Spec, TwoBuckets, row};
use async_trait::async_trait;
use riptide_protocol::{Checksum, Lsn, OpId};
use riptide_service::{ActiveRules, AppState, AuthConfig, KeyStore, ServiceOptions};
use riptide_storage::{
    BatchOperation, BucketChunk, BucketState, BucketStorage, CheckpointEvent, CompactLimits,
    CompactOptions, CompactStats, CompactionCandidate, Deployment, DeploymentId, MemoryStorage,
    PgStorage, StorageBatch, StorageCheckpoint, compact_deployment,
};
use riptide_testkit::{SyncClient, SyncStream, TestDatabase, TestKeys};
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

const LINE_WAIT: Duration = Duration::from_secs(10);

/// One bucket as the client holds it.
#[derive(Debug, Default, Clone)]
struct Held {
    /// `type/id/subkey` → (checksum, `type/id`, data).
    oplog: BTreeMap<String, (Checksum, String, String)>,
    add: Checksum,
    ops: Checksum,
    last_op: OpId,
}

impl Held {
    fn checksum(&self) -> Checksum {
        self.add + self.ops
    }
}

/// A sync client: what it holds, the checkpoint it works towards, and every checksum check.
#[derive(Debug, Default)]
struct Model {
    buckets: BTreeMap<String, Held>,
    /// bucket → (checksum, priority) of the checkpoint being received.
    target: BTreeMap<String, (Checksum, u8)>,
    target_id: Option<OpId>,
    completed: Vec<OpId>,
    mismatches: Vec<String>,
    clears: usize,
    moves: usize,
}

fn checksum_of(v: &Value) -> Checksum {
    let n = v.as_i64().expect("numeric checksum");
    Checksum::from_u32(n as u32)
}

impl Model {
    fn apply(&mut self, line: &Value) {
        if let Some(cp) = line.get("checkpoint") {
            self.target.clear();
            for b in cp["buckets"].as_array().unwrap() {
                self.target.insert(
                    b["bucket"].as_str().unwrap().to_owned(),
                    (
                        checksum_of(&b["checksum"]),
                        b["priority"].as_u64().unwrap() as u8,
                    ),
                );
            }
            self.buckets
                .retain(|name, _| self.target.contains_key(name));
            self.target_id = Some(op_id(&cp["last_op_id"]));
        } else if let Some(diff) = line.get("checkpoint_diff") {
            for b in diff["updated_buckets"].as_array().unwrap() {
                self.target.insert(
                    b["bucket"].as_str().unwrap().to_owned(),
                    (
                        checksum_of(&b["checksum"]),
                        b["priority"].as_u64().unwrap() as u8,
                    ),
                );
            }
            for name in diff["removed_buckets"].as_array().unwrap() {
                let name = name.as_str().unwrap();
                self.target.remove(name);
                self.buckets.remove(name);
            }
            self.target_id = Some(op_id(&diff["last_op_id"]));
        } else if let Some(data) = line.get("data") {
            let held = self
                .buckets
                .entry(data["bucket"].as_str().unwrap().to_owned())
                .or_default();
            for op in data["data"].as_array().unwrap() {
                let checksum = checksum_of(&op["checksum"]);
                match op["op"].as_str().unwrap() {
                    kind @ ("PUT" | "REMOVE") => {
                        let row = format!(
                            "{}/{}",
                            op["object_type"].as_str().unwrap(),
                            op["object_id"].as_str().unwrap()
                        );
                        let key = format!("{row}/{}", op["subkey"].as_str().unwrap());
                        if let Some((old, ..)) = held.oplog.remove(&key) {
                            held.add += old;
                            held.ops = Checksum(held.ops.0 - old.0);
                        }
                        if kind == "PUT" {
                            let data = op["data"].as_str().unwrap().to_owned();
                            held.oplog.insert(key, (checksum, row, data));
                            held.ops += checksum;
                        } else {
                            held.add += checksum;
                        }
                    }
                    "MOVE" => {
                        self.moves += 1;
                        held.add += checksum;
                    }
                    "CLEAR" => {
                        self.clears += 1;
                        held.oplog.clear();
                        held.add = checksum;
                        held.ops = Checksum::ZERO;
                    }
                    other => panic!("unknown op {other}"),
                }
                held.last_op = op_id(&op["op_id"]);
            }
        } else if let Some(done) = line.get("checkpoint_complete") {
            let id = op_id(&done["last_op_id"]);
            self.validate(id, 3);
            self.completed.push(id);
        } else if let Some(done) = line.get("partial_checkpoint_complete") {
            let id = op_id(&done["last_op_id"]);
            self.validate(id, done["priority"].as_u64().unwrap() as u8);
        }
    }

    fn validate(&mut self, id: OpId, priority: u8) {
        for (name, (expected, p)) in &self.target {
            if *p > priority {
                continue;
            }
            let held = self.buckets.entry(name.clone()).or_default();
            if held.checksum() != *expected {
                self.mismatches.push(format!(
                    "{name} at {id:?}: expected {expected:?}, holds {:?}",
                    held.checksum()
                ));
                // The client deletes the bucket and downloads it again.
                self.buckets.remove(name);
                continue;
            }
            held.last_op = id;
        }
    }

    /// `(type, id)` → data of the rows held in `bucket`.
    fn rows(&self, bucket: &str) -> BTreeMap<String, String> {
        self.buckets
            .get(bucket)
            .map(|h| {
                h.oplog
                    .iter()
                    .map(|(_, (_, row, data))| (row.clone(), data.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The request body of a client resuming from what it holds.
    fn resume_body(&self) -> Value {
        let buckets: Vec<Value> = self
            .buckets
            .iter()
            .map(|(name, h)| json!({"name": name, "after": h.last_op.0.to_string()}))
            .collect();
        json!({ "buckets": buckets })
    }
}

fn op_id(v: &Value) -> OpId {
    OpId(v.as_str().unwrap().parse().unwrap())
}

/// Applies lines until a `checkpoint_complete` for at least `at` (every line checked).
async fn complete_at(stream: &mut SyncStream, model: &mut Model, at: OpId) {
    let deadline = Instant::now() + LINE_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = stream
            .next_line(left)
            .await
            .unwrap_or_else(|| panic!("no checkpoint_complete at {at:?}; model {model:?}"));
        model.apply(&line);
        if line.get("checkpoint_complete").is_some() && model.completed.last() >= Some(&at) {
            return;
        }
    }
}

/// `count` upserts of rows `r0..` in `global[]` with a version in their data.
fn churn(count: usize, version: u32) -> Vec<BatchOperation> {
    (0..count)
        .map(|i| {
            let mut op = row("items", &format!("r{i}"), "global[]");
            if let BatchOperation::Row(r) = &mut op
                && let riptide_storage::RowChange::Upsert { buckets, .. } = &mut r.change
            {
                buckets[0].data = json!({"id": format!("r{i}"), "version": version}).to_string();
            }
            op
        })
        .collect()
}

fn expected_rows(count: usize, version: u32) -> BTreeMap<String, String> {
    (0..count)
        .map(|i| {
            (
                format!("items/r{i}"),
                json!({"id": format!("r{i}"), "version": version}).to_string(),
            )
        })
        .collect()
}

async fn compact(storage: &dyn BucketStorage, deployment: DeploymentId) -> CompactStats {
    compact_deployment(storage, deployment, &CompactOptions::default())
        .await
        .unwrap()
}

/// A connected client keeps validating every checkpoint while the buckets it holds are
/// compacted between commits; a client that stopped before the compaction and resumes from
/// its positions converges too (it receives the CLEAR).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_and_resuming_clients_converge_across_compaction() {
    let mut h = Harness::with(0, |_| {}).await;
    let (addr, _server) = h.serve().await;
    let endpoint = format!("http://{addr}");
    let live_client = SyncClient::new(&endpoint, h.token("u1"));
    let mut live = Model::default();
    let mut stream = live_client.stream(json!({})).await;
    let first = h.commit(churn(20, 0)).await.checkpoint.op_id;
    complete_at(&mut stream, &mut live, first).await;

    // A second client syncs, then goes away holding version 0.
    let mut resumed = Model::default();
    {
        let mut s = SyncClient::new(&endpoint, h.token("u2"))
            .stream(json!({}))
            .await;
        complete_at(&mut s, &mut resumed, first).await;
    }

    for version in 1..=5 {
        let last = h.commit(churn(20, version)).await.checkpoint.op_id;
        let done = compact(&h.storage, h.deployment).await;
        assert!(done.ops_removed > 0, "{done:?}");
        complete_at(&mut stream, &mut live, last).await;
    }
    // One more commit after the last compaction: the stream serves it on top of what it holds.
    let last = h.commit(churn(3, 6)).await.checkpoint.op_id;
    complete_at(&mut stream, &mut live, last).await;
    let mut expected = expected_rows(20, 5);
    expected.extend(expected_rows(3, 6));
    assert_eq!(live.rows("global[]"), expected);
    assert_eq!(live.mismatches, Vec::<String>::new());

    // The resumed client asks for ops after its old position: the bucket starts with a CLEAR.
    let body = resumed.resume_body();
    assert_eq!(body["buckets"][0]["after"], first.0.to_string());
    let mut s = SyncClient::new(&endpoint, h.token("u2")).stream(body).await;
    complete_at(&mut s, &mut resumed, last).await;
    assert_eq!(resumed.rows("global[]"), expected);
    assert_eq!(resumed.mismatches, Vec::<String>::new());
    assert_eq!(resumed.clears, 1, "{resumed:?}");

    // A fresh client downloads one CLEAR and the live rows (at most a MOVE more per row).
    let mut fresh = Model::default();
    let mut s = SyncClient::new(&endpoint, h.token("u3"))
        .stream(json!({}))
        .await;
    complete_at(&mut s, &mut fresh, last).await;
    assert_eq!(fresh.rows("global[]"), expected);
    assert!(fresh.mismatches.is_empty());
    let states = h
        .storage
        .bucket_states(h.deployment, last, &["global[]".to_owned()])
        .await
        .unwrap();
    assert!(states["global[]"].count <= 1 + 20 + 3, "{states:?}");
}

/// Memory storage that, at the first `bucket_data` read after [`CompactDuringRead::arm`],
/// commits a new change and compacts the bucket at that newer checkpoint before answering: the
/// read sees ops rewritten for a checkpoint past the one the stream serves.
struct CompactDuringRead {
    inner: MemoryStorage,
    events: broadcast::Sender<CheckpointEvent>,
    armed: AtomicBool,
    deployment: std::sync::Mutex<Option<DeploymentId>>,
}

type StorageResult<T> = riptide_storage::Result<T>;

#[async_trait]
impl BucketStorage for CompactDuringRead {
    async fn migrate(&self) -> StorageResult<()> {
        self.inner.migrate().await
    }
    async fn active_deployment(&self) -> StorageResult<Option<Deployment>> {
        self.inner.active_deployment().await
    }
    async fn processing_deployment(&self) -> StorageResult<Option<Deployment>> {
        self.inner.processing_deployment().await
    }
    async fn deployment(&self, id: DeploymentId) -> StorageResult<Deployment> {
        self.inner.deployment(id).await
    }
    async fn create_deployment(&self, content: &str, prefix: &str) -> StorageResult<Deployment> {
        self.inner.create_deployment(content, prefix).await
    }
    async fn activate(&self, id: DeploymentId) -> StorageResult<()> {
        self.inner.activate(id).await
    }
    async fn terminate(&self, id: DeploymentId) -> StorageResult<()> {
        self.inner.terminate(id).await
    }
    async fn reset_snapshot(&self, id: DeploymentId) -> StorageResult<()> {
        self.inner.reset_snapshot(id).await
    }
    async fn mark_snapshot_done(&self, id: DeploymentId) -> StorageResult<()> {
        self.inner.mark_snapshot_done(id).await
    }
    async fn complete_snapshot(&self, id: DeploymentId) -> StorageResult<()> {
        self.inner.complete_snapshot(id).await
    }
    async fn begin_batch(&self, id: DeploymentId) -> StorageResult<Box<dyn StorageBatch>> {
        self.inner.begin_batch(id).await
    }
    async fn current_rows(
        &self,
        id: DeploymentId,
        source_table: &str,
        keys: &[Vec<u8>],
    ) -> StorageResult<HashMap<Vec<u8>, Vec<u8>>> {
        self.inner.current_rows(id, source_table, keys).await
    }
    async fn checkpoint(&self, id: DeploymentId) -> StorageResult<Option<StorageCheckpoint>> {
        self.inner.checkpoint(id).await
    }
    async fn parameter_results(
        &self,
        id: DeploymentId,
        lookups: &[Vec<u8>],
    ) -> StorageResult<HashMap<Vec<u8>, Vec<Vec<u8>>>> {
        self.inner.parameter_results(id, lookups).await
    }
    async fn bucket_states(
        &self,
        id: DeploymentId,
        checkpoint: OpId,
        buckets: &[String],
    ) -> StorageResult<HashMap<String, BucketState>> {
        self.inner.bucket_states(id, checkpoint, buckets).await
    }
    async fn bucket_data(
        &self,
        id: DeploymentId,
        checkpoint: OpId,
        buckets: &[(String, OpId)],
        limit: usize,
    ) -> StorageResult<Vec<BucketChunk>> {
        if self.armed.swap(false, Ordering::SeqCst) {
            let mut batch = self.inner.begin_batch(id).await?;
            batch.save(churn(4, 99)).await?;
            let event = batch.commit(Lsn(10_000)).await?;
            let _ = self.events.send(event);
            compact_deployment(&self.inner, id, &CompactOptions::default()).await?;
            *self.deployment.lock().unwrap() = Some(id);
        }
        self.inner.bucket_data(id, checkpoint, buckets, limit).await
    }
    async fn compaction_candidates(
        &self,
        id: DeploymentId,
        min_superseded: i64,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<Vec<CompactionCandidate>> {
        self.inner
            .compaction_candidates(id, min_superseded, after, limit)
            .await
    }
    async fn compact_bucket(
        &self,
        id: DeploymentId,
        bucket: &str,
        limits: &CompactLimits,
    ) -> StorageResult<CompactStats> {
        self.inner.compact_bucket(id, bucket, limits).await
    }
    async fn compaction_points(
        &self,
        id: DeploymentId,
        buckets: &[String],
    ) -> StorageResult<HashMap<String, OpId>> {
        self.inner.compaction_points(id, buckets).await
    }
    async fn create_write_checkpoint(
        &self,
        user_id: &str,
        client_id: &str,
        lsn: Lsn,
    ) -> StorageResult<OpId> {
        self.inner
            .create_write_checkpoint(user_id, client_id, lsn)
            .await
    }
    async fn request_checkpoint(
        &self,
        user_id: &str,
        client_id: &str,
        requested: OpId,
        lsn: Lsn,
    ) -> StorageResult<OpId> {
        self.inner
            .request_checkpoint(user_id, client_id, requested, lsn)
            .await
    }
    async fn write_checkpoint(
        &self,
        user_id: &str,
        client_id: &str,
        lsn: Lsn,
    ) -> StorageResult<Option<OpId>> {
        self.inner.write_checkpoint(user_id, client_id, lsn).await
    }
}

/// docs/protocol.md §3.6: the stream serving checkpoint C reads data that a compaction at a
/// newer checkpoint rewrote (a MOVE whose superseding PUT is past C, a CLEAR). It must not
/// complete C; it sends the newer checkpoint, completes that, and the client holds the newest
/// rows without a checksum mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_compacted_past_while_read_is_not_completed() {
    let layer: Arc<std::sync::Mutex<Option<Arc<CompactDuringRead>>>> = Arc::default();
    let made = layer.clone();
    // Four rows written three times: the checkpoint the new client gets holds superseded ops.
    let mut snapshot = churn(4, 0);
    snapshot.extend(churn(4, 1));
    snapshot.extend(churn(4, 2));
    let h = Harness::start(
        Spec::new(Arc::new(TwoBuckets), snapshot),
        |_| {},
        move |inner, events| {
            let storage = Arc::new(CompactDuringRead {
                inner,
                events,
                armed: AtomicBool::new(true),
                deployment: std::sync::Mutex::new(None),
            });
            *made.lock().unwrap() = Some(storage.clone());
            storage
        },
    )
    .await;
    let storage = layer.lock().unwrap().clone().unwrap();
    let (addr, _server) = h.serve().await;
    let mut model = Model::default();
    let mut stream = SyncClient::new(format!("http://{addr}"), h.token("u1"))
        .stream(json!({}))
        .await;
    let first = stream.next_line(LINE_WAIT).await.unwrap();
    model.apply(&first);
    // The snapshot wrote ops 1..=12; the armed read commits 13..=16 and compacts at 16.
    assert_eq!(first["checkpoint"]["last_op_id"], "12");
    let mut lines = Vec::new();
    let deadline = Instant::now() + LINE_WAIT;
    while model.completed.is_empty() {
        let line = stream
            .next_line(deadline.saturating_duration_since(Instant::now()))
            .await
            .expect("a checkpoint_complete");
        model.apply(&line);
        lines.push(line);
    }
    assert!(
        storage.deployment.lock().unwrap().is_some(),
        "the read was compacted"
    );
    assert_eq!(
        model.completed,
        vec![OpId(16)],
        "checkpoint 12 must not complete: {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.get("checkpoint_diff").is_some()),
        "{lines:#?}"
    );
    assert_eq!(model.mismatches, Vec::<String>::new());
    assert_eq!(model.rows("global[]"), expected_rows(4, 99));
    let metrics = h.state.metrics().render(0);
    let values = riptide_service::metrics::parse_exposition(&metrics);
    assert_eq!(
        values[riptide_service::metrics::names::SYNC_CHECKPOINTS_INVALIDATED],
        1.0
    );
}

/// The admin API compacts the active deployment on request and reports what it did; the
/// compaction metrics count it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_compacts_now() {
    let mut h = Harness::with(0, |o| {
        o.api_tokens = riptide_service::ApiTokens::new(["admin-token".to_owned()]);
    })
    .await;
    for version in 0..3 {
        h.commit(churn(10, version)).await;
    }
    let (addr, _server) = h.serve().await;
    let http = riptide_testkit::http();
    let url = format!("http://{addr}/api/compact/v1/run");
    let denied = http.post(&url).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let answer: Value = http
        .post(&url)
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let data = &answer["data"];
    assert_eq!(data["deployment"], h.deployment);
    assert_eq!(data["buckets"], 1);
    assert_eq!(
        data["ops_moved"], 0,
        "every superseded op is in the leading run"
    );
    assert_eq!(
        data["ops_removed"], 19,
        "20 superseded ops became one CLEAR"
    );
    assert!(data["bytes_reclaimed"].as_u64().unwrap() > 0);
    let bad = http
        .post(&url)
        .bearer_auth("admin-token")
        .body(r#"{"nope": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let values_text = h.state.metrics().render(0);
    let values = riptide_service::metrics::parse_exposition(&values_text);
    use riptide_service::metrics::names;
    assert_eq!(values[names::COMPACTION_RUNS], 1.0);
    assert_eq!(values[names::COMPACTION_BUCKETS], 1.0);
    assert_eq!(values[names::COMPACTION_OPS_REMOVED], 19.0);
    assert!(values[names::COMPACTION_BYTES_RECLAIMED] > 0.0);
    assert!(values_text.contains("riptide_compaction_duration_seconds_count 1"));
}

/// The background compactor compacts a bucket once its superseded ops reach the threshold,
/// within about one interval, and leaves buckets below it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_compactor_follows_churn() {
    let mut h = Harness::with(0, |_| {}).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = riptide_service::compactor::spawn(
        &h.state,
        riptide_service::CompactorConfig {
            threshold: 30,
            interval: Duration::from_millis(50),
            ..riptide_service::CompactorConfig::default()
        },
        cancel.clone(),
    );
    // 10 rows written 3 times: 20 superseded ops, below the threshold.
    for version in 0..3 {
        h.commit(churn(10, version)).await;
    }
    let user = |v: u32| {
        (0..10)
            .map(|i| {
                let mut op = row("items", &format!("u{i}"), "user[\"u1\"]");
                if let BatchOperation::Row(r) = &mut op
                    && let riptide_storage::RowChange::Upsert { buckets, .. } = &mut r.change
                {
                    buckets[0].data = json!({"id": format!("u{i}"), "v": v}).to_string();
                }
                op
            })
            .collect::<Vec<_>>()
    };
    // 10 rows in another bucket written 5 times: 40 superseded.
    for version in 0..5 {
        h.commit(user(version)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = h
            .storage
            .compaction_candidates(h.deployment, 1, None, 10)
            .await
            .unwrap();
        let names: Vec<&str> = left.iter().map(|c| c.bucket.as_str()).collect();
        if names == ["global[]"] {
            break;
        }
        assert!(Instant::now() < deadline, "not compacted: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let states = h
        .storage
        .bucket_states(
            h.deployment,
            h.storage
                .checkpoint(h.deployment)
                .await
                .unwrap()
                .unwrap()
                .op_id,
            &["global[]".to_owned(), "user[\"u1\"]".to_owned()],
        )
        .await
        .unwrap();
    assert_eq!(
        states["global[]"].count, 30,
        "below the threshold: untouched"
    );
    assert_eq!(states["user[\"u1\"]"].count, 11, "one CLEAR and ten PUTs");
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

/// On Postgres storage, commits (the replicator's write path) and streams go on while the
/// buckets they use are compacted over and over in small transactions: every commit reaches the
/// connected stream promptly, no checkpoint fails its checksum check, and the final rows are
/// the last written. Compaction and replication never wait for each other for long: a bucket
/// an open batch is writing is left for the next round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_commits_and_streams_go_on_during_compaction() {
    let db = TestDatabase::create().await;
    let storage = PgStorage::connect(&db.url()).await.unwrap();
    storage.migrate().await.unwrap();
    let storage = Arc::new(storage);
    let dep = storage
        .create_deployment("rules", "riptide_")
        .await
        .unwrap();
    let mut batch = storage.begin_batch(dep.id).await.unwrap();
    batch.save(churn(200, 0)).await.unwrap();
    batch.commit(Lsn(10)).await.unwrap();
    storage.mark_snapshot_done(dep.id).await.unwrap();
    storage.activate(dep.id).await.unwrap();

    let keys = TestKeys::generate();
    let keystore = KeyStore::new(AuthConfig {
        jwks: Some(keys.jwks()),
        audience: vec![keys.audience.clone()],
        ..AuthConfig::default()
    })
    .unwrap();
    let (events, _) = broadcast::channel(1024);
    let (_rules_tx, rules_rx) = watch::channel(Some(ActiveRules {
        deployment: dep.id,
        rules: Arc::new(TwoBuckets),
    }));
    let state = AppState::new(
        ServiceOptions::new(keystore),
        storage.clone(),
        rules_rx,
        events.clone(),
        Arc::new(FakeSource::default()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = riptide_service::router(state);
    let _server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let endpoint = format!("http://{addr}");

    let mut model = Model::default();
    let mut stream = SyncClient::new(&endpoint, keys.token("u1", 300, json!({})))
        .stream(json!({}))
        .await;
    let start = storage.checkpoint(dep.id).await.unwrap().unwrap().op_id;
    complete_at(&mut stream, &mut model, start).await;

    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let compactor = tokio::spawn({
        let (storage, stop, rounds) = (storage.clone(), stop.clone(), rounds.clone());
        async move {
            let options = CompactOptions {
                limits: CompactLimits {
                    ops_per_transaction: 50,
                    scan_page: 200,
                    ..CompactLimits::default()
                },
                ..CompactOptions::default()
            };
            let mut total = CompactStats::default();
            while !stop.load(Ordering::Relaxed) {
                total += compact_deployment(storage.as_ref(), dep.id, &options)
                    .await
                    .unwrap();
                rounds.fetch_add(1, Ordering::Relaxed);
                // Pace the rounds (not a wait for anything).
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            total
        }
    });

    let mut slowest = Duration::ZERO;
    let mut last = start;
    for version in 1..=30u32 {
        let began = Instant::now();
        let mut batch = storage.begin_batch(dep.id).await.unwrap();
        batch.save(churn(200, version)).await.unwrap();
        let event = batch.commit(Lsn(10 + u64::from(version))).await.unwrap();
        last = event.checkpoint.op_id;
        let _ = events.send(event);
        complete_at(&mut stream, &mut model, last).await;
        slowest = slowest.max(began.elapsed());
    }
    // Let compaction catch up with the last commits, then stop it.
    let seen = rounds.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    while rounds.load(Ordering::Relaxed) < seen + 2 {
        assert!(Instant::now() < deadline, "compaction stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let total = compactor.await.unwrap();
    assert!(total.ops_removed > 1_000, "{total:?}");
    assert!(
        slowest < Duration::from_secs(5),
        "a commit took {slowest:?} to reach the stream during compaction"
    );
    assert_eq!(model.mismatches, Vec::<String>::new());
    assert_eq!(model.rows("global[]"), expected_rows(200, 30));

    // A fresh client gets the compacted bucket: about one op per live row.
    let mut fresh = Model::default();
    let mut s = SyncClient::new(&endpoint, keys.token("u2", 300, json!({})))
        .stream(json!({}))
        .await;
    complete_at(&mut s, &mut fresh, last).await;
    assert_eq!(fresh.rows("global[]"), expected_rows(200, 30));
    let count = storage
        .bucket_states(dep.id, last, &["global[]".to_owned()])
        .await
        .unwrap()["global[]"]
        .count;
    assert_eq!(count, 201, "one CLEAR and 200 PUTs");
    eprintln!(
        "compaction rounds {}, {total:?}, slowest commit-to-stream {slowest:?}",
        rounds.load(Ordering::Relaxed)
    );
}
