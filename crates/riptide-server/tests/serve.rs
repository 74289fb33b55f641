//! `riptide serve` end to end against a real Postgres, with the protocol-level test client:
//! snapshot, live changes, membership-driven buckets, write checkpoints, bad tokens.

use std::time::Duration;

use riptide_server::config::Logging;
use riptide_server::embedded::{DEMO_RULES, DEMO_SCHEMA};
use riptide_server::serve;
use riptide_testkit::{SyncClient, TestDatabase, TestKeys};
use serde_json::{Value, json};

use crate::common;

const T: Duration = Duration::from_secs(20);

struct Service {
    _source: TestDatabase,
    _storage: TestDatabase,
    db: tokio_postgres::Client,
    keys: TestKeys,
    endpoint: String,
    running: serve::Running,
}

async fn start_service() -> Service {
    riptide_server::logging::init(&Logging {
        level: "debug".into(),
        json: false,
    });
    let source = TestDatabase::create().await;
    let storage = source.sibling("storage").await;
    let db = source.client().await;
    db.batch_execute(DEMO_SCHEMA).await.unwrap();
    db.batch_execute(
        "INSERT INTO lists (id, name, owner_id) VALUES
           ('00000000-0000-0000-0000-00000000000a', 'A groceries', 'alice'),
           ('00000000-0000-0000-0000-00000000000b', 'B work', 'bob');
         INSERT INTO todos (list_id, description, created_by) VALUES
           ('00000000-0000-0000-0000-00000000000a', 'milk', 'alice'),
           ('00000000-0000-0000-0000-00000000000b', 'report', 'bob');",
    )
    .await
    .unwrap();
    let keys = TestKeys::generate();
    let mut config = common::serve_config(&source, &storage, &keys);
    config.sync_rules = Some(DEMO_RULES.to_owned());
    let running = serve::start(config).await.expect("service starts");
    let endpoint = format!("http://127.0.0.1:{}", running.port);
    let http = riptide_testkit::http();
    common::wait_ready(&http, &endpoint, T).await;
    Service {
        _source: source,
        _storage: storage,
        db,
        keys,
        endpoint,
        running,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_live_changes_sharing_and_write_checkpoints() {
    let svc = start_service().await;
    let alice = SyncClient::new(&svc.endpoint, svc.keys.token("alice", 600, json!({})));
    let bob = SyncClient::new(&svc.endpoint, svc.keys.token("bob", 600, json!({})));

    // First sync: alice gets her list and its todo, nothing of bob's.
    let mut a = alice
        .stream(json!({"client_id": "a1", "raw_data": true}))
        .await;
    let lines = a.until("checkpoint_complete", T).await;
    assert!(
        lines[0].get("checkpoint").is_some(),
        "first line is a checkpoint: {lines:?}"
    );
    assert_eq!(
        common::put_ids(&lines, "lists"),
        vec!["00000000-0000-0000-0000-00000000000a"]
    );
    assert_eq!(common::put_ids(&lines, "todos").len(), 1);
    let todo_data = lines
        .iter()
        .find_map(|l| {
            l.pointer("/data/data/0/data")
                .filter(|_| l["data"]["bucket"].as_str().unwrap().contains("owned"))
        })
        .cloned();
    assert!(
        todo_data.is_some_and(|d| d.is_string()),
        "op data is a JSON string"
    );

    // A live insert arrives as a diff with the new op.
    svc.db
        .execute(
            "INSERT INTO todos (list_id, description, created_by) VALUES ('00000000-0000-0000-0000-00000000000a', 'eggs', 'alice')",
            &[],
        )
        .await
        .unwrap();
    let lines = a.until("checkpoint_complete", T).await;
    assert!(
        lines.iter().any(|l| l.get("checkpoint_diff").is_some()),
        "{lines:?}"
    );
    assert_eq!(common::put_ids(&lines, "todos").len(), 1, "{lines:?}");

    // Sharing bob's list with alice adds its bucket live; unsharing removes it.
    svc.db
        .execute(
            "INSERT INTO list_members (list_id, user_id) VALUES ('00000000-0000-0000-0000-00000000000b', 'alice')",
            &[],
        )
        .await
        .unwrap();
    let lines = a.until("checkpoint_complete", T).await;
    assert_eq!(
        common::put_ids(&lines, "lists"),
        vec!["00000000-0000-0000-0000-00000000000b"],
        "{lines:?}"
    );
    svc.db
        .execute("DELETE FROM list_members WHERE user_id = 'alice'", &[])
        .await
        .unwrap();
    let lines = a.until("checkpoint_complete", T).await;
    let removed: Vec<&Value> = lines
        .iter()
        .filter_map(|l| l.pointer("/checkpoint_diff/removed_buckets"))
        .flat_map(|v| v.as_array().unwrap())
        .collect();
    assert_eq!(removed.len(), 1, "the shared bucket is removed: {lines:?}");

    // Bob never sees alice's list.
    let mut b = bob.stream(json!({"client_id": "b1"})).await;
    let lines = b.until("checkpoint_complete", T).await;
    assert_eq!(
        common::put_ids(&lines, "lists"),
        vec!["00000000-0000-0000-0000-00000000000b"]
    );

    // A write checkpoint is reported on a later checkpoint of the same client.
    let wc: i64 = alice.write_checkpoint("a1").await.parse().unwrap();
    let deadline = tokio::time::Instant::now() + T;
    let reported = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "write checkpoint {wc} never reported"
        );
        let line = a.next_line(T).await.expect("stream stays open");
        let w = line
            .pointer("/checkpoint_diff/write_checkpoint")
            .or_else(|| line.pointer("/checkpoint/write_checkpoint"))
            .and_then(Value::as_str)
            .and_then(|w| w.parse::<i64>().ok());
        if let Some(w) = w.filter(|&w| w >= wc) {
            break w;
        }
    };
    assert!(reported >= wc);
    svc.running.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_with_powersync_codes() {
    let svc = start_service().await;
    let http = riptide_testkit::http();
    let url = format!("{}/sync/stream", svc.endpoint);
    let other = TestKeys::generate().with_kid(svc.keys.kid.clone());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("missing", None, "PSYNC_S2106"),
        ("garbage", Some("Token not-a-jwt".into()), "PSYNC_S21"),
        (
            "expired",
            Some(format!(
                "Token {}",
                svc.keys.sign(
                    &json!({"sub":"u","aud":svc.keys.audience,"iat":now-7200,"exp":now-3600})
                )
            )),
            "PSYNC_S2103",
        ),
        (
            "audience",
            Some(format!(
                "Token {}",
                svc.keys
                    .sign(&json!({"sub":"u","aud":"other","iat":now,"exp":now+60}))
            )),
            "PSYNC_S2105",
        ),
        (
            "signature",
            Some(format!("Token {}", other.token("u", 60, json!({})))),
            "PSYNC_S21",
        ),
        (
            "alg none",
            Some(format!(
                "Token {}.{}.",
                b64(&json!({"alg":"none","typ":"JWT"})),
                b64(&json!({"sub":"u","aud":svc.keys.audience,"iat":now,"exp":now+60}))
            )),
            "PSYNC_S21",
        ),
    ];
    for (name, header, code) in cases {
        let mut req = http.post(&url).json(&json!({}));
        if let Some(h) = header {
            req = req.header("Authorization", h);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{name}");
        let body: Value = resp.json().await.unwrap();
        let got = body["error"]["code"].as_str().unwrap_or_default();
        assert!(got.starts_with(code), "{name}: {body}");
    }
    let token = svc.keys.token("u", 60, json!({}));
    let resp = http
        .post(&url)
        .header("Authorization", format!("Token {token}"))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    svc.running.cancel.cancel();
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}
