//! Helpers shared by the integration tests that run `riptide serve` in process.

use std::time::Duration;

use riptide_server::config::{AuthConfig, ServeConfig};
use riptide_testkit::{TestDatabase, TestKeys, wait_for};
use serde_json::Value;

/// A service on `source` with bucket storage in `storage`, tokens signed by `keys`, a free
/// port, no sync rules and no admin tokens (set the fields a test needs).
pub fn serve_config(source: &TestDatabase, storage: &TestDatabase, keys: &TestKeys) -> ServeConfig {
    ServeConfig {
        storage: Some(storage.config().into()),
        port: 0,
        sync_rules_origin: "test".into(),
        ..ServeConfig::new(source.config(), auth(keys))
    }
}

/// Client auth accepting tokens signed by `keys`.
pub fn auth(keys: &TestKeys) -> AuthConfig {
    AuthConfig {
        jwks: Some(serde_json::json!({ "keys": [keys.jwk()] })),
        audience: vec![keys.audience.clone()],
        ..AuthConfig::default()
    }
}

/// Waits until the service at `endpoint` answers its readiness probe (an active deployment).
pub async fn wait_ready(http: &reqwest::Client, endpoint: &str, timeout: Duration) {
    wait_for("readiness", timeout, || {
        let http = http.clone();
        let url = format!("{endpoint}/probes/readiness");
        async move {
            let resp = http.get(url).send().await.ok()?;
            resp.status().is_success().then_some(())
        }
    })
    .await;
}

/// Object ids of the PUT ops of `table` in data lines, sorted.
pub fn put_ids(lines: &[Value], table: &str) -> Vec<String> {
    let mut ids: Vec<String> = lines
        .iter()
        .filter_map(|l| l.pointer("/data/data").and_then(Value::as_array))
        .flatten()
        .filter(|op| op["op"] == "PUT" && op["object_type"] == table)
        .map(|op| op["object_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}
