//! The sync-rules admin API through the router: token checks, body forms, validation errors,
//! the config-managed refusal, and the calls it makes to the [`RulesAdmin`] hook.

use std::sync::{Arc, Mutex};

use crate::support::Harness;
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use riptide_service::{CurrentRules, RuleProblem, RulesAdmin, RulesAdminError, router};
use riptide_storage::{Deployment, DeploymentState};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "admin-secret-1";
const GOOD: &str = "bucket_definitions:\n  all:\n    data:\n      - SELECT * FROM lists\n";

/// Records deploys; rules containing `BROKEN` are invalid.
#[derive(Default)]
struct FakeAdmin {
    config_managed: bool,
    deployed: Mutex<Vec<String>>,
}

fn deployment(id: i64, content: &str, state: DeploymentState) -> Deployment {
    Deployment {
        id,
        content: content.into(),
        state,
        slot_name: format!("riptide_{id}_abcd"),
        snapshot_done: state == DeploymentState::Active,
        checkpoint: None,
        resume_lsn: None,
    }
}

#[async_trait]
impl RulesAdmin for FakeAdmin {
    fn managed_by_config(&self) -> bool {
        self.config_managed
    }

    async fn validate(&self, content: &str) -> Result<Vec<RuleProblem>, RulesAdminError> {
        Ok(if content.contains("BROKEN") {
            vec![
                RuleProblem::located("unknown column BROKEN", 4, 24),
                RuleProblem::located("second problem", 5, 3),
            ]
        } else {
            Vec::new()
        })
    }

    async fn deploy(&self, content: &str) -> Result<Deployment, RulesAdminError> {
        let mut deployed = self.deployed.lock().unwrap();
        deployed.push(content.to_owned());
        Ok(deployment(
            1 + deployed.len() as i64,
            content,
            DeploymentState::Processing,
        ))
    }

    async fn current(&self) -> Result<CurrentRules, RulesAdminError> {
        let deployed = self.deployed.lock().unwrap();
        Ok(CurrentRules {
            current: Some(deployment(1, GOOD, DeploymentState::Active)),
            next: deployed
                .last()
                .map(|c| deployment(1 + deployed.len() as i64, c, DeploymentState::Processing)),
        })
    }
}

async fn service(tokens: &[&str], admin: Option<Arc<FakeAdmin>>) -> riptide_service::AppState {
    let tokens: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
    let h = Harness::with(0, |o| {
        o.api_tokens = riptide_service::ApiTokens::new(tokens);
    })
    .await;
    match admin {
        Some(a) => h.state.clone().with_rules_admin(a),
        None => h.state.clone(),
    }
}

