//! The app's process on a TLS-only Postgres (the test kit's TLS server: `hostnossl` rejected,
//! SCRAM): a `DIRECT_DATABASE_URL` with `sslmode=verify-full`, the CA file and
//! `channel_binding=require` runs the migrations, opens the pool and serves sign-up.

use app_server::{AppState, migrations};
use riptide_testkit::{TestDatabase, tls_server};

use crate::app::{Keys, TestApp, app_root, config_from, env, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_runs_on_a_tls_database_url_with_channel_binding() {
    let server = tls_server();
    let db = TestDatabase::create_on(&server.cluster).await;
    let url = server.url(
        "localhost",
        db.name(),
        &format!(
            "sslmode=verify-full&sslrootcert={}&channel_binding=require",
            server.ca_path().display()
        ),
    );
    let root = app_root();
    let keys = Keys::generate();
    let config = config_from(&env(&url, &keys, "http://127.0.0.1:9", root.path()));
    let applied =
        migrations::run_from_url(&config.database_url, &config.app_root.join("migrations"))
            .await
            .unwrap();
    assert_eq!(applied.first().map(String::as_str), Some("0001_init.sql"));
    let state = AppState::connect(config).await.unwrap();
    let base = serve(state.clone()).await;
    let app = TestApp {
        state,
        db,
        _root: root,
        keys,
        base,
        http: riptide_testkit::http(),
    };
    app.signed_up("tls_user").await;
    assert_eq!(app.count("SELECT count(*) FROM users").await, 1);

    // Without TLS, the server's refusal stops start-up.
    let plain = server.url("localhost", app.db.name(), "sslmode=disable");
    let err = migrations::run_from_url(&plain, &app._root.path().join("migrations"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, migrations::MigrationError::Connect(_)),
        "{err}"
    );
}
