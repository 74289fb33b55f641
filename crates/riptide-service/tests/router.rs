//! The router in process (`tower::ServiceExt::oneshot`) over `MemoryStorage`, hand-written
//! rules and a fake source database.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::{Harness, Spec};
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use futures::StreamExt;
use riptide_protocol::{Lsn, OpId};
use riptide_rules::{BucketDescription, RequestParameters, SqliteValue};
use riptide_service::{ActiveRules, BucketRules, Limits, ServiceOptions, router};
use riptide_storage::{
    BatchOperation, BucketChunk, BucketRow, BucketState, BucketStorage, CheckpointEvent,
    Deployment, DeploymentId, MemoryStorage, ParameterRow, RowChange, RowOperation, StorageBatch,
    StorageCheckpoint,
};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tower::ServiceExt;

/// Buckets: `global[]` for everyone (priority 3), `user["<sub>"]` (priority 1) and one
/// `lists["<id>"]` per result of the lookup `lists/<sub>`. User `nobody` gets no bucket.
#[derive(Default)]
struct TestRules {
    /// Adds `extra[]` for everyone (a redeploy that grants more).
    extra: bool,
}

fn sub(params: &RequestParameters) -> String {
    match &params.user_id {
        SqliteValue::Text(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn lookup_key(user: &str) -> Vec<u8> {
    format!("lists/{user}").into_bytes()
}

impl BucketRules for TestRules {
    fn parameter_lookups(&self, params: &RequestParameters) -> Vec<Vec<u8>> {
        vec![lookup_key(&sub(params))]
    }

    fn resolve_buckets(
        &self,
        params: &RequestParameters,
        results: &HashMap<Vec<u8>, Vec<Vec<u8>>>,
    ) -> Vec<BucketDescription> {
        let user = sub(params);
        if user == "nobody" {
            return Vec::new();
        }
        let mut out = vec![
            BucketDescription {
                name: "global[]".into(),
                definition: "global".into(),
                priority: 3,
            },
            BucketDescription {
                name: format!("user[\"{user}\"]"),
                definition: "by_user".into(),
                priority: 1,
            },
        ];
        if self.extra {
            out.push(BucketDescription {
                name: "extra[]".into(),
                definition: "global".into(),
                priority: 3,
            });
        }
        for r in results.get(&lookup_key(&user)).into_iter().flatten() {
            out.push(BucketDescription {
                name: format!("lists[\"{}\"]", String::from_utf8_lossy(r)),
                definition: "lists".into(),
                priority: 3,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn definitions(&self) -> Vec<(String, u8)> {
        vec![
            ("global".into(), 3),
            ("by_user".into(), 1),
            ("lists".into(), 3),
        ]
    }
}

/// The service of these tests: [`TestRules`], one global row in the snapshot, the source at
/// 0/0.
fn spec() -> Spec {
    let mut spec = Spec::new(
        Arc::new(TestRules::default()),
        vec![row("lists", "g1", &[("global[]", "g1")], vec![])],
    );
    spec.source_lsn = 0;
    spec
}

impl Harness {
    async fn new() -> Harness {
        Self::with_options(|_| {}).await
    }

    async fn with_options(configure: impl FnOnce(&mut ServiceOptions)) -> Harness {
        Harness::start(spec(), configure, |storage, _| Arc::new(storage)).await
    }

    async fn request(&self, req: Request<Body>) -> Response<Body> {
        router(self.state.clone()).oneshot(req).await.unwrap()
    }

    /// `GET /write-checkpoint2.json` as `user` for `client`: the response body.
    async fn write_checkpoint(&self, user: &str, client: &str) -> Value {
        let resp = self
            .request(
                Request::get(format!("/write-checkpoint2.json?client_id={client}"))
                    .header("authorization", format!("Token {}", self.token(user)))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        body_json(resp).await
    }

    /// `POST /sync/stream` with `token` and `body`, whatever the answer.
    async fn post_stream(&self, token: &str, body: &str) -> Response<Body> {
        self.request(
            Request::post("/sync/stream")
                .header("authorization", format!("Token {token}"))
                .body(Body::from(body.to_owned()))
                .unwrap(),
        )
        .await
    }

    async fn stream(&self, user: &str, body: Value) -> Lines {
        let resp = self
            .request(
                Request::post("/sync/stream")
                    .header("authorization", format!("Token {}", self.token(user)))
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
        assert_eq!(resp.headers()["x-accel-buffering"], "no");
        assert_eq!(resp.headers()["cache-control"], "no-cache");
        Lines::new(resp)
    }
}

fn row(
    table: &str,
    id: &str,
    buckets: &[(&str, &str)],
    parameters: Vec<ParameterRow>,
) -> BatchOperation {
    BatchOperation::Row(RowOperation {
        source_table: format!("public.{table}"),
        key: id.as_bytes().to_vec(),
        change: RowChange::Upsert {
            row: id.as_bytes().to_vec(),
            buckets: buckets
                .iter()
                .map(|(bucket, v)| BucketRow {
                    bucket: (*bucket).into(),
                    table: table.into(),
                    id: id.into(),
                    data: json!({"id": id, "v": v}).to_string(),
                })
                .collect(),
            parameters,
        },
    })
}

fn delete(table: &str, id: &str) -> BatchOperation {
    BatchOperation::Row(RowOperation {
        source_table: format!("public.{table}"),
        key: id.as_bytes().to_vec(),
        change: RowChange::Delete,
    })
}

/// NDJSON lines of a streaming response body.
struct Lines {
    body: axum::body::BodyDataStream,
    buf: Vec<u8>,
}

impl Lines {
    fn new(resp: Response<Body>) -> Lines {
        Lines {
            body: resp.into_body().into_data_stream(),
            buf: Vec::new(),
        }
    }

    /// The next line, or `None` at the end of the stream. Panics after 5 s.
    async fn next(&mut self) -> Option<Value> {
        self.next_within(Duration::from_secs(5))
            .await
            .expect("a line within 5 s")
    }

    /// `Err` on timeout, `Ok(None)` at the end of the stream.
    async fn next_within(&mut self, timeout: Duration) -> Result<Option<Value>, ()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Ok(Some(serde_json::from_slice(&line).unwrap()));
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return Err(()),
                Ok(None) => return Ok(None),
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.unwrap()),
            }
        }
    }

    /// Lines up to and including the next `checkpoint_complete`.
    async fn until_complete(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let line = self.next().await.expect("stream open");
            let done = line.get("checkpoint_complete").is_some();
            out.push(line);
            if done {
                return out;
            }
        }
    }

    async fn next_key(&mut self) -> String {
        let line = self.next().await.expect("stream open");
        line.as_object().unwrap().keys().next().unwrap().clone()
    }
}

fn names(buckets: &Value) -> Vec<String> {
    buckets
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bucket"].as_str().unwrap().to_owned())
        .collect()
}

async fn body_json(resp: Response<Body>) -> Value {
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn first_sync_then_diffs() {
    let mut h = Harness::new().await;
    let mut s = h
        .stream("u1", json!({"client_id": "c1", "raw_data": true}))
        .await;

    let cp = s.next().await.unwrap();
    let cp = &cp["checkpoint"];
    assert_eq!(cp["last_op_id"], "1");
    assert_eq!(names(&cp["buckets"]), ["global[]", "user[\"u1\"]"]);
    assert_eq!(cp["buckets"][0]["count"], 1);
    assert_eq!(cp["buckets"][0]["subscriptions"], json!([{"default": 0}]));
    assert_eq!(cp["buckets"][1]["priority"], 1);
    assert_eq!(cp["buckets"][1]["count"], 0);
    assert_eq!(
        cp["streams"],
        json!([
            {"name": "global", "is_default": true, "errors": []},
            {"name": "by_user", "is_default": true, "errors": []},
            {"name": "lists", "is_default": true, "errors": []},
        ])
    );
    // user["u1"] (priority 1) has no ops but is new: its group completes first.
    assert_eq!(
        s.next().await.unwrap(),
        json!({"partial_checkpoint_complete": {"last_op_id": "1", "priority": 1}})
    );
    let data = s.next().await.unwrap();
    assert_eq!(data["data"]["bucket"], "global[]");
    assert_eq!(data["data"]["after"], "0");
    assert_eq!(data["data"]["data"][0]["data"], r#"{"id":"g1","v":"g1"}"#);
    assert_eq!(
        s.next().await.unwrap(),
        json!({"checkpoint_complete": {"last_op_id": "1"}})
    );

    // A change in this user's bucket.
    h.commit(vec![row("todos", "t1", &[("user[\"u1\"]", "a")], vec![])])
        .await;
    let diff = s.next().await.unwrap();
    assert_eq!(diff["checkpoint_diff"]["last_op_id"], "2");
    assert_eq!(
        names(&diff["checkpoint_diff"]["updated_buckets"]),
        ["user[\"u1\"]"]
    );
    assert_eq!(diff["checkpoint_diff"]["removed_buckets"], json!([]));
    let data = s.next().await.unwrap();
    assert_eq!(data["data"]["bucket"], "user[\"u1\"]");
    assert_eq!(data["data"]["after"], "1");
    assert_eq!(data["data"]["next_after"], "2");
    assert_eq!(
        s.next().await.unwrap(),
        json!({"checkpoint_complete": {"last_op_id": "2"}})
    );

    // A change only another user sees: nothing.
    h.commit(vec![row("todos", "t2", &[("user[\"u2\"]", "a")], vec![])])
        .await;
    assert!(s.next_within(Duration::from_millis(300)).await.is_err());

    // The next change of ours carries the new checkpoint id.
    h.commit(vec![row("lists", "g2", &[("global[]", "g2")], vec![])])
        .await;
    let diff = s.next().await.unwrap();
    assert_eq!(diff["checkpoint_diff"]["last_op_id"], "4");
    assert_eq!(s.next_key().await, "data");
    assert_eq!(s.next_key().await, "checkpoint_complete");
}

#[tokio::test]
async fn lookup_changes_add_and_remove_buckets() {
    let mut h = Harness::new().await;
    let mut s = h.stream("u1", json!({})).await;
    assert_eq!(s.until_complete().await.len(), 4);

    // A membership row grants list L1 (parameter lookup) and a list row goes into its bucket.
    let grant = ParameterRow {
        lookup: lookup_key("u1"),
        result: b"L1".to_vec(),
    };
    h.commit(vec![
        row("members", "m1", &[], vec![grant]),
        row("lists", "L1", &[("lists[\"L1\"]", "x")], vec![]),
    ])
    .await;
    let diff = s.next().await.unwrap();
    assert_eq!(
        names(&diff["checkpoint_diff"]["updated_buckets"]),
        ["lists[\"L1\"]"]
    );
    let data = s.next().await.unwrap();
    assert_eq!(data["data"]["bucket"], "lists[\"L1\"]");
    assert_eq!(data["data"]["after"], "0");
    assert_eq!(s.next_key().await, "checkpoint_complete");

    // Revoked: the bucket is removed.
    h.commit(vec![delete("members", "m1")]).await;
    let diff = s.next().await.unwrap();
    assert_eq!(
        diff["checkpoint_diff"]["removed_buckets"],
        json!(["lists[\"L1\"]"])
    );
    assert_eq!(diff["checkpoint_diff"]["updated_buckets"], json!([]));
    assert_eq!(s.next_key().await, "checkpoint_complete");
}

#[tokio::test]
async fn request_positions_and_zero_buckets() {
    let h = Harness::new().await;
    // Known bucket at the current checkpoint: no data, straight to complete.
    let mut s = h
        .stream(
            "u1",
            json!({"buckets": [{"name": "global[]", "after": "1"}]}),
        )
        .await;
    let keys: Vec<String> = s
        .until_complete()
        .await
        .iter()
        .map(|l| l.as_object().unwrap().keys().next().unwrap().clone())
        .collect();
    assert_eq!(
        keys,
        [
            "checkpoint",
            "partial_checkpoint_complete",
            "checkpoint_complete"
        ]
    );

    let mut s = h.stream("nobody", json!({})).await;
    let cp = s.next().await.unwrap();
    assert_eq!(cp["checkpoint"]["buckets"], json!([]));
    assert_eq!(
        s.next().await.unwrap(),
        json!({"checkpoint_complete": {"last_op_id": "1"}})
    );
}

#[tokio::test]
async fn write_checkpoint_reported_once_replicated() {
    let mut h = Harness::new().await;
    let mut s = h.stream("u1", json!({"client_id": "c1"})).await;
    s.until_complete().await;

    // The source is at 0/150 when the write checkpoint is requested.
    h.source.lsn.store(150, Ordering::SeqCst);
    let resp = h
        .request(
            Request::get("/write-checkpoint2.json?client_id=c1")
                .header("authorization", format!("Bearer {}", h.token("u1")))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        body_json(resp).await,
        json!({"data": {"write_checkpoint": "1"}})
    );
    assert_eq!(h.source.pings.load(Ordering::SeqCst), 1);
    // Storage is only at 0/10: not reported yet.
    assert!(s.next_within(Duration::from_millis(300)).await.is_err());

    // Replication passes 0/150 (commit at 0/200) with nothing for this user.
    h.commit(vec![row("todos", "x", &[("user[\"u2\"]", "a")], vec![])])
        .await;
    assert_eq!(
        s.next().await.unwrap(),
        json!({"checkpoint_diff": {"last_op_id": "2", "write_checkpoint": "1", "updated_buckets": [], "removed_buckets": []}})
    );
    assert_eq!(
        s.next().await.unwrap(),
        json!({"checkpoint_complete": {"last_op_id": "2"}})
    );

    // Already covered when requested: reported right away.
    h.source.lsn.store(180, Ordering::SeqCst);
    assert_eq!(
        h.write_checkpoint("u1", "c1").await,
        json!({"data": {"write_checkpoint": "2"}})
    );
    let diff = s.next().await.unwrap();
    assert_eq!(diff["checkpoint_diff"]["write_checkpoint"], "2");
    assert_eq!(s.next_key().await, "checkpoint_complete");

    // Other clients of the same user do not see it.
    let mut other = h.stream("u1", json!({"client_id": "c2"})).await;
    let cp = other.next().await.unwrap();
    assert!(cp["checkpoint"].get("write_checkpoint").is_none(), "{cp}");
}

/// Memory storage that, on the first write-checkpoint read after [`CommitDuringRead::arm`],
/// first commits an empty source transaction at the armed LSN, announces it on the bus and lets
/// the other tasks run: replication landing while a stream handles a write-checkpoint notice,
/// its event dispatched before the stream waits again.
struct CommitDuringRead {
    inner: MemoryStorage,
    events: broadcast::Sender<CheckpointEvent>,
    armed: Mutex<Option<(DeploymentId, Lsn)>>,
}

impl CommitDuringRead {
    fn arm(&self, deployment: DeploymentId, lsn: Lsn) {
        *self.armed.lock().unwrap() = Some((deployment, lsn));
    }
}

type StorageResult<T> = riptide_storage::Result<T>;

#[async_trait]
impl BucketStorage for CommitDuringRead {
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
        self.inner.bucket_data(id, checkpoint, buckets, limit).await
    }
    async fn compaction_candidates(
        &self,
        id: DeploymentId,
        min_superseded: i64,
        after: Option<&str>,
        limit: usize,
    ) -> StorageResult<Vec<riptide_storage::CompactionCandidate>> {
        self.inner
            .compaction_candidates(id, min_superseded, after, limit)
            .await
    }
    async fn compact_bucket(
        &self,
        id: DeploymentId,
        bucket: &str,
        limits: &riptide_storage::CompactLimits,
    ) -> StorageResult<riptide_storage::CompactStats> {
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
        let armed = self.armed.lock().unwrap().take();
        if let Some((deployment, commit_lsn)) = armed {
            let batch = self.inner.begin_batch(deployment).await.unwrap();
            let _ = self.events.send(batch.commit(commit_lsn).await.unwrap());
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
        }
        self.inner.write_checkpoint(user_id, client_id, lsn).await
    }
}

#[tokio::test]
async fn write_checkpoint_committed_while_its_notice_is_handled_is_reported() {
    let layer: Arc<Mutex<Option<Arc<CommitDuringRead>>>> = Arc::default();
    let made = layer.clone();
    let h = Harness::start(
        spec(),
        |_| {},
        move |inner, events| {
            let storage = Arc::new(CommitDuringRead {
                inner,
                events,
                armed: Mutex::new(None),
            });
            *made.lock().unwrap() = Some(storage.clone());
            storage
        },
    )
    .await;
    let storage = layer.lock().unwrap().clone().unwrap();
    let mut s = h.stream("u1", json!({"client_id": "c1"})).await;
    s.until_complete().await;

    // Requested at 0/150; the commit that passes it (0/200, nothing for this stream) lands
    // while the stream reads its write checkpoint for the notice, so that read still misses it
    // and the event is dispatched before the stream asks to be woken by every commit.
    h.source.lsn.store(150, Ordering::SeqCst);
    storage.arm(h.deployment, Lsn(200));
    assert_eq!(
        h.write_checkpoint("u1", "c1").await,
        json!({"data": {"write_checkpoint": "1"}})
    );
    let diff = s
        .next_within(Duration::from_secs(2))
        .await
        .expect("the write checkpoint is reported without another commit")
        .unwrap();
    assert_eq!(diff["checkpoint_diff"]["write_checkpoint"], "1", "{diff}");
    assert_eq!(s.next_key().await, "checkpoint_complete");
    assert!(storage.armed.lock().unwrap().is_none(), "the hook ran");
}

#[tokio::test]
async fn checkpoint_request_endpoint() {
    let h = Harness::new().await;
    let post = |body: &str| {
        Request::post("/sync/checkpoint-request")
            .header("authorization", format!("Token {}", h.token("u1")))
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let resp = h
        .request(post(r#"{"client_id":"c1","checkpoint_request_id":"17"}"#))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        body_json(resp).await,
        json!({"data": {"checkpoint_request_id": "17"}})
    );
    // Lower ids do not go back.
    let resp = h
        .request(post(r#"{"client_id":"c1","checkpoint_request_id":5}"#))
        .await;
    assert_eq!(
        body_json(resp).await,
        json!({"data": {"checkpoint_request_id": "17"}})
    );
    let resp = h
        .request(post(r#"{"client_id":"c1","checkpoint_request_id":-1}"#))
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(resp).await["error"]["code"], "PSYNC_S2001");
}

#[tokio::test]
async fn token_expiry_ends_the_stream() {
    let h = Harness::new().await;
    let token = h.keys.token("u1", 2, json!({}));
    let resp = h.post_stream(&token, "{}").await;
    let mut s = Lines::new(resp);
    let mut keys = Vec::new();
    while let Some(line) = s.next().await {
        keys.push(line);
    }
    assert_eq!(keys.last().unwrap(), &json!({"token_expires_in": 0}));
    assert_eq!(
        keys[0].as_object().unwrap().keys().next().unwrap(),
        "checkpoint"
    );
}

/// A token with less than 40 s left when the stream opens still gets its warning while it is
/// valid (at half its lifetime), so the SDK fetches a new one and restarts before `exp`.
#[tokio::test]
async fn a_short_lived_token_is_warned_about_before_it_expires() {
    let h = Harness::new().await;
    let token = h.keys.token("u1", 6, json!({}));
    let resp = h.post_stream(&token, "{}").await;
    let mut s = Lines::new(resp);
    let mut expiry_lines = Vec::new();
    while let Some(line) = s.next().await {
        if let Some(n) = line.get("token_expires_in").and_then(Value::as_i64) {
            expiry_lines.push(n);
        }
    }
    assert_eq!(expiry_lines.last(), Some(&0), "{expiry_lines:?}");
    let warning = expiry_lines[0];
    assert!(
        (1..=3).contains(&warning),
        "the warning came with {warning} s left: {expiry_lines:?}"
    );
}

#[tokio::test]
async fn keepalive_lines() {
    let h = Harness::with_options(|o| o.keepalive_interval = Duration::from_millis(200)).await;
    let mut s = h.stream("u1", json!({})).await;
    s.until_complete().await;
    let line = s.next().await.unwrap();
    let n = line["token_expires_in"].as_i64().unwrap();
    assert!((250..=300).contains(&n), "{line}");
}

#[tokio::test]
async fn client_disconnect_frees_the_slot() {
    let h = Harness::new().await;
    let mut s = h.stream("u1", json!({})).await;
    s.next().await.unwrap();
    assert_eq!(h.state.open_streams(), 1);
    drop(s);
    riptide_testkit::wait_for("stream slot released", Duration::from_secs(5), || async {
        (h.state.open_streams() == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn errors_before_the_stream() {
    let h = Harness::with_options(|o| {
        o.limits = Limits {
            max_concurrent_connections: 1,
            ..Limits::default()
        }
    })
    .await;
    // No token.
    let resp = h
        .request(
            Request::post("/sync/stream")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body = body_json(resp).await;
    assert_eq!(body["error"]["code"], "PSYNC_S2106");
    assert_eq!(body["error"]["status"], 401);
    // Expired token.
    let expired = h
        .keys
        .sign(&json!({"sub": "u", "aud": h.keys.audience, "iat": 1, "exp": 100}));
    let resp = h.post_stream(&expired, "{}").await;
    assert_eq!(body_json(resp).await["error"]["code"], "PSYNC_S2103");
    // Malformed body.
    for bad in ["{", "[1]", r#"{"buckets":[{"name":"a","after":"-1"}]}"#] {
        let resp = h.post_stream(&h.token("u1"), bad).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body_json(resp).await["error"]["code"], "PSYNC_S2001");
    }
    // Concurrency cap.
    let _first = h.stream("u1", json!({})).await;
    let resp = h.post_stream(&h.token("u1"), "{}").await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body_json(resp).await["error"]["code"], "PSYNC_S2304");
    // Unknown route.
    let resp = h
        .request(Request::get("/nope").body(Body::empty()).unwrap())
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bucket_and_parameter_limits_end_the_stream() {
    let h = Harness::with_options(|o| o.limits.max_buckets_per_connection = 1).await;
    let mut s = h.stream("u1", json!({})).await;
    assert_eq!(s.next().await, None);

    let mut h = Harness::with_options(|o| o.limits.max_parameter_query_results = 1).await;
    h.commit(vec![
        row(
            "members",
            "m1",
            &[],
            vec![ParameterRow {
                lookup: lookup_key("u1"),
                result: b"A".to_vec(),
            }],
        ),
        row(
            "members",
            "m2",
            &[],
            vec![ParameterRow {
                lookup: lookup_key("u1"),
                result: b"B".to_vec(),
            }],
        ),
    ])
    .await;
    let mut s = h.stream("u1", json!({})).await;
    assert_eq!(s.next().await, None);
    let mut ok = h.stream("u2", json!({})).await;
    assert_eq!(ok.next_key().await, "checkpoint");
}

#[tokio::test]
async fn no_rules_and_probes() {
    let h = Harness::new().await;
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    let resp = h.request(get("/probes/readiness")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body_json(resp).await["ready"], true);
    for p in ["/probes/startup", "/probes/liveness", "/"] {
        assert_eq!(h.request(get(p)).await.status(), StatusCode::OK, "{p}");
    }

    h.rules_tx.send_replace(None);
    let resp = h.request(get("/probes/readiness")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(resp).await["ready"], false);
    let resp = h.post_stream(&h.token("u1"), "{}").await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body_json(resp).await["error"]["code"], "PSYNC_S2302");
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let h = Harness::new().await;
    for path in [
        "/sync/stream",
        "/write-checkpoint2.json",
        "/sync/checkpoint-request",
    ] {
        let resp = h
            .request(
                Request::options(path)
                    .header("origin", "http://localhost:5173")
                    .header("access-control-request-method", "POST")
                    .header(
                        "access-control-request-headers",
                        "authorization,content-type,x-user-agent",
                    )
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let hd = resp.headers();
        assert_eq!(hd["access-control-allow-origin"], "*");
        assert_eq!(hd["access-control-max-age"], "3600");
        let allowed = hd["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        for want in [
            "content-type",
            "authorization",
            "user-agent",
            "x-user-agent",
        ] {
            assert!(allowed.contains(want), "{allowed}");
        }
    }
    let resp = h
        .request(
            Request::get("/probes/liveness")
                .header("origin", "http://localhost:5173")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        resp.headers()["access-control-expose-headers"],
        "content-type"
    );
}

#[tokio::test]
async fn no_cors_on_admin_dashboard_and_metrics() {
    let h = Harness::new().await;
    for (method, path) in [
        ("POST", "/api/sync-rules/v1/deploy"),
        ("POST", "/api/sync-rules/v1/validate"),
        ("GET", "/api/sync-rules/v1/current"),
        ("GET", "/dashboard/data.json"),
        ("GET", "/dashboard"),
        ("GET", "/metrics"),
    ] {
        let preflight = h
            .request(
                Request::options(path)
                    .header("origin", "http://evil.example")
                    .header("access-control-request-method", method)
                    .header("access-control-request-headers", "authorization")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert!(
            !preflight
                .headers()
                .contains_key("access-control-allow-origin"),
            "{path}: {:?}",
            preflight.headers()
        );
        let simple = h
            .request(
                Request::get(path)
                    .header("origin", "http://evil.example")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert!(
            !simple.headers().contains_key("access-control-allow-origin"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn bson_when_preferred() {
    let h = Harness::new().await;
    let resp = h
        .request(
            Request::post("/sync/stream")
                .header("authorization", format!("Token {}", h.token("u1")))
                .header(
                    "accept",
                    "application/vnd.powersync.bson-stream;q=0.9,application/x-ndjson;q=0.8",
                )
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.powersync.bson-stream"
    );
    let mut body = resp.into_body().into_data_stream();
    let mut buf = Vec::new();
    let mut docs = Vec::new();
    while docs.len() < 4 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buf.extend_from_slice(&chunk);
        while buf.len() >= 4 {
            let len = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if buf.len() < len {
                break;
            }
            let doc: bson::Document = bson::deserialize_from_slice(&buf[..len]).unwrap();
            docs.push(doc);
            buf.drain(..len);
        }
    }
    let cp = docs[0].get_document("checkpoint").unwrap();
    assert_eq!(cp.get_str("last_op_id").unwrap(), "1");
    assert_eq!(
        docs[1]
            .get_document("partial_checkpoint_complete")
            .unwrap()
            .get_i32("priority")
            .unwrap(),
        1
    );
    let data = docs[2].get_document("data").unwrap();
    assert_eq!(data.get_str("bucket").unwrap(), "global[]");
    let op = data.get_array("data").unwrap()[0].as_document().unwrap();
    assert_eq!(op.get_str("op_id").unwrap(), "1");
    assert!(docs[3].contains_key("checkpoint_complete"));
}

#[tokio::test]
async fn new_rules_recompute_buckets() {
    let h = Harness::new().await;
    let mut s = h.stream("u1", json!({})).await;
    s.until_complete().await;
    h.rules_tx.send_replace(Some(ActiveRules {
        deployment: h.deployment,
        rules: Arc::new(TestRules { extra: true }),
    }));
    let lines = s.until_complete().await;
    assert_eq!(
        lines,
        [
            json!({"checkpoint_diff": {"last_op_id": "1", "updated_buckets": [
                {"bucket": "extra[]", "checksum": 0, "count": 0, "priority": 3, "subscriptions": [{"default": 0}]}
            ], "removed_buckets": []}}),
            json!({"checkpoint_complete": {"last_op_id": "1"}}),
        ]
    );
}

#[tokio::test]
async fn serve_shuts_down_with_open_streams() {
    let h = Harness::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(riptide_service::serve(
        listener,
        h.state.clone(),
        cancel.clone(),
    ));

    let client = riptide_testkit::SyncClient::new(format!("http://{addr}"), h.token("u1"));
    let mut stream = client.stream(json!({"client_id": "c1"})).await;
    let first = stream.next_line(Duration::from_secs(5)).await.unwrap();
    assert!(first.get("checkpoint").is_some(), "{first}");

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns promptly")
        .unwrap()
        .unwrap();
}

/// Checkpoints streams prepared so far, `(from the bus's ops, from storage)`.
fn prepared(h: &Harness) -> (u64, u64) {
    let text = h.state.metrics().render(0);
    let count = |source: &str| {
        let prefix = format!("riptide_sync_checkpoints_prepared_total{{source=\"{source}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
    };
    (count("memory"), count("storage"))
}

#[tokio::test]
async fn small_commits_are_served_from_the_bus_and_untouched_streams_stay_silent() {
    let mut h = Harness::new().await;
    let mut s1 = h.stream("u1", json!({"client_id": "c1"})).await;
    s1.until_complete().await;
    let mut s2 = h.stream("u2", json!({"client_id": "c2"})).await;
    s2.until_complete().await;
    assert_eq!(prepared(&h), (0, 2));

    // A small commit to u1's bucket: u1 gets it from memory, u2 wakes for nothing at all.
    h.commit(vec![row("todos", "t1", &[("user[\"u1\"]", "a")], vec![])])
        .await;
    let lines = s1.until_complete().await;
    let diff = &lines[0]["checkpoint_diff"];
    assert_eq!(diff["last_op_id"], "2");
    let states = h
        .storage
        .bucket_states(
            h.deployment,
            riptide_protocol::OpId(2),
            &["user[\"u1\"]".into()],
        )
        .await
        .unwrap();
    let exact = states["user[\"u1\"]"];
    assert_eq!(
        diff["updated_buckets"][0]["checksum"],
        json!(exact.checksum.as_signed())
    );
    assert_eq!(diff["updated_buckets"][0]["count"], json!(exact.count));
    assert_eq!(lines[1]["data"]["data"][0]["op_id"], "2");
    assert_eq!(lines[1]["data"]["after"], "1");
    assert!(s2.next_within(Duration::from_millis(200)).await.is_err());
    assert_eq!(prepared(&h), (1, 2));

    // A write checkpoint of u2 becomes visible with a commit that does not touch u2's
    // buckets: still reported, still without reading bucket data.
    h.source.lsn.store(250, Ordering::SeqCst);
    assert_eq!(
        h.write_checkpoint("u2", "c2").await,
        json!({"data": {"write_checkpoint": "1"}})
    );
    // Not yet replicated (storage at 0/200): nothing.
    assert!(s2.next_within(Duration::from_millis(200)).await.is_err());
    h.commit(vec![row("todos", "t2", &[("user[\"u3\"]", "a")], vec![])])
        .await;
    assert_eq!(
        s2.until_complete().await,
        vec![
            json!({"checkpoint_diff": {"last_op_id": "3", "write_checkpoint": "1", "updated_buckets": [], "removed_buckets": []}}),
            json!({"checkpoint_complete": {"last_op_id": "3"}}),
        ]
    );
    assert!(s1.next_within(Duration::from_millis(200)).await.is_err());
    let (memory, storage) = prepared(&h);
    assert_eq!(storage, 2, "no stream read storage");
    assert!(memory >= 2);

    // A commit the bus did not announce (as from a lost event): the next event does not
    // follow on, so u1 reads storage and gets both ops.
    let mut batch = h.storage.begin_batch(h.deployment).await.unwrap();
    batch
        .save(vec![row("todos", "t3", &[("user[\"u1\"]", "b")], vec![])])
        .await
        .unwrap();
    batch.commit(Lsn(400)).await.unwrap();
    h.commit(vec![row("todos", "t4", &[("user[\"u1\"]", "c")], vec![])])
        .await;
    let lines = s1.until_complete().await;
    assert_eq!(lines[0]["checkpoint_diff"]["last_op_id"], "5");
    let ids: Vec<&str> = lines[1]["data"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["op_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["4", "5"]);
    assert_eq!(prepared(&h).1, 3);

    // A commit too large to ride on the bus: read from storage, every op delivered.
    let many: Vec<BatchOperation> = (0..=riptide_storage::EVENT_OPS_MAX)
        .map(|i| row("lists", &format!("big{i}"), &[("global[]", "x")], vec![]))
        .collect();
    let event = h.commit(many).await;
    assert!(event.ops.is_none());
    for s in [&mut s1, &mut s2] {
        let lines = s.until_complete().await;
        let ops: usize = lines
            .iter()
            .filter_map(|l| l["data"]["data"].as_array())
            .map(Vec::len)
            .sum();
        assert_eq!(ops, riptide_storage::EVENT_OPS_MAX + 1);
    }
    assert_eq!(prepared(&h).1, 5);

    // And the next small commit is served from memory again.
    let before = prepared(&h);
    h.commit(vec![row("lists", "g9", &[("global[]", "y")], vec![])])
        .await;
    s1.until_complete().await;
    s2.until_complete().await;
    let after = prepared(&h);
    assert_eq!(after.1, before.1);
    assert_eq!(after.0, before.0 + 2);
}
