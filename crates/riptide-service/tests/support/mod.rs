//! A small in-process service for the integration tests: memory storage, a fake source
//! database, and rules of the test's choice ([`TwoBuckets`] by default: one global bucket plus
//! one bucket per user). [`Harness::start`] is the one place that assembles it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use riptide_protocol::Lsn;
use riptide_rules::{BucketDescription, RequestParameters, SqliteValue};
use riptide_service::{
    ActiveRules, AppState, AuthConfig, BucketRules, KeyStore, ServiceOptions, SourceDatabase,
    SourceError,
};
use riptide_storage::{
    BatchOperation, BucketRow, BucketStorage, CheckpointEvent, DeploymentId, MemoryStorage,
    RowChange, RowOperation,
};
use riptide_testkit::TestKeys;
use serde_json::json;
use tokio::sync::{broadcast, watch};

/// `global[]` (priority 3) for everyone and `user["<sub>"]` (priority 1).
pub struct TwoBuckets;

impl BucketRules for TwoBuckets {
    fn parameter_lookups(&self, _: &RequestParameters) -> Vec<Vec<u8>> {
        Vec::new()
    }

    fn resolve_buckets(
        &self,
        params: &RequestParameters,
        _: &HashMap<Vec<u8>, Vec<Vec<u8>>>,
    ) -> Vec<BucketDescription> {
        let user = match &params.user_id {
            SqliteValue::Text(s) => s.clone(),
            other => format!("{other:?}"),
        };
        vec![
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
        ]
    }

    fn definitions(&self) -> Vec<(String, u8)> {
        vec![("global".into(), 3), ("by_user".into(), 1)]
    }
}

/// A fake source database: `current_lsn` answers `lsn`; `emit_ping` counts in `pings`.
#[derive(Default)]
pub struct FakeSource {
    pub lsn: AtomicU64,
    pub pings: AtomicUsize,
}

#[async_trait]
impl SourceDatabase for FakeSource {
    async fn current_lsn(&self) -> Result<Lsn, SourceError> {
        Ok(Lsn(self.lsn.load(Ordering::SeqCst)))
    }
    async fn emit_ping(&self) -> Result<(), SourceError> {
        self.pings.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// What [`Harness::start`] builds a service from.
pub struct Spec {
    pub rules: Arc<dyn BucketRules>,
    /// The deployment's stored rules text.
    pub rules_text: String,
    /// The deployment's initial snapshot, committed at `snapshot_lsn`.
    pub snapshot: Vec<BatchOperation>,
    pub snapshot_lsn: Lsn,
    /// The fake source's WAL position at start.
    pub source_lsn: u64,
}

impl Spec {
    pub fn new(rules: Arc<dyn BucketRules>, snapshot: Vec<BatchOperation>) -> Spec {
        Spec {
            rules,
            rules_text: "rules".into(),
            snapshot,
            snapshot_lsn: Lsn(10),
            source_lsn: 1,
        }
    }
}

pub struct Harness {
    pub keys: TestKeys,
    pub storage: MemoryStorage,
    pub deployment: DeploymentId,
    pub events: broadcast::Sender<CheckpointEvent>,
    pub rules_tx: watch::Sender<Option<ActiveRules>>,
    pub source: Arc<FakeSource>,
    pub state: AppState,
    next_lsn: u64,
}

impl Harness {
    /// [`TwoBuckets`], a snapshot of `rows` rows in `global[]`.
    pub async fn with(rows: usize, configure: impl FnOnce(&mut ServiceOptions)) -> Harness {
        let snapshot = (0..rows)
            .map(|i| row("lists", &format!("g{i}"), "global[]"))
            .collect();
        Self::start(
            Spec::new(Arc::new(TwoBuckets), snapshot),
            configure,
            |s, _| Arc::new(s),
        )
        .await
    }

    /// A service from `spec`, its options adjusted by `configure`, reading storage through
    /// `layer` (given the memory storage and the bus).
    pub async fn start(
        spec: Spec,
        configure: impl FnOnce(&mut ServiceOptions),
        layer: impl FnOnce(MemoryStorage, broadcast::Sender<CheckpointEvent>) -> Arc<dyn BucketStorage>,
    ) -> Harness {
        let keys = TestKeys::generate();
        let storage = MemoryStorage::new();
        let dep = storage
            .create_deployment(&spec.rules_text, "riptide_")
            .await
            .unwrap();
        let mut batch = storage.begin_batch(dep.id).await.unwrap();
        batch.save(spec.snapshot).await.unwrap();
        batch.commit(spec.snapshot_lsn).await.unwrap();
        storage.mark_snapshot_done(dep.id).await.unwrap();
        storage.activate(dep.id).await.unwrap();

        let keystore = KeyStore::new(AuthConfig {
            jwks: Some(keys.jwks()),
            audience: vec![keys.audience.clone()],
            ..AuthConfig::default()
        })
        .unwrap();
        let mut options = ServiceOptions::new(keystore);
        options.no_rules_wait = Duration::from_millis(100);
        configure(&mut options);
        let (events, _) = broadcast::channel(64);
        let (rules_tx, rules_rx) = watch::channel(Some(ActiveRules {
            deployment: dep.id,
            rules: spec.rules,
        }));
        let source = Arc::new(FakeSource {
            lsn: AtomicU64::new(spec.source_lsn),
            pings: AtomicUsize::new(0),
        });
        let state = AppState::new(
            options,
            layer(storage.clone(), events.clone()),
            rules_rx,
            events.clone(),
            source.clone(),
        );
        Harness {
            keys,
            storage,
            deployment: dep.id,
            events,
            rules_tx,
            source,
            state,
            next_lsn: 100,
        }
    }

    pub fn token(&self, user: &str) -> String {
        self.keys.token(user, 300, json!({}))
    }

    /// Commits one source transaction and announces it on the bus.
    pub async fn commit(&mut self, ops: Vec<BatchOperation>) -> CheckpointEvent {
        self.next_lsn += 100;
        let mut batch = self.storage.begin_batch(self.deployment).await.unwrap();
        batch.save(ops).await.unwrap();
        let event = batch.commit(Lsn(self.next_lsn)).await.unwrap();
        let _ = self.events.send(event.clone());
        event
    }

    /// Serves the router on a loopback port until the returned handle is dropped/aborted.
    pub async fn serve(&self) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = riptide_service::router(self.state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (addr, task)
    }
}

/// An upsert of `table/id` into `bucket`.
pub fn row(table: &str, id: &str, bucket: &str) -> BatchOperation {
    BatchOperation::Row(RowOperation {
        source_table: format!("public.{table}"),
        key: id.as_bytes().to_vec(),
        change: RowChange::Upsert {
            row: id.as_bytes().to_vec(),
            buckets: vec![BucketRow {
                bucket: bucket.into(),
                table: table.into(),
                id: id.into(),
                data: json!({"id": id, "description": format!("row {id}")}).to_string(),
            }],
            parameters: Vec::new(),
        },
    })
}