async fn call(
    state: &riptide_service::AppState,
    method: &str,
    path: &str,
    auth: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(t) = content_type {
        req = req.header("content-type", t);
    }
    let resp = router(state.clone())
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

#[tokio::test]
async fn admin_api_needs_one_of_the_configured_tokens() {
    let admin = Arc::new(FakeAdmin::default());
    let state = service(&[TOKEN, "other"], Some(admin.clone())).await;
    for (auth, status, code) in [
        (None, StatusCode::UNAUTHORIZED, "PSYNC_S2106"),
        (Some("Bearer"), StatusCode::UNAUTHORIZED, "PSYNC_S2106"),
        (Some("Basic abc"), StatusCode::UNAUTHORIZED, "PSYNC_S2106"),
        (
            Some("Bearer admin-secret-2"),
            StatusCode::UNAUTHORIZED,
            "PSYNC_S2101",
        ),
        (
            Some("Bearer admin-secret-"),
            StatusCode::UNAUTHORIZED,
            "PSYNC_S2101",
        ),
    ] {
        for (method, path) in [
            ("POST", "/api/sync-rules/v1/deploy"),
            ("POST", "/api/sync-rules/v1/validate"),
            ("GET", "/api/sync-rules/v1/current"),
        ] {
            let (s, body) = call(&state, method, path, auth, None, GOOD).await;
            assert_eq!(s, status, "{method} {path} with {auth:?}: {body}");
            assert_eq!(body["error"]["code"], code, "{body}");
            // The token is never echoed back.
            assert!(!body.to_string().contains("admin-secret"), "{body}");
        }
    }
    assert!(admin.deployed.lock().unwrap().is_empty());
    // Both schemes, both tokens.
    for auth in [bearer(), format!("Token {TOKEN}"), "Bearer other".into()] {
        let (s, body) = call(
            &state,
            "GET",
            "/api/sync-rules/v1/current",
            Some(&auth),
            None,
            "",
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
}

#[tokio::test]
async fn admin_api_is_disabled_without_tokens() {
    let state = service(&[], Some(Arc::new(FakeAdmin::default()))).await;
    let (s, body) = call(
        &state,
        "POST",
        "/api/sync-rules/v1/deploy",
        Some("Bearer anything"),
        None,
        GOOD,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["description"]
            .as_str()
            .unwrap()
            .contains("configure api.tokens"),
        "{body}"
    );
    // Tokens but no hook attached: not found, with a message.
    let state = service(&[TOKEN], None).await;
    let (s, body) = call(
        &state,
        "GET",
        "/api/sync-rules/v1/current",
        Some(&bearer()),
        None,
        "",
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn deploy_accepts_json_and_raw_yaml_and_calls_the_hook() {
    let admin = Arc::new(FakeAdmin::default());
    let state = service(&[TOKEN], Some(admin.clone())).await;
    let json_body = json!({ "content": GOOD }).to_string();
    let (s, body) = call(
        &state,
        "POST",
        "/api/sync-rules/v1/deploy",
        Some(&bearer()),
        Some("application/json"),
        &json_body,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["slot_name"], "riptide_2_abcd");
    assert_eq!(body["data"]["state"], "PROCESSING");
    let raw = GOOD.replace("all:", "everything:");
    let (s, body) = call(
        &state,
        "POST",
        "/api/sync-rules/v1/deploy",
        Some(&bearer()),
        Some("application/yaml"),
        &raw,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["slot_name"], "riptide_3_abcd");
    assert_eq!(
        *admin.deployed.lock().unwrap(),
        vec![GOOD.to_owned(), raw.clone()]
    );

    // `current` shows both deployments with their content.
    let (s, body) = call(
        &state,
        "GET",
        "/api/sync-rules/v1/current",
        Some(&bearer()),
        None,
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["current"]["id"], 1);
    assert_eq!(body["data"]["current"]["state"], "ACTIVE");
    assert_eq!(body["data"]["current"]["content"], GOOD);
    assert_eq!(body["data"]["next"]["slot_name"], "riptide_3_abcd");
    assert_eq!(body["data"]["next"]["content"], raw);

    // Bodies that carry no rules.
    for (ct, b, needle) in [
        (Some("application/json"), "{\"rules\": 1}", "content"),
        (Some("application/json"), "[1]", "object"),
        (None, "   ", "empty"),
    ] {
        let (s, body) = call(
            &state,
            "POST",
            "/api/sync-rules/v1/deploy",
            Some(&bearer()),
            ct,
            b,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}: {body}");
        assert_eq!(body["error"]["code"], "PSYNC_S2001");
        assert!(
            body["error"]["description"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{body}"
        );
    }
    assert_eq!(admin.deployed.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn invalid_rules_are_refused_with_every_located_error() {
    let admin = Arc::new(FakeAdmin::default());
    let state = service(&[TOKEN], Some(admin.clone())).await;
    let broken = GOOD.replace("lists", "BROKEN");
    let (s, body) = call(
        &state,
        "POST",
        "/api/sync-rules/v1/deploy",
        Some(&bearer()),
        None,
        &broken,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "PSYNC_S2001");
    let errors = body["error"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{body}");
    assert_eq!(errors[0]["line"], 4);
    assert_eq!(errors[0]["column"], 24);
    assert!(
        body["error"]["description"]
            .as_str()
            .unwrap()
            .contains("second problem (line 5, column 3)"),
        "{body}"
    );
    assert!(
        admin.deployed.lock().unwrap().is_empty(),
        "nothing deployed"
    );

    // validate reports the same, as data.
    let (s, body) = call(
        &state,
        "POST",
        "/api/sync-rules/v1/validate",
        Some(&bearer()),
        None,
        &broken,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["valid"], false);
    assert_eq!(body["data"]["errors"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"]["errors"][1]["message"], "second problem");
    let (s, body) = call(
        &state,
        "POST",
        "/api/sync-rules/v1/validate",
        Some(&bearer()),
        Some("application/json"),
        &json!({ "content": GOOD }).to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["valid"], true);
    assert_eq!(body["data"]["errors"], json!([]));
    assert_eq!(body["data"]["bucket_definitions"], json!(["all"]));
    assert!(
        admin.deployed.lock().unwrap().is_empty(),
        "validate deploys nothing"
    );
}

#[tokio::test]
async fn deploy_is_refused_when_the_config_file_manages_the_rules() {
    let admin = Arc::new(FakeAdmin {
        config_managed: true,
        ..FakeAdmin::default()
    });
    let state = service(&[TOKEN], Some(admin.clone())).await;
    let (s, body) = call(
        &state,
        "POST",
        "/api/sync-rules/v1/deploy",
        Some(&bearer()),
        None,
        GOOD,
    )
    .await;
    assert_eq!(s.as_u16(), 422, "{body}");
    assert_eq!(body["error"]["code"], "PSYNC_S4105");
    assert!(
        body["error"]["description"]
            .as_str()
            .unwrap()
            .contains("managed by the config file"),
        "{body}"
    );
    assert!(admin.deployed.lock().unwrap().is_empty());
    // Validation and reads still work.
    let (s, _) = call(
        &state,
        "POST",
        "/api/sync-rules/v1/validate",
        Some(&bearer()),
        None,
        GOOD,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = call(
        &state,
        "GET",
        "/api/sync-rules/v1/current",
        Some(&bearer()),
        None,
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["data"]["managed_by_config"], true);
}
