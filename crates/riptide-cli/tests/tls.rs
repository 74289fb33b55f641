//! `riptide create-database --server-url` through the binary against the test kit's TLS-only
//! server: the URL's `sslmode=verify-full` and CA file are used and kept; without TLS the error
//! names the server's refusal and never the password.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use riptide_testkit::tls_server;

fn riptide(home: &std::path::Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_riptide"))
        .args(args)
        .env("RIPTIDE_HOME", home)
        .current_dir(home.parent().unwrap())
        .output()
        .unwrap()
}

#[tokio::test]
async fn create_database_with_a_tls_server_url() {
    let server = tls_server();
    let dir = tempfile::Builder::new()
        .prefix("riptide-cli-tls")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.path().join("home");
    let name = format!("clitls{:08x}", rand::random::<u32>());
    let url = server.cluster.url("postgres");

    let out = riptide(
        &home,
        &["create-database", &name, "--server-url", &url, "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let direct = db["directUri"].as_str().unwrap();
    assert!(direct.contains("sslmode=verify-full"), "{db}");
    // The output never holds the password; the URL is otherwise the one to use.
    assert!(!direct.contains(&server.password), "{db}");
    let direct = direct.replace(":***@", &format!(":{}@", server.password));
    let client = riptide_pg::PgConnection::from_uri(&direct)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);

    let plain = server.url("localhost", "postgres", "sslmode=disable");
    let out = riptide(&home, &["create-database", "other", "--server-url", &plain]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without TLS"), "{stderr}");
    assert!(!stderr.contains(&server.password), "{stderr}");
}
