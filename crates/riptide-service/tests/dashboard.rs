//! `/metrics`, `/dashboard` and `/dashboard/data.json` over `MemoryStorage`, a fake source and
//! fake replication progress; plus a headless-Chromium screenshot when Chromium is installed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::support::{Harness as Service, Spec};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use futures::StreamExt;
use riptide_protocol::Lsn;
use riptide_rules::{BucketDescription, RequestParameters};
use riptide_service::metrics::names;
use riptide_service::{
    ApiTokens, BucketRules, ReplicationProgress, ReplicationSnapshot, ServiceOptions, router,
};
use riptide_storage::{BatchOperation, BucketRow, RowChange, RowOperation};
use serde_json::{Value, json};
use tower::ServiceExt;

/// Everyone gets `global[]`.
struct GlobalRules;

impl BucketRules for GlobalRules {
    fn parameter_lookups(&self, _: &RequestParameters) -> Vec<Vec<u8>> {
        Vec::new()
    }
    fn resolve_buckets(
        &self,
        _: &RequestParameters,
        _: &HashMap<Vec<u8>, Vec<Vec<u8>>>,
    ) -> Vec<BucketDescription> {
        vec![BucketDescription {
            name: "global[]".into(),
            definition: "global".into(),
            priority: 3,
        }]
    }
    fn definitions(&self) -> Vec<(String, u8)> {
        vec![("global".into(), 3)]
    }
}

#[derive(Default)]
struct FakeProgress(Mutex<ReplicationSnapshot>);

impl ReplicationProgress for FakeProgress {
    fn progress(&self) -> ReplicationSnapshot {
        self.0.lock().unwrap().clone()
    }
}

/// The service of [`crate::support::Harness`] with [`GlobalRules`], two rows in the snapshot at 0/300,
/// and fake replication progress.
struct Harness {
    service: Service,
    progress: Arc<FakeProgress>,
}

impl std::ops::Deref for Harness {
    type Target = Service;
    fn deref(&self) -> &Service {
        &self.service
    }
}

fn row(id: &str) -> BatchOperation {
    BatchOperation::Row(RowOperation {
        source_table: "public.lists".into(),
        key: id.as_bytes().to_vec(),
        change: RowChange::Upsert {
            row: id.as_bytes().to_vec(),
            buckets: vec![BucketRow {
                bucket: "global[]".into(),
                table: "lists".into(),
                id: id.into(),
                data: json!({ "id": id }).to_string(),
            }],
            parameters: vec![],
        },
    })
}

impl Harness {
    /// A service whose dashboard accepts `tokens` (`api.dashboard_tokens`).
    async fn new(tokens: &[&str]) -> Harness {
        let tokens = ApiTokens::new(tokens.iter().map(|t| (*t).to_owned()));
        Harness::with_options(move |options| options.dashboard_tokens = tokens).await
    }

    async fn with_options(set: impl FnOnce(&mut ServiceOptions)) -> Harness {
        let mut spec = Spec::new(Arc::new(GlobalRules), vec![row("a"), row("b")]);
        spec.snapshot_lsn = Lsn(300);
        spec.source_lsn = 0;
        let service = Service::start(spec, set, |storage, _| Arc::new(storage)).await;
        let progress = Arc::new(FakeProgress::default());
        service.state.metrics().set_replication(progress.clone());
        Harness { service, progress }
    }

    /// A replication commit as the replicator reports it.
    fn replicate(&self, lsn: u64, transactions: u64, rows: u64) {
        let mut p = self.progress.0.lock().unwrap();
        p.last_received_lsn = Lsn(lsn);
        p.last_committed_lsn = Lsn(lsn);
        p.transactions += transactions;
        p.rows += rows;
        p.last_commit = Some(SystemTime::now());
    }

    async fn request(&self, req: Request<Body>) -> Response<Body> {
        router(self.state.clone()).oneshot(req).await.unwrap()
    }

    async fn get(&self, uri: &str, peer: Option<&str>, auth: Option<&str>) -> Response<Body> {
        let mut req = Request::get(uri);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let mut req = req.body(Body::empty()).unwrap();
        if let Some(p) = peer {
            req.extensions_mut()
                .insert(ConnectInfo(p.parse::<SocketAddr>().unwrap()));
        }
        self.request(req).await
    }

