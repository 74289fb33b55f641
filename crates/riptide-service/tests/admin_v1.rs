//! PowerSync's admin API v1 through the router: token checks, request bodies, the shapes of
//! the answers and the error codes of reprocess, against a fake [`InstanceAdmin`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::Harness;
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use riptide_service::instance_admin::{
    ConnectionStatus, Diagnostics, InstanceSchema, ReplicationIssue, ReprocessedConnection, SqlArg,
    SqlOutcome, SqlResults, SyncRulesStatus,
};
use riptide_service::{InstanceAdmin, InstanceAdminError, router};
use riptide_storage::BucketStorage;
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "admin-secret-v1";

/// Reprocess answers in turn: ok, busy, no active rules.
#[derive(Default)]
struct FakeInstance {
    reprocessed: AtomicUsize,
}

#[async_trait]
impl InstanceAdmin for FakeInstance {
    async fn diagnostics(&self, include_content: bool) -> Result<Diagnostics, InstanceAdminError> {
        Ok(Diagnostics {
            connections: vec![ConnectionStatus {
                id: "default".into(),
                postgres_uri: "postgresql://app@db:5432/app".into(),
                connected: true,
                errors: Vec::new(),
            }],
            active_sync_rules: Some(SyncRulesStatus {
                content: include_content.then(|| "bucket_definitions: {}".to_owned()),
                connections: Vec::new(),
                errors: vec![ReplicationIssue::warning("a warning")],
            }),
            deploying_sync_rules: None,
        })
    }

    async fn validate(&self, content: &str) -> Result<SyncRulesStatus, InstanceAdminError> {
        Ok(SyncRulesStatus {
            content: None,
            connections: Vec::new(),
            errors: vec![ReplicationIssue::fatal(format!(
                "saw {} bytes",
                content.len()
            ))],
        })
    }

    async fn schema(&self) -> Result<InstanceSchema, InstanceAdminError> {
        Ok(InstanceSchema {
            connections: Vec::new(),
            default_connection_tag: "default".into(),
            default_schema: "public".into(),
        })
    }

    async fn execute_sql(&self, query: &str, args: &[SqlArg]) -> SqlOutcome {
        SqlOutcome {
            success: true,
            results: SqlResults {
                columns: vec!["query".into(), "args".into()],
                rows: vec![vec![json!(query), json!(args.len())]],
            },
            error: None,
        }
    }

    async fn reprocess(&self) -> Result<ReprocessedConnection, InstanceAdminError> {
        match self.reprocessed.fetch_add(1, Ordering::SeqCst) {
            0 => Ok(ReprocessedConnection {
                id: "default".into(),
                tag: "default".into(),
                slot_name: "riptide_2_abcd".into(),
            }),
            1 => Err(InstanceAdminError::Busy),
            _ => Err(InstanceAdminError::NoActiveRules),
        }
    }

    /// Not the lease holder: compaction goes elsewhere.
    fn compaction_storage(&self) -> Result<Arc<dyn BucketStorage>, InstanceAdminError> {
        Err(InstanceAdminError::NotHolder(
            "this process does not hold the replication lease",
        ))
    }
}

async fn service(admin: Option<Arc<FakeInstance>>) -> riptide_service::AppState {
    let h = Harness::with(0, |o| {
        o.api_tokens = riptide_service::ApiTokens::new([TOKEN.to_owned()]);
    })
    .await;
    match admin {
        Some(a) => h.state.clone().with_instance_admin(a),
        None => h.state.clone(),
    }
}

