//! A config file's TLS keys reach every connection of `riptide serve`: source and storage on
//! the test kit's TLS-only server (`hostnossl` rejected, SCRAM), the source by URI with no
//! `sslmode` (so `verify-full`, PowerSync's default) and an inline `cacert`, storage with
//! `sslmode: verify-ca` and `cacert` as a path. The service starts (storage migrated, source
//! checked, slot created and snapshot streamed over the walsender connection) and serves a
//! first sync and a live change; without `cacert` start-up fails naming the key to set.

use std::path::Path;
use std::time::Duration;

use riptide_server::config::ServeConfig;
use riptide_server::embedded::{DEMO_RULES, DEMO_SCHEMA};
use riptide_server::serve;
use riptide_testkit::{SyncClient, TestDatabase, TestKeys, TlsServer, tls_server};
use serde_json::json;

use crate::common;

const T: Duration = Duration::from_secs(30);

/// The config file: the source without `sslmode`, `source_tls` and `storage_tls` added under
/// their connections.
fn config_text(
    server: &TlsServer,
    source: &TestDatabase,
    storage: &TestDatabase,
    keys: &TestKeys,
    source_tls: &str,
) -> String {
    let jwks = json!({ "keys": [keys.jwk()] });
    format!(
        "replication:\n  connections:\n    - type: postgresql\n      uri: {}\n{source_tls}\
         storage:\n  type: postgresql\n  uri: {}\n  sslmode: verify-ca\n  cacert: {}\n\
         host: 127.0.0.1\nport: 0\nsync_config:\n  path: rules.yaml\n\
         client_auth:\n  jwks: {jwks}\n  audience: [{}]\n",
        server.url("localhost", source.name(), ""),
        server.url("localhost", storage.name(), ""),
        server.ca_path().display(),
        keys.audience,
    )
}

fn parse(text: &str, dir: &Path) -> ServeConfig {
    std::fs::write(dir.join("rules.yaml"), DEMO_RULES).unwrap();
    ServeConfig::parse(text, "powersync.yaml", dir).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_follows_the_config_tls_keys_for_source_replication_and_storage() {
    let server = tls_server();
    let source = TestDatabase::create_on(&server.cluster).await;
    let storage = source.sibling("storage").await;
    let db = source.client().await;
    db.batch_execute(DEMO_SCHEMA).await.unwrap();
    db.batch_execute(
        "INSERT INTO lists (id, name, owner_id) VALUES
           ('00000000-0000-0000-0000-00000000000a', 'A groceries', 'alice');",
    )
    .await
    .unwrap();
    let keys = TestKeys::generate();
    let dir = tempfile::tempdir().unwrap();
    let inline_ca: String = server
        .ca_pem
        .lines()
        .map(|l| format!("        {l}\n"))
        .collect();
    let text = config_text(
        server,
        &source,
        &storage,
        &keys,
        &format!("      cacert: |\n{inline_ca}"),
    );
    let config = parse(&text, dir.path());
    assert!(config.ignored.is_empty(), "{:?}", config.ignored);
    assert_eq!(config.source.tls().mode, riptide_pg::SslMode::VerifyFull);

    let running = serve::start(config).await.expect("service starts over TLS");
    let endpoint = format!("http://127.0.0.1:{}", running.port);
    common::wait_ready(&riptide_testkit::http(), &endpoint, T).await;
    let alice = SyncClient::new(&endpoint, keys.token("alice", 600, json!({})));
    let mut stream = alice
        .stream(json!({"client_id": "a1", "raw_data": true}))
        .await;
    let lines = stream.until("checkpoint_complete", T).await;
    assert_eq!(
        common::put_ids(&lines, "lists"),
        vec!["00000000-0000-0000-0000-00000000000a"]
    );
    // A live change arrives through the walsender connection.
    db.batch_execute(
        "INSERT INTO todos (list_id, description, created_by) VALUES
           ('00000000-0000-0000-0000-00000000000a', 'over tls', 'alice');",
    )
    .await
    .unwrap();
    let lines = stream.until("checkpoint_complete", T).await;
    assert_eq!(common::put_ids(&lines, "todos").len(), 1, "{lines:?}");
    running.cancel.cancel();
    running.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cacert_verify_full_fails_start_up_naming_the_key() {
    let server = tls_server();
    let source = TestDatabase::create_on(&server.cluster).await;
    let storage = source.sibling("storage").await;
    let keys = TestKeys::generate();
    let dir = tempfile::tempdir().unwrap();
    // Storage is fine (verify-ca with the CA); the source, verify-full by default, trusts only
    // the Mozilla roots.
    let config = parse(
        &config_text(server, &source, &storage, &keys, ""),
        dir.path(),
    );
    let Err(err) = serve::start(config).await else {
        panic!("started without trusting the test CA");
    };
    let mut chain = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        chain.push_str(&format!(": {c}"));
        cause = c.source();
    }
    assert!(chain.contains("not trusted"), "{chain}");
    assert!(chain.contains("cacert"), "{chain}");
    assert!(chain.contains(riptide_testkit::CA_NAME), "{chain}");
    assert!(!chain.contains(&server.password), "{chain}");
}