    async fn data(&self) -> Value {
        let resp = self
            .get("/dashboard/data.json", Some("127.0.0.1:5000"), None)
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        body_json(resp).await
    }

    async fn metrics(&self) -> String {
        let resp = self.get("/metrics", None, None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        body_text(resp).await
    }

    /// Opens a stream and reads up to the first `checkpoint_complete`.
    async fn stream(&self) -> axum::body::BodyDataStream {
        let resp = self
            .request(
                Request::post("/sync/stream")
                    .header(
                        "authorization",
                        format!("Token {}", self.keys.token("u1", 300, json!({}))),
                    )
                    .body(Body::from("{}"))
                    .unwrap(),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body().into_data_stream();
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("checkpoint_complete") {
            let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
                .await
                .expect("a line within 5 s")
                .expect("stream open")
                .unwrap();
            seen.extend_from_slice(&chunk);
        }
        body
    }
}

async fn body_text(resp: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn body_json(resp: Response<Body>) -> Value {
    serde_json::from_str(&body_text(resp).await).unwrap()
}

/// The value of an unlabelled series in a Prometheus exposition.
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
}

#[tokio::test]
async fn metrics_name_every_series_after_a_stream_and_a_commit() {
    let h = Harness::new(&[]).await;
    let stream = h.stream().await;
    h.replicate(900, 2, 5);
    h.source.lsn.store(1000, Ordering::SeqCst);
    h.state.metrics().sample_source_lsn(h.source.as_ref()).await;
    // One failed authentication.
    let resp = h
        .request(
            Request::post("/sync/stream")
                .header("authorization", "Token not-a-jwt")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let text = h.metrics().await;
    for name in [
        names::SYNC_STREAMS_OPEN,
        names::SYNC_STREAMS_OPENED,
        names::SYNC_STREAMS_CLOSED,
        names::AUTH_FAILURES,
        names::SYNC_LINES_SENT,
        names::SYNC_OPS_SENT,
        names::SYNC_BYTES_SENT,
        names::SYNC_CHECKPOINTS_SENT,
        names::WRITE_CHECKPOINTS_CREATED,
        names::REPLICATION_TRANSACTIONS,
        names::REPLICATION_ROWS,
        names::REPLICATION_LAG_BYTES,
        names::REPLICATION_SECONDS_SINCE_COMMIT,
        names::REPLICATION_SNAPSHOT_RUNNING,
        names::REPLICATION_SNAPSHOT_ROWS,
        names::UPTIME_SECONDS,
        names::BUILD_INFO,
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name}:\n{text}");
    }
    assert_eq!(series(&text, names::SYNC_STREAMS_OPEN), 1.0);
    assert_eq!(series(&text, names::SYNC_STREAMS_OPENED), 1.0);
    assert_eq!(series(&text, names::SYNC_OPS_SENT), 2.0);
    assert!(series(&text, names::SYNC_LINES_SENT) >= 3.0);
    assert!(series(&text, names::SYNC_BYTES_SENT) > 100.0);
    assert_eq!(series(&text, names::SYNC_CHECKPOINTS_SENT), 1.0);
    assert_eq!(series(&text, names::REPLICATION_TRANSACTIONS), 2.0);
    assert_eq!(series(&text, names::REPLICATION_ROWS), 5.0);
    assert_eq!(series(&text, names::REPLICATION_LAG_BYTES), 100.0);
    assert!(text.contains("riptide_auth_failures_total{code=\"PSYNC_S2101\"} 1"));
    // No secrets, no row values.
    assert!(!text.contains("u1") && !text.contains("\"id\""));
    drop(stream);
}

#[tokio::test]
async fn data_json_has_the_fields_and_follows_streams() {
    let h = Harness::new(&[]).await;
    let d = h.data().await;
    assert_eq!(d["service"]["name"], "riptide");
    assert_eq!(d["service"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(d["service"]["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(d["connections"]["open"], 0);
    assert_eq!(d["connections"]["opened_total"], 0);
    assert_eq!(d["deployment"]["id"], h.deployment);
    assert_eq!(d["deployment"]["state"], "active");
    assert!(!d["deployment"]["slot_name"].as_str().unwrap().is_empty());
    assert_eq!(d["deployment"]["checkpoint"]["lsn"], Lsn(300).to_string());
    assert!(d["deployment"]["checkpoint"]["op_id"].is_string());
    assert!(d["processing_deployment"].is_null());
    // Replication attached, nothing committed or sampled yet.
    assert_eq!(d["replication"]["transactions_total"], 0);
    assert!(d["replication"]["lag_bytes"].is_null());
    assert!(d["replication"]["seconds_since_commit"].is_null());
    assert_eq!(d["replication"]["snapshot"]["running"], false);

    let stream = h.stream().await;
    let d = h.data().await;
    assert_eq!(d["connections"]["open"], 1);
    assert_eq!(d["connections"]["opened_total"], 1);
    assert_eq!(d["sync"]["ops_sent_total"], 2);
    assert_eq!(d["sync"]["checkpoints_sent_total"], 1);

    {
        let mut p = h.progress.0.lock().unwrap();
        p.snapshot_table = Some("public.lists".into());
        p.snapshot_rows = 42;
    }
    h.replicate(500, 1, 3);
    h.source.lsn.store(800, Ordering::SeqCst);
    h.state.metrics().sample_source_lsn(h.source.as_ref()).await;
    let d = h.data().await;
    assert_eq!(d["replication"]["transactions_total"], 1);
    assert_eq!(d["replication"]["rows_total"], 3);
    assert_eq!(d["replication"]["lag_bytes"], 300);
    assert_eq!(d["replication"]["last_committed_lsn"], Lsn(500).to_string());
    assert_eq!(d["replication"]["source_wal_lsn"], Lsn(800).to_string());
    assert!(d["replication"]["seconds_since_commit"].as_f64().unwrap() < 60.0);
    assert_eq!(d["replication"]["snapshot"]["running"], true);
    assert_eq!(d["replication"]["snapshot"]["table"], "public.lists");
    assert_eq!(d["replication"]["snapshot"]["rows"], 42);

    drop(stream);
    let state = h.state.clone();
    riptide_testkit::wait_for("stream closed", Duration::from_secs(5), || {
        let state = state.clone();
        async move {
            let d = riptide_service::dashboard::snapshot(&state).await;
            (d.connections.open == 0 && d.connections.closed_total == 1).then_some(())
        }
    })
    .await;
    let _ = &h.storage;
}

#[tokio::test]
async fn dashboard_is_loopback_only_without_tokens() {
    let h = Harness::new(&[]).await;
    for uri in ["/dashboard", "/dashboard/data.json"] {
        assert_eq!(
            h.get(uri, None, None).await.status(),
            StatusCode::FORBIDDEN,
            "{uri} without a peer address"
        );
        assert_eq!(
            h.get(uri, Some("10.1.2.3:4000"), None).await.status(),
            StatusCode::FORBIDDEN,
            "{uri} from another host"
        );
        for local in ["127.0.0.1:4000", "[::1]:4000"] {
            assert_eq!(
                h.get(uri, Some(local), None).await.status(),
                StatusCode::OK,
                "{uri} from {local}"
            );
        }
    }
    let resp = h.get("/dashboard", Some("10.1.2.3:4000"), None).await;
    let body = body_json(resp).await;
    assert!(
        body["error"]["description"]
            .as_str()
            .unwrap()
            .contains("api.dashboard_tokens")
    );
    // /metrics needs nothing.
    assert_eq!(
        h.get("/metrics", Some("10.1.2.3:4000"), None)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn dashboard_data_requires_a_configured_token() {
    let h = Harness::new(&["s3cret", "other"]).await;
    let remote = Some("10.1.2.3:4000");
    // The page holds no data: served to anyone, it asks for the token.
    let page = h.get("/dashboard", remote, None).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    for (uri, auth) in [
        ("/dashboard/data.json", None),
        ("/dashboard/data.json", Some("Bearer wrong")),
        ("/dashboard/data.json?token=wrong", None),
        ("/dashboard/data.json?token=", None),
    ] {
        let resp = h.get(uri, Some("127.0.0.1:1"), auth).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{uri} {auth:?}");
        let body = body_json(resp).await;
        assert_eq!(body["error"]["code"], "PSYNC_S2106");
        assert!(!body.to_string().contains("s3cret"));
    }
    for (uri, auth) in [
        ("/dashboard/data.json", Some("Bearer s3cret")),
        ("/dashboard/data.json", Some("Token other")),
        ("/dashboard/data.json?token=s3cret", None),
    ] {
        let resp = h.get(uri, remote, auth).await;
        assert_eq!(resp.status(), StatusCode::OK, "{uri} {auth:?}");
    }
}

#[tokio::test]
async fn the_dashboard_never_accepts_admin_tokens() {
    // Admin tokens and read-only dashboard tokens: only the latter open the data.
    let h = Harness::with_options(|options| {
        options.api_tokens = ApiTokens::new(["admin-token".to_owned()]);
        options.dashboard_tokens = ApiTokens::new(["view-token".to_owned()]);
    })
    .await;
    for (uri, auth) in [
        ("/dashboard/data.json?token=admin-token", None),
        ("/dashboard/data.json", Some("Bearer admin-token")),
    ] {
        let resp = h.get(uri, Some("127.0.0.1:1"), auth).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{uri} {auth:?}");
    }
    let resp = h
        .get(
            "/dashboard/data.json?token=view-token",
            Some("10.1.2.3:4000"),
            None,
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);

    // Admin tokens only: the dashboard is closed, even to loopback clients (a proxy on the
    // same machine makes every client one).
    let h = Harness::with_options(|options| {
        options.api_tokens = ApiTokens::new(["admin-token".to_owned()]);
    })
    .await;
    for (uri, auth) in [
        ("/dashboard/data.json", None),
        ("/dashboard/data.json", Some("Bearer admin-token")),
        ("/dashboard/data.json?token=admin-token", None),
    ] {
        let resp = h.get(uri, Some("127.0.0.1:1"), auth).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{uri} {auth:?}");
        let body = body_json(resp).await;
        assert_eq!(body["error"]["code"], "RIPTIDE_DASHBOARD_CLOSED");
        assert!(!body.to_string().contains("admin-token"));
    }
}

#[test]
fn page_is_self_contained() {
    let page = riptide_service::dashboard::PAGE;
    assert!(page.starts_with("<!doctype html>"));
    for external in ["https://", "<link", "src=\"http", "@import", "url(http"] {
        assert!(!page.contains(external), "{external}");
    }
    // The only absolute URL is the SVG namespace, which is never fetched.
    assert_eq!(
        page.matches("http://").count(),
        page.matches("http://www.w3.org/2000/svg").count()
    );
}

/// Renders the page in headless Chromium against a served instance with some traffic, and
/// writes `target/tmp/dashboard.png`. The test command installs Chromium; running the tests by
/// hand without it fails here unless `RIPTIDE_SKIP_BROWSER_TESTS=1` says to skip.
#[tokio::test]
async fn chromium_renders_the_dashboard() {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        assert!(
            std::env::var_os("RIPTIDE_SKIP_BROWSER_TESTS").is_some(),
            "/usr/bin/chromium is missing: apt-get install -y chromium \
             (or set RIPTIDE_SKIP_BROWSER_TESTS=1 to skip browser tests)"
        );
        eprintln!("RIPTIDE_SKIP_BROWSER_TESTS is set: dashboard screenshot skipped");
        return;
    }
    let h = Harness::new(&[]).await;
    h.replicate(900, 3, 12);
    h.source.lsn.store(4096, Ordering::SeqCst);
    h.state.metrics().sample_source_lsn(h.source.as_ref()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cancel = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(riptide_service::serve(
        listener,
        h.state.clone(),
        cancel.clone(),
    ));
    let _stream = h.stream().await;
    // Some replication traffic while the page polls.
    let traffic = {
        let progress = h.progress.clone();
        tokio::spawn(async move {
            for i in 0u64..40 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let mut p = progress.0.lock().unwrap();
                p.transactions += 1 + i % 3;
                p.rows += 10 + (i * 7) % 25;
                p.last_committed_lsn = Lsn(900 + i * 100);
                p.last_commit = Some(SystemTime::now());
            }
        })
    };
    // Cargo creates this directory for integration tests (under the target directory in use).
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&out);
    let url = format!("http://127.0.0.1:{port}/dashboard");
    let status = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1440,1000",
            "--virtual-time-budget=8000",
            &format!("--screenshot={}", out.display()),
            &url,
        ])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), status)
        .await
        .expect("chromium finished within 90 s")
        .unwrap();
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(std::fs::metadata(&out).unwrap().len() > 10_000);
    traffic.abort();
    cancel.cancel();
    let _ = server.await;
}
