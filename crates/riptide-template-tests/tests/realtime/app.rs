//! A running app for a test: fresh database, a copy of the template's migrations and rules in a
//! temporary app root, the router on 127.0.0.1:0, and an HTTP client with one cookie per user.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use app_server::{AppState, Config};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use riptide_testkit::TestDatabase;
use serde_json::{Value, json};

/// The template folder in this repository.
pub fn template_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/realtime")
}

/// A fresh Ed25519 key as the private JWK of `POWERSYNC_SIGNING_KEY` and its public JWK.
pub struct Keys {
    pub private_jwk: Value,
    pub public_jwk: Value,
    pub kid: String,
}

impl Keys {
    pub fn generate() -> Keys {
        let signing = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let kid = format!("app-{:08x}", rand::random::<u32>());
        let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
        let d = URL_SAFE_NO_PAD.encode(signing.to_bytes());
        Keys {
            private_jwk: json!({"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":kid,"x":x,"d":d}),
            public_jwk: json!({"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":kid,"x":x}),
            kid,
        }
    }

    /// The value of `POWERSYNC_SIGNING_KEY`.
    pub fn env_value(&self) -> String {
        STANDARD.encode(self.private_jwk.to_string())
    }
}

/// An app root holding a copy of the template's migrations and sync rules.
pub fn app_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = template_dir();
    std::fs::create_dir(dir.path().join("migrations")).unwrap();
    for entry in std::fs::read_dir(src.join("migrations")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            dir.path().join("migrations").join(entry.file_name()),
        )
        .unwrap();
    }
    std::fs::copy(
        src.join("sync-rules.yaml"),
        dir.path().join("sync-rules.yaml"),
    )
    .unwrap();
    dir
}

/// The environment of a test app.
pub fn env(db_url: &str, keys: &Keys, powersync_url: &str, root: &Path) -> HashMap<String, String> {
    HashMap::from([
        ("DIRECT_DATABASE_URL".into(), db_url.to_owned()),
        ("POWERSYNC_SIGNING_KEY".into(), keys.env_value()),
        ("POWERSYNC_URL".into(), powersync_url.to_owned()),
        ("POWERSYNC_API_TOKEN".into(), "test-admin-token".into()),
        ("APP_ROOT".into(), root.display().to_string()),
    ])
}

pub fn config_from(env: &HashMap<String, String>) -> Config {
    Config::from_lookup(|name| env.get(name).cloned()).expect("test config is valid")
}

pub struct TestApp {
    pub state: AppState,
    pub db: TestDatabase,
    pub _root: tempfile::TempDir,
    pub keys: Keys,
    pub base: String,
    pub http: reqwest::Client,
}

impl TestApp {
    /// Migrations + state + router, without deploying rules (no sync service needed).
    pub async fn start() -> TestApp {
        TestApp::start_with(|_| {}).await
    }

    /// [`TestApp::start`] with the config changed by `adjust` (limits, trusted proxies).
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let db = TestDatabase::create().await;
        let root = app_root();
        let keys = Keys::generate();
        let mut config = config_from(&env(&db.url(), &keys, "http://127.0.0.1:9", root.path()));
        adjust(&mut config);
        app_server::migrations::run_from_url(
            &config.database_url,
            &config.app_root.join("migrations"),
        )
        .await
        .expect("migrations run");
        let state = AppState::connect(config.clone()).await.expect("app state");
        let base = serve(state.clone()).await;
        TestApp {
            state,
            db,
            _root: root,
            keys,
            base,
            http: riptide_testkit::http(),
        }
    }

    pub fn user(&self) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            cookie: None,
            id: String::new(),
            forwarded_for: None,
        }
    }

    /// A browser whose requests carry `X-Forwarded-For: ip` (believed only from a trusted
    /// proxy).
    pub fn user_at(&self, ip: &str) -> Client {
        Client {
            forwarded_for: Some(ip.to_owned()),
            ..self.user()
        }
    }

    /// A signed-up, signed-in user.
    pub async fn signed_up(&self, username: &str) -> Client {
        let mut c = self.user();
        let (s, body) = c
            .post(
                "/api/auth/signup",
                json!({"username": username, "password": "correct horse"}),
            )
            .await;
        assert_eq!(s, 201, "{body}");
        c.id = body["user"]["id"].as_str().unwrap().to_owned();
        c
    }

    pub async fn query_one(&self, sql: &str) -> tokio_postgres::Row {
        self.db.client().await.query_one(sql, &[]).await.unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.query_one(sql).await.get(0)
    }
}

/// Serves the app's router on a loopback port; returns its base URL.
pub async fn serve(state: AppState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app_server::router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}

/// One browser: remembers its session cookie.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
    pub id: String,
    /// Sent as `X-Forwarded-For`.
    pub forwarded_for: Option<String>,
}

impl Client {
    fn remember(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            let text = v.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            if let Some(value) = pair.strip_prefix("session=") {
                self.cookie = (!value.is_empty()).then(|| format!("session={value}"));
            }
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header(reqwest::header::COOKIE, c);
        }
        if let Some(ip) = &self.forwarded_for {
            req = req.header("x-forwarded-for", ip);
        }
        req
    }

    pub async fn send(
        &mut self,
        req: reqwest::RequestBuilder,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let resp = req.send().await.unwrap();
        self.remember(&resp);
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body, headers)
    }

    pub async fn post(&mut self, path: &str, body: Value) -> (u16, Value) {
        let req = self.request(reqwest::Method::POST, path).json(&body);
        let (s, b, _) = self.send(req).await;
        (s, b)
    }

    pub async fn get(&mut self, path: &str) -> (u16, Value) {
        let req = self.request(reqwest::Method::GET, path);
        let (s, b, _) = self.send(req).await;
        (s, b)
    }

    /// `POST /api/sync` with these entries.
    pub async fn upload(&mut self, batch: Value) -> (u16, Value) {
        self.post("/api/sync", json!({ "batch": batch })).await
    }
}

/// A CrudEntry.
pub fn entry(op: &str, table: &str, id: &str, data: Value, op_id: i64) -> Value {
    json!({"op": op, "type": table, "id": id, "data": data, "op_id": op_id, "tx_id": op_id})
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
