//! The migration runner: order, advisory lock, checksums, file names.

use std::path::Path;

use app_server::migrations::{self, MigrationError};
use riptide_testkit::TestDatabase;

use crate::app::app_root;

fn write(dir: &Path, name: &str, sql: &str) {
    std::fs::write(dir.join(name), sql).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_migration_applies_once_and_an_edit_stops_start_up() {
    let db = TestDatabase::create().await;
    let root = app_root();
    let dir = root.path().join("migrations");
    let applied = migrations::run_from_url(&db.url(), &dir).await.unwrap();
    assert_eq!(applied, ["0001_init.sql", "0002_list_owner_username.sql"]);
    let client = db.client().await;
    let published: Vec<String> = client
        .query("SELECT tablename::text FROM pg_publication_tables WHERE pubname = 'powersync' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(published, ["list_members", "lists", "todos"]);

    // A restart applies nothing.
    assert!(
        migrations::run_from_url(&db.url(), &dir)
            .await
            .unwrap()
            .is_empty()
    );

    // Editing the applied file stops the next start with a message naming it.
    let path = dir.join("0001_init.sql");
    let mut sql = std::fs::read_to_string(&path).unwrap();
    sql.push_str("\n-- a harmless-looking edit\n");
    std::fs::write(&path, sql).unwrap();
    let err = migrations::run_from_url(&db.url(), &dir).await.unwrap_err();
    assert!(
        matches!(err, MigrationError::Edited { ref file, .. } if file == "0001_init.sql"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("0001_init.sql") && message.contains("changed after it was applied"),
        "{message}"
    );

    // Nor does a full start-up get past it.
    let keys = crate::app::Keys::generate();
    let config = crate::app::config_from(&crate::app::env(
        &db.url(),
        &keys,
        "http://127.0.0.1:9",
        root.path(),
    ));
    let err = app_server::prepare(config)
        .await
        .err()
        .expect("start-up refused");
    assert!(err.to_string().contains("0001_init.sql"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_in_order_once_under_concurrent_start_ups() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    // Written out of order; 0002 and 0010 depend on 0001 and 0002.
    write(
        dir.path(),
        "0010_more.sql",
        "INSERT INTO log (what) VALUES ('0010');",
    );
    write(
        dir.path(),
        "0002_seed.sql",
        "INSERT INTO log (what) VALUES ('0002'); SELECT pg_sleep(0.2);",
    );
    write(
        dir.path(),
        "0001_create.sql",
        "CREATE TABLE log (n serial PRIMARY KEY, what text NOT NULL);",
    );
    write(dir.path(), "README.md", "not a migration");

    let url = db.url();
    let runs = (0..3).map(|_| {
        let (url, dir) = (url.clone(), dir.path().to_owned());
        tokio::spawn(async move { migrations::run_from_url(&url, &dir).await })
    });
    let mut applied_by = Vec::new();
    for run in runs {
        applied_by.push(run.await.unwrap().expect("every start-up succeeds"));
    }
    let total: usize = applied_by.iter().map(Vec::len).sum();
    assert_eq!(
        total, 3,
        "each migration applied exactly once: {applied_by:?}"
    );
    assert!(applied_by.contains(&vec![
        "0001_create.sql".to_owned(),
        "0002_seed.sql".to_owned(),
        "0010_more.sql".to_owned()
    ]));
    let client = db.client().await;
    let log: Vec<String> = client
        .query("SELECT what FROM log ORDER BY n", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(log, ["0002", "0010"]);
    let versions: Vec<i64> = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_migration_rolls_back_alone() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "0001_ok.sql", "CREATE TABLE a (id int);");
    write(
        dir.path(),
        "0002_bad.sql",
        "CREATE TABLE b (id int); SELECT no_such_function();",
    );
    let err = migrations::run_from_url(&db.url(), dir.path())
        .await
        .unwrap_err();
    assert!(
        matches!(err, MigrationError::Apply { ref file, .. } if file == "0002_bad.sql"),
        "{err:?}"
    );
    let client = db.client().await;
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tables,
        ["a", "schema_migrations"],
        "0001 kept, 0002 rolled back"
    );
}

#[test]
fn malformed_and_duplicate_file_names_are_errors() {
    for bad in [
        "init.sql",
        "1_init.sql",
        "0001-init.sql",
        "0001_.sql",
        "0001_in it.sql",
        "abcd_init.sql",
    ] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), bad, "SELECT 1;");
        let err = migrations::read_dir(dir.path()).unwrap_err();
        assert!(
            matches!(err, MigrationError::BadName { ref file } if file == bad),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains(bad));
    }
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "0001_a.sql", "SELECT 1;");
    write(dir.path(), "0001_b.sql", "SELECT 2;");
    let err = migrations::read_dir(dir.path()).unwrap_err();
    assert!(
        matches!(err, MigrationError::DuplicateVersion { version: 1, .. }),
        "{err:?}"
    );
}
