//! Bucket storage on the test kit's TLS-only server: connected with `verify-full` against the
//! generated CA and migrated; refused clearly without TLS.

use riptide_storage::{BucketStorage, PgStorage, StorageError};
use riptide_testkit::{TestDatabase, tls_server};

#[tokio::test]
async fn storage_connects_and_migrates_over_tls() {
    let server = tls_server();
    let db = TestDatabase::create_on(&server.cluster).await;
    assert!(db.url().contains("sslmode=verify-full"));
    let storage = PgStorage::connect(&db.url()).await.unwrap();
    storage.migrate().await.unwrap();
    let deployment = storage
        .create_deployment("bucket_definitions: {}", "riptide_")
        .await
        .unwrap();
    assert_eq!(
        storage.deployment(deployment.id).await.unwrap().id,
        deployment.id
    );
    let pooled = storage.pool().get().await.unwrap();
    let ssl: bool = pooled
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "pooled storage connections use TLS");

    let plain = server.url("localhost", db.name(), "sslmode=disable");
    let err = PgStorage::connect(&plain).await.unwrap_err();
    assert!(matches!(err, StorageError::Connect(_)), "{err:?}");
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("without TLS"), "{cause}");
}
