//! Sync-rule deployment at start-up against a real `riptide serve` (started in-process with an
//! admin token and no rules of its own), and the whole start-up path: the app's token opens a
//! sync stream that carries the app's uploaded rows.

use std::time::Duration;

use app_server::rules_deploy::{self, DeployError, Deployed, Target};
use riptide_server::config::{AuthConfig, ServeConfig};
use riptide_server::serve;
use riptide_testkit::{SyncClient, TestDatabase, wait_for};
use serde_json::{Value, json};

use crate::app::{Keys, app_root, config_from, entry, env, new_id, serve as serve_app};

const ADMIN: &str = "test-admin-token";
const T: Duration = Duration::from_secs(30);

struct Service {
    _storage: TestDatabase,
    endpoint: String,
    running: serve::Running,
}

/// `riptide serve` on `source` (which must have the app's schema) with no rules.
async fn start_service(source: &TestDatabase, keys: &Keys) -> Service {
    let storage = source.sibling("storage").await;
    let config = ServeConfig {
        storage: Some(storage.connection()),
        port: 0,
        api_tokens: vec![ADMIN.into()],
        ..ServeConfig::new(
            source.connection(),
            AuthConfig {
                jwks: Some(json!({ "keys": [keys.public_jwk.clone()] })),
                audience: vec!["riptide".into()],
                ..AuthConfig::default()
            },
        )
    };
    let running = serve::start(config).await.expect("service starts");
    Service {
        endpoint: format!("http://127.0.0.1:{}", running.port),
        _storage: storage,
        running,
    }
}

