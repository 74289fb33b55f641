//! The built UI is served from `web/dist`, with client-side routes falling back to index.html;
//! `/api` stays the API.

use std::net::SocketAddr;

use app_server::AppState;
use riptide_testkit::TestDatabase;

use crate::app::{Keys, app_root, config_from, env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_ui_is_served_with_an_spa_fallback() {
    let db = TestDatabase::create().await;
    let root = app_root();
    let dist = root.path().join("web/dist");
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html><title>realtime-app</title>",
    )
    .unwrap();
    std::fs::write(dist.join("assets/app.js"), "console.log('app')").unwrap();
    let config = config_from(&env(
        &db.url(),
        &Keys::generate(),
        "http://127.0.0.1:9",
        root.path(),
    ));
    app_server::migrations::run_from_url(&config.database_url, &root.path().join("migrations"))
        .await
        .unwrap();
    let state = AppState::connect(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app_server::router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            let resp = riptide_testkit::http_get(url).await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        }
    };
    assert_eq!(
        get("/").await,
        (200, "<!doctype html><title>realtime-app</title>".into())
    );
    assert_eq!(
        get("/lists/123").await.1,
        "<!doctype html><title>realtime-app</title>"
    );
    assert_eq!(
        get("/assets/app.js").await,
        (200, "console.log('app')".into())
    );
    let (s, body) = get("/api/health").await;
    assert_eq!((s, body.as_str()), (200, r#"{"ok":true}"#));
    let (s, body) = get("/api/unknown").await;
    assert_eq!(s, 404);
    assert!(body.contains("not_found"), "{body}");
}
