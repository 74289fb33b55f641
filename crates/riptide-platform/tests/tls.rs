//! `create-database --server-url` against the test kit's TLS-only server: the URL's TLS
//! parameters (verify-full, the CA file) are used to create the database and kept in the URL
//! the platform hands out; without TLS the server's refusal is named.

use std::os::unix::fs::PermissionsExt;

use riptide_pg::PgConnection;
use riptide_platform::{Platform, PlatformError, Quiet, database};
use riptide_testkit::tls_server;

fn temp_home() -> (tempfile::TempDir, Platform) {
    let dir = tempfile::Builder::new()
        .prefix("riptide-platform-tls-test")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let platform = Platform::new(dir.path().join("home"), "/nonexistent/riptide");
    (dir, platform)
}

#[tokio::test]
async fn create_database_with_a_tls_server_url() {
    let server = tls_server();
    let (_dir, p) = temp_home();
    let name = format!("tls{:08x}", rand::random::<u32>());
    let url = server.cluster.url("postgres");
    assert!(url.contains("sslmode=verify-full"), "{url}");
    let info = database::create_database(&p, &name, Some(&url), &Quiet)
        .await
        .unwrap();
    assert!(!info.already);
    assert!(
        info.direct_uri
            .contains(&format!("/{name}?sslmode=verify-full")),
        "the database's URL keeps the TLS settings: {}",
        riptide_pg::uri::redact(&info.direct_uri)
    );
    let client = PgConnection::from_uri(&info.direct_uri)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT current_database()::text, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), name);
    assert!(row.get::<_, bool>(1));

    // Without TLS the server refuses, and the error says so (password redacted).
    let plain = server.url("localhost", "postgres", "sslmode=disable");
    let err = database::create_database(&p, "other", Some(&plain), &Quiet)
        .await
        .unwrap_err();
    assert!(matches!(err, PlatformError::Connect { .. }), "{err}");
    let chain = format!("{:#}", anyhow_like(&err));
    assert!(chain.contains("without TLS"), "{chain}");
    assert!(!chain.contains(&server.password), "{chain}");
}

/// `err` and its causes, as the CLI prints them.
fn anyhow_like(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