async fn current(endpoint: &str) -> Value {
    riptide_testkit::http()
        .get(format!("{endpoint}/api/sync-rules/v1/current"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_deployed_when_they_differ_and_only_then() {
    let source = TestDatabase::create().await;
    let root = app_root();
    app_server::migrations::run_from_url(&source.url(), &root.path().join("migrations"))
        .await
        .unwrap();
    let keys = Keys::generate();
    let svc = start_service(&source, &keys).await;
    let target = Target {
        base_url: svc.endpoint.parse().unwrap(),
        api_token: ADMIN.into(),
        rules_path: root.path().join("sync-rules.yaml"),
        timeout: Duration::from_secs(10),
    };
    let file = std::fs::read_to_string(&target.rules_path).unwrap();

    let first = rules_deploy::deploy_if_changed(&target).await.unwrap();
    let Deployed::Deployed { id: Some(first_id) } = first else {
        panic!("first start deploys: {first:?}");
    };
    let now = current(&svc.endpoint).await;
    let running = ["next", "current"]
        .iter()
        .find_map(|k| now["data"][k].as_object())
        .expect("a deployment");
    assert_eq!(running["content"], file.as_str());
    assert_eq!(running["id"], first_id);

    // Unchanged: nothing deployed (the deployment id stays).
    assert_eq!(
        rules_deploy::deploy_if_changed(&target).await.unwrap(),
        Deployed::Unchanged
    );
    let still = current(&svc.endpoint).await;
    let ids: Vec<&Value> = ["next", "current"]
        .iter()
        .filter_map(|k| still["data"][k].get("id"))
        .collect();
    assert_eq!(ids, [&json!(first_id)], "{still}");

    // Changed: deployed again.
    let changed = file.replace(
        "# Every list the user can open",
        "# Each list the user can open",
    );
    assert_ne!(changed, file);
    std::fs::write(&target.rules_path, &changed).unwrap();
    let second = rules_deploy::deploy_if_changed(&target).await.unwrap();
    assert!(
        matches!(second, Deployed::Deployed { id: Some(id) } if id > first_id),
        "{second:?}"
    );
    assert_eq!(
        rules_deploy::deploy_if_changed(&target).await.unwrap(),
        Deployed::Unchanged
    );

    // Invalid rules: the service's explanation.
    std::fs::write(
        &target.rules_path,
        changed.replace("owner_id = auth", "no_such_column = auth"),
    )
    .unwrap();
    let err = rules_deploy::deploy_if_changed(&target).await.unwrap_err();
    assert!(matches!(err, DeployError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("no_such_column"), "{err}");

    // A wrong token: a clear refusal that does not print the token.
    let wrong = Target {
        api_token: "not-the-token".into(),
        ..target.clone()
    };
    let err = rules_deploy::deploy_if_changed(&wrong).await.unwrap_err();
    assert!(
        matches!(err, DeployError::Refused { status: 401 | 403 }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("POWERSYNC_API_TOKEN")
            && !err.to_string().contains("not-the-token")
    );
    svc.running.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_never_comes_up_is_a_bounded_clear_error() {
    let root = app_root();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let target = Target {
        base_url: format!("http://127.0.0.1:{port}").parse().unwrap(),
        api_token: ADMIN.into(),
        rules_path: root.path().join("sync-rules.yaml"),
        timeout: Duration::from_millis(1500),
    };
    let started = std::time::Instant::now();
    let err = rules_deploy::deploy_if_changed(&target).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, DeployError::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_comes_up_late_is_waited_for() {
    let source = TestDatabase::create().await;
    let root = app_root();
    app_server::migrations::run_from_url(&source.url(), &root.path().join("migrations"))
        .await
        .unwrap();
    let keys = Keys::generate();
    // Start the service after the app began retrying: find its port first by starting it once.
    let svc = start_service(&source, &keys).await;
    let endpoint = svc.endpoint.clone();
    let target = Target {
        base_url: endpoint.parse().unwrap(),
        api_token: ADMIN.into(),
        rules_path: root.path().join("sync-rules.yaml"),
        timeout: Duration::from_secs(20),
    };
    // A proxy port that answers 503 for a while, then forwards: stands in for a service that is
    // still starting.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    let started = std::time::Instant::now();
    let upstream = endpoint.clone();
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let upstream = upstream.clone();
            async move {
                if started.elapsed() < Duration::from_millis(800) {
                    return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new());
                }
                let client = riptide_testkit::http();
                let method = req.method().clone();
                let uri = req.uri().to_string();
                let headers = req.headers().clone();
                let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                    .await
                    .unwrap();
                let resp = client
                    .request(method, format!("{upstream}{uri}"))
                    .headers(headers)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (resp.status(), resp.text().await.unwrap())
            }
        });
        axum::serve(listener, app).await.unwrap();
    });
    let late = Target {
        base_url: proxy.parse().unwrap(),
        ..target
    };
    let outcome = rules_deploy::deploy_if_changed(&late).await.unwrap();
    assert!(matches!(outcome, Deployed::Deployed { .. }), "{outcome:?}");
    assert!(started.elapsed() >= Duration::from_millis(800));
    svc.running.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_start_up_then_the_apps_token_syncs_the_apps_rows() {
    let source = TestDatabase::create().await;
    let root = app_root();
    let keys = Keys::generate();
    // As `riptide dev` does it: the service starts on the empty database, then the app's
    // start-up migrates (creating the publication) and deploys the rules.
    let svc = start_service(&source, &keys).await;
    let mut vars = env(&source.url(), &keys, &svc.endpoint, root.path());
    vars.insert("POWERSYNC_API_TOKEN".into(), ADMIN.into());
    let state = app_server::prepare(config_from(&vars))
        .await
        .expect("start-up");
    let base = serve_app(state).await;

    let http = riptide_testkit::http();
    let mut alice = crate::app::Client {
        http: http.clone(),
        base,
        cookie: None,
        id: String::new(),
        forwarded_for: None,
    };
    let (s, body) = alice
        .post(
            "/api/auth/signup",
            json!({"username": "alice", "password": "correct horse"}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    alice.id = body["user"]["id"].as_str().unwrap().to_owned();
    let list = new_id();
    let (s, body) = alice
        .upload(json!([entry(
            "PUT",
            "lists",
            &list,
            json!({"name": "groceries", "owner_id": alice.id}),
            1
        )]))
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = alice.get("/api/powersync/token").await;
    assert_eq!(s, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();

    wait_for("the deployment to be ready", T, || {
        let http = http.clone();
        let url = format!("{}/probes/readiness", svc.endpoint);
        async move {
            http.get(url)
                .send()
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(())
        }
    })
    .await;
    let client = SyncClient::new(&svc.endpoint, token);
    let mut stream = client
        .stream(json!({"client_id": "a1", "raw_data": true}))
        .await;
    // The first checkpoint may come before replication caught up with the upload: read on.
    let deadline = tokio::time::Instant::now() + T;
    let mut seen = Vec::new();
    let lists = loop {
        let lines = stream.until("checkpoint_complete", T).await;
        seen.extend(lines);
        let lists: Vec<Value> = seen
            .iter()
            .filter_map(|l| l.pointer("/data/data").and_then(Value::as_array))
            .flatten()
            .filter(|op| op["op"] == "PUT" && op["object_type"] == "lists")
            .cloned()
            .collect();
        if !lists.is_empty() || tokio::time::Instant::now() > deadline {
            break lists;
        }
    };
    let lines = seen;
    assert_eq!(lists.len(), 1, "{lines:?}");
    assert_eq!(lists[0]["object_id"], list.as_str());
    svc.running.cancel.cancel();
}