async fn post(
    state: &riptide_service::AppState,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = router(state.clone())
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

const BEARER: &str = "Bearer admin-secret-v1";

#[tokio::test]
async fn every_v1_route_needs_an_admin_token() {
    let state = service(Some(Arc::new(FakeInstance::default()))).await;
    for path in [
        "/api/admin/v1/diagnostics",
        "/api/admin/v1/validate",
        "/api/admin/v1/schema",
        "/api/admin/v1/execute-sql",
        "/api/admin/v1/reprocess",
        "/api/sync-rules/v1/reprocess",
    ] {
        let (status, body) = post(&state, path, None, "{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body["error"]["code"], "PSYNC_S2106", "{path}");
        let (status, body) = post(&state, path, Some("Token wrong"), "{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body["error"]["code"], "PSYNC_S2101", "{path}");
    }
}

#[tokio::test]
async fn without_an_instance_admin_the_routes_are_not_found() {
    let state = service(None).await;
    let (status, body) = post(&state, "/api/admin/v1/diagnostics", Some(BEARER), "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "PSYNC_S2002");
}

#[tokio::test]
async fn answers_take_the_service_types_shapes() {
    let state = service(Some(Arc::new(FakeInstance::default()))).await;
    let (status, body) = post(
        &state,
        "/api/admin/v1/diagnostics",
        Some(BEARER),
        r#"{"sync_rules_content": true}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let d = &body["data"];
    assert_eq!(
        d["connections"][0]["postgres_uri"],
        "postgresql://app@db:5432/app"
    );
    assert_eq!(d["active_sync_rules"]["content"], "bucket_definitions: {}");
    assert_eq!(d["active_sync_rules"]["errors"][0]["level"], "warning");
    assert!(d.get("deploying_sync_rules").is_none());

    // An empty body is `{}`: no content.
    let (_, body) = post(&state, "/api/admin/v1/diagnostics", Some(BEARER), "").await;
    assert!(body["data"]["active_sync_rules"].get("content").is_none());

    let (status, body) = post(
        &state,
        "/api/admin/v1/validate",
        Some(BEARER),
        r#"{"sync_rules": "abc", "extra": 1}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["errors"][0]["message"], "saw 3 bytes");
    assert_eq!(body["data"]["errors"][0]["level"], "fatal");

    let (_, body) = post(&state, "/api/admin/v1/schema", Some(BEARER), "{}").await;
    assert_eq!(body["data"]["defaultConnectionTag"], "default");
    assert_eq!(body["data"]["defaultSchema"], "public");

    let (_, body) = post(
        &state,
        "/api/admin/v1/execute-sql",
        Some(BEARER),
        r#"{"sql": {"query": "SELECT $1, $2, $3", "args": ["a", 1.5, true]}}"#,
    )
    .await;
    assert_eq!(body["data"]["success"], true);
    assert_eq!(
        body["data"]["results"]["rows"][0],
        json!(["SELECT $1, $2, $3", 3])
    );
}

#[tokio::test]
async fn bodies_that_are_not_the_request_object_are_refused() {
    let state = service(Some(Arc::new(FakeInstance::default()))).await;
    for (path, body) in [
        ("/api/admin/v1/validate", "{}"),
        ("/api/admin/v1/validate", r#"{"sync_rules": 3}"#),
        ("/api/admin/v1/execute-sql", r#"{"sql": "SELECT 1"}"#),
        (
            "/api/admin/v1/execute-sql",
            r#"{"sql": {"query": "x", "args": [{}]}}"#,
        ),
        (
            "/api/admin/v1/diagnostics",
            r#"{"sync_rules_content": "yes"}"#,
        ),
        ("/api/admin/v1/schema", "[1]"),
        ("/api/admin/v1/reprocess", "not json"),
    ] {
        let (status, answer) = post(&state, path, Some(BEARER), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}");
        assert_eq!(answer["error"]["code"], "PSYNC_S2001", "{path} {body}");
    }
}

#[tokio::test]
async fn reprocess_answers_its_slot_then_busy_then_no_active_rules() {
    let state = service(Some(Arc::new(FakeInstance::default()))).await;
    let (status, body) = post(&state, "/api/admin/v1/reprocess", Some(BEARER), "{}").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["data"],
        json!({"connections": [{"id": "default", "tag": "default", "slot_name": "riptide_2_abcd"}]})
    );
    let (status, body) = post(&state, "/api/sync-rules/v1/reprocess", Some(BEARER), "{}").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "PSYNC_S4106");
    let (status, body) = post(&state, "/api/sync-rules/v1/reprocess", Some(BEARER), "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "PSYNC_S4104");
}

#[tokio::test]
async fn compaction_on_a_process_without_the_lease_is_refused() {
    let state = service(Some(Arc::new(FakeInstance::default()))).await;
    let (status, body) = post(&state, "/api/compact/v1/run", Some(BEARER), "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let description = body["error"]["description"].as_str().unwrap_or_default();
    assert!(description.contains("lease"), "{body}");

    // The service alone (no server, no lease) compacts its own storage.
    let state = service(None).await;
    let (status, body) = post(&state, "/api/compact/v1/run", Some(BEARER), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
