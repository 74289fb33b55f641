//! Replication throughput: rows from a source transaction (or the initial snapshot) to a
//! committed checkpoint in Postgres bucket storage, end to end.
//!
//! `cargo run --release -p riptide-replication --example replication_throughput [rows]`
//! (uses riptide-testkit's private cluster, or `RIPTIDE_TEST_PG_URL`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use riptide_protocol::Lsn;
use riptide_replication::{ReplicationSource, Replicator};
use riptide_rules::SyncRules;
use riptide_storage::{BucketStorage, PgStorage};
use riptide_testkit::TestDatabase;
use tokio_util::sync::CancellationToken;

const RULES: &str = "
bucket_definitions:
  by_list:
    parameters: SELECT request.user_id() AS list_id
    data:
      - SELECT id, list_id, title, n, done FROM todos WHERE list_id = bucket.list_id
";

async fn wait_lsn(storage: &dyn BucketStorage, id: i64, lsn: Lsn) {
    loop {
        if let Ok(Some(c)) = storage.checkpoint(id).await
            && c.lsn >= lsn
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn current_lsn(client: &tokio_postgres::Client) -> Lsn {
    let s: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("lsn query")
        .get(0);
    s.parse().expect("lsn parses")
}

#[tokio::main]
async fn main() {
    let rows: i64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let source = TestDatabase::create().await;
    let storage_db = source.sibling("storage").await;
    let client = source.client().await;
    client
        .batch_execute(
            "CREATE TABLE todos (id text PRIMARY KEY, list_id text, title text, n int4, done bool);
             CREATE PUBLICATION powersync FOR ALL TABLES;",
        )
        .await
        .expect("source schema");
    let insert = format!(
        "INSERT INTO todos SELECT 'todo-' || i || '-' || $1::text, 'list-' || (i % 100), \
         'title number ' || i, i, i % 2 = 0 FROM generate_series(1, {rows}) i"
    );
    client
        .execute(&insert, &[&"s"])
        .await
        .expect("snapshot rows");

    let storage = PgStorage::connect(&storage_db.url())
        .await
        .expect("storage");
    storage.migrate().await.expect("migrate");
    let storage: Arc<dyn BucketStorage> = Arc::new(storage);
    let deployment = storage
        .create_deployment(RULES, "riptide_")
        .await
        .expect("deployment");
    let (events, _) = tokio::sync::broadcast::channel(16);
    let replicator = Arc::new(Replicator::new(
        ReplicationSource {
            connection: source.connection(),
            publication: "powersync".into(),
            slot_prefix: "riptide_".into(),
        },
        storage.clone(),
        events,
    ));
    let rules = Arc::new(SyncRules::parse(RULES).expect("rules"));
    let cancel = CancellationToken::new();

    let started = Instant::now();
    let task = tokio::spawn({
        let replicator = replicator.clone();
        let deployment = deployment.clone();
        let cancel = cancel.clone();
        async move { replicator.run(deployment, rules, cancel).await }
    });
    loop {
        if storage
            .deployment(deployment.id)
            .await
            .map(|d| d.snapshot_done)
            .unwrap_or(false)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let snapshot = started.elapsed();

    let started = Instant::now();
    client
        .execute(&insert, &[&"t"])
        .await
        .expect("streamed rows");
    let lsn = current_lsn(&client).await;
    let inserted = started.elapsed();
    wait_lsn(storage.as_ref(), deployment.id, lsn).await;
    let streamed = started.elapsed();

    cancel.cancel();
    task.await.expect("join").expect("replicator");

    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    println!("| phase | rows | seconds | rows/s |");
    println!("|---|---|---|---|");
    println!(
        "| snapshot (to snapshot done) | {rows} | {:.2} | {:.0} |",
        snapshot.as_secs_f64(),
        rate(snapshot)
    );
    println!(
        "| one-transaction INSERT … generate_series (source INSERT alone {:.2} s) | {rows} | {:.2} | {:.0} |",
        inserted.as_secs_f64(),
        streamed.as_secs_f64(),
        rate(streamed)
    );
}
