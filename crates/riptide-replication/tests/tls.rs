//! Replication over TLS: the source and the bucket storage on the test kit's TLS-only server
//! (`hostnossl` rejected), `verify-full` against the generated CA and `channel_binding=require`
//! on every connection, the walsender included. The slot is created and a change streamed
//! through the real replicator.

use std::sync::Arc;
use std::time::Duration;

use riptide_pg::{ChannelBinding, SslMode, TlsOptions};
use riptide_protocol::OpId;
use riptide_replication::{ReplicationSource, Replicator};
use riptide_rules::SyncRules;
use riptide_storage::{BucketStorage, PgStorage};
use riptide_testkit::{TestDatabase, tls_server, wait_for};
use tokio_util::sync::CancellationToken;

const RULES: &str = "
bucket_definitions:
  global:
    data:
      - SELECT id, title FROM todos
";

/// The ids in bucket `global[]` as of the latest checkpoint.
async fn stored_ids(storage: &PgStorage, deployment: i64) -> Vec<String> {
    let Some(checkpoint) = storage.checkpoint(deployment).await.unwrap() else {
        return Vec::new();
    };
    let chunks = storage
        .bucket_data(
            deployment,
            checkpoint.op_id,
            &[("global[]".to_owned(), OpId::ZERO)],
            1000,
        )
        .await
        .unwrap();
    let mut ids: Vec<String> = chunks
        .into_iter()
        .flat_map(|c| c.ops)
        .filter_map(|op| op.object_id)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_streaming_over_tls_with_channel_binding() {
    let server = tls_server();
    let source = TestDatabase::create_on(&server.cluster).await;
    source
        .client()
        .await
        .batch_execute(
            "CREATE TABLE todos (id text PRIMARY KEY, title text);
             INSERT INTO todos VALUES ('before', 'copied by the snapshot');
             CREATE PUBLICATION powersync FOR ALL TABLES;",
        )
        .await
        .unwrap();

    // Storage over TLS too (the URL carries verify-full and the CA file).
    let storage_db = source.sibling("storage").await;
    assert!(storage_db.url().contains("sslmode=verify-full"));
    let storage = Arc::new(PgStorage::connect(&storage_db.url()).await.unwrap());
    storage.migrate().await.unwrap();
    let deployment = storage.create_deployment(RULES, "riptide_").await.unwrap();

    let mut connection = source.connection();
    let tls = connection.tls().clone();
    assert_eq!(tls.mode, SslMode::VerifyFull);
    connection.set_tls(TlsOptions {
        channel_binding: ChannelBinding::Require,
        ..tls
    });
    let (events, _) = tokio::sync::broadcast::channel(64);
    let replicator = Arc::new(Replicator::new(
        ReplicationSource {
            connection,
            publication: "powersync".into(),
            slot_prefix: "riptide_".into(),
        },
        storage.clone(),
        events,
    ));
    let rules = Arc::new(SyncRules::parse(RULES).unwrap());
    replicator.check_source(&rules).await.unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let (replicator, deployment, cancel) =
            (replicator.clone(), deployment.clone(), cancel.clone());
        async move { replicator.run(deployment, rules, cancel).await }
    });

    let id = deployment.id;
    wait_for("the snapshot over TLS", Duration::from_secs(60), || {
        let storage = storage.clone();
        async move { (stored_ids(&storage, id).await == ["before"]).then_some(()) }
    })
    .await;

    // The slot exists, and its walsender session is on TLS.
    let client = source.client().await;
    let slot = deployment.slot_name.clone();
    let ssl: bool = wait_for("the slot's walsender", Duration::from_secs(30), || {
        let (client, slot) = (&client, slot.clone());
        async move {
            client
                .query_opt(
                    "SELECT s.ssl FROM pg_replication_slots r \
                     JOIN pg_stat_ssl s ON s.pid = r.active_pid WHERE r.slot_name = $1",
                    &[&slot],
                )
                .await
                .unwrap()
                .map(|row| row.get(0))
        }
    })
    .await;
    assert!(ssl, "the walsender session uses TLS");

    client
        .batch_execute("INSERT INTO todos VALUES ('after', 'streamed')")
        .await
        .unwrap();
    wait_for(
        "a streamed change over TLS",
        Duration::from_secs(60),
        || {
            let storage = storage.clone();
            async move { (stored_ids(&storage, id).await == ["after", "before"]).then_some(()) }
        },
    )
    .await;

    cancel.cancel();
    task.await.unwrap().unwrap();
}
