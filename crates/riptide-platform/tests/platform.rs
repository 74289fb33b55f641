//! The platform functions against a real Postgres (`riptide-testkit`'s server for the
//! `--server-url` provider, a private cluster for the local one), each in a temporary
//! `RIPTIDE_HOME`: results, idempotency, bad input, and that a failure leaves nothing behind.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use riptide_platform::state::Provider;
use riptide_platform::{
    Platform, PlatformError, Quiet, app, connect, database, state, status, sync,
};

/// A temporary home the `postgres` user can reach (PostgreSQL runs as it under root).
fn temp_home() -> (tempfile::TempDir, Platform) {
    let dir = tempfile::Builder::new()
        .prefix("riptide-platform-test")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let platform = Platform::new(dir.path().join("home"), "/nonexistent/riptide");
    (dir, platform)
}

fn server_url() -> String {
    riptide_testkit::server().url("postgres")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{:08x}", rand::random::<u32>())
}

async fn exists_on_server(dbname: &str) -> bool {
    let client = riptide_pg::PgConnection::from_uri(&server_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname])
        .await
        .unwrap()
        .is_some()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test]
async fn create_database_on_a_server_is_idempotent_and_refuses_clashes() {
    let (_dir, p) = temp_home();
    let name = unique("db");
    let url = server_url();
    let info = database::create_database(&p, &name, Some(&url), &Quiet)
        .await
        .unwrap();
    assert!(info.id.starts_with("db_"));
    assert_eq!(info.provider, Provider::Server);
    assert!(!info.already);
    assert!(info.direct_uri.ends_with(&format!("/{name}")));
    assert_eq!(info.pooled_uri, info.direct_uri);
    assert!(exists_on_server(&name).await);
    let client = riptide_pg::PgConnection::from_uri(&info.direct_uri)
        .unwrap()
        .connect()
        .await;
    assert!(client.is_ok(), "the returned URI connects");

    let again = database::create_database(&p, &name, Some(&url), &Quiet)
        .await
        .unwrap();
    assert!(again.already);
    assert_eq!(again.id, info.id);

    // The same name elsewhere (the local provider) is a clash.
    let err = database::create_database(&p, &name, None, &Quiet)
        .await
        .unwrap_err();
    assert!(matches!(err, PlatformError::Conflict(_)), "{err}");

    // A database that exists on the server but was not made here is not adopted.
    let (_dir2, p2) = temp_home();
    let err = database::create_database(&p2, &name, Some(&url), &Quiet)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(state::read(p2.home()).unwrap().databases.is_empty());

    // Unknown ids, invalid names.
    let err = sync::sync_enable(&p, "db_nope", None, &Quiet)
        .await
        .unwrap_err();
    assert!(matches!(err, PlatformError::NotFound { .. }), "{err}");
    for bad in ["Bad", "has space", "-x", "x/y", ""] {
        let err = database::create_database(&p, bad, Some(&url), &Quiet)
            .await
            .unwrap_err();
        assert!(
            matches!(err, PlatformError::InvalidName { .. }),
            "{bad}: {err}"
        );
    }
    assert_eq!(state::read(p.home()).unwrap().databases.len(), 1);

    // A bad server URL creates nothing.
    let err = database::create_database(&p, "other", Some("mysql://x/y"), &Quiet)
        .await
        .unwrap_err();
    assert!(matches!(err, PlatformError::InvalidUrl(_)), "{err}");
    let err = database::create_database(
        &p,
        "other",
        Some("postgres://postgres@127.0.0.1:1/postgres"),
        &Quiet,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PlatformError::Connect { .. }), "{err}");
    assert_eq!(state::read(p.home()).unwrap().databases.len(), 1);
}

#[tokio::test]
async fn local_provider_runs_a_managed_cluster() {
    let (_dir, p) = temp_home();
    let info = database::create_database(&p, "shop", None, &Quiet)
        .await
        .unwrap();
    assert_eq!(info.provider, Provider::Local);
    assert_eq!(info.pooled_uri, info.direct_uri);
    assert!(info.note.contains("same"));
    let st = state::read(p.home()).unwrap();
    let cluster = st.cluster.clone().unwrap();
    assert!(info.direct_uri.contains(&format!(":{}/shop", cluster.port)));
    let c = riptide_pg::PgConnection::from_uri(&info.direct_uri)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let level: String = c.query_one("SHOW wal_level", &[]).await.unwrap().get(0);
    assert_eq!(level, "logical");
    drop(c);

    let again = database::create_database(&p, "shop", None, &Quiet)
        .await
        .unwrap();
    assert!(again.already);

    // stop --all stops the cluster; the next command starts it again on the same port.
    let stopped = status::stop(&p, None, true).await.unwrap();
    assert_eq!(stopped.stopped, vec!["cluster".to_owned()]);
    let s = status::status(&p).await.unwrap();
    assert!(!s.cluster.as_ref().unwrap().running);
    let second = database::create_database(&p, "books", None, &Quiet)
        .await
        .unwrap();
    assert!(
        second
            .direct_uri
            .contains(&format!(":{}/books", cluster.port))
    );
    let s = status::status(&p).await.unwrap();
    assert!(s.cluster.as_ref().unwrap().running);
    assert_eq!(s.databases.len(), 2);

    // A port in use: the cluster cannot start, and says why.
    status::stop(&p, None, true).await.unwrap();
    let blocker = std::net::TcpListener::bind(("127.0.0.1", cluster.port)).unwrap();
    let err = database::create_database(&p, "shop", None, &Quiet)
        .await
        .unwrap_err();
    assert!(matches!(err, PlatformError::PortInUse { .. }), "{err}");
    drop(blocker);
    status::stop(&p, None, true).await.unwrap();
}

#[tokio::test]
async fn sync_enable_refuses_a_server_without_logical_replication() {
    let (dir, p) = temp_home();
    // A server with wal_level = replica.
    let pg = riptide_localpg::LocalCluster::new(dir.path().join("replica-pg"));
    pg.init(
        riptide_localpg::Durability::Ephemeral,
        &riptide_localpg::Auth::Trust,
    )
    .unwrap();
    let conf = pg.data_dir().join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("\nwal_level = replica\n");
    std::fs::write(&conf, text).unwrap();
    let port = pg.start(None).unwrap();
    let url = riptide_localpg::url(port, "postgres");
    let result = async {
        let db = database::create_database(&p, "legacy", Some(&url), &Quiet)
            .await
            .unwrap();
        let before = std::fs::read(p.home().join("state.json")).unwrap();
        let err = sync::sync_enable(&p, &db.id, None, &Quiet)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, PlatformError::WalLevel(_)), "{msg}");
        assert!(
            msg.contains("wal_level = replica")
                && msg.contains("ALTER SYSTEM SET wal_level = logical"),
            "{msg}"
        );
        // Nothing was made: state, files, publication, storage database.
        assert_eq!(std::fs::read(p.home().join("state.json")).unwrap(), before);
        assert!(entries(&p.home().join("sync")).is_empty());
        let c = riptide_pg::PgConnection::from_uri(&db.direct_uri)
            .unwrap()
            .connect()
            .await
            .unwrap();
        assert!(
            c.query_opt("SELECT 1 FROM pg_publication", &[])
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            c.query_opt(
                "SELECT 1 FROM pg_database WHERE datname = 'legacy_sync_storage'",
                &[]
            )
            .await
            .unwrap()
            .is_none()
        );
        // connect needs sync.
        let app = app::create_app(&p, "legacy-app", "realtime", Some(dir.path()))
            .await
            .unwrap();
        let err = connect::connect(&p, &app.id, "legacy").await.unwrap_err();
        assert!(err.to_string().contains("sync is not enabled"), "{err}");
        assert!(!app.path.join(".env").exists());
    }
    .await;
    pg.stop(false).unwrap();
    result
}

#[tokio::test]
async fn sync_enable_refuses_a_port_in_use() {
    let (_dir, p) = temp_home();
    let name = unique("busy");
    let db = database::create_database(&p, &name, Some(&server_url()), &Quiet)
        .await
        .unwrap();
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let err = sync::sync_enable(&p, &db.name, Some(port), &Quiet)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PlatformError::PortInUse { port: p2 } if p2 == port),
        "{err}"
    );
    assert!(state::read(p.home()).unwrap().sync.is_empty());
    assert!(!exists_on_server(&format!("{name}_sync_storage")).await);
}

#[tokio::test]
async fn create_app_scaffolds_the_embedded_template_atomically() {
    let (dir, p) = temp_home();
    let parent = dir.path().join("apps");
    let info = app::create_app(&p, "todo-demo", "realtime", Some(&parent))
        .await
        .unwrap();
    assert!(info.id.starts_with("app_"));
    let root = parent.join("todo-demo");
    assert_eq!(info.path, std::fs::canonicalize(&root).unwrap());
    let cargo = std::fs::read_to_string(root.join("server/Cargo.toml")).unwrap();
    assert!(cargo.contains("name = \"todo-demo-server\""), "{cargo}");
    assert!(cargo.contains("\n[workspace]\n"));
    assert!(root.join("server/Cargo.lock").is_file());
    assert!(!root.join("CONTRACT.md").exists());
    assert!(!root.join("web/node_modules").exists());
    if let Ok(pkg) = std::fs::read_to_string(root.join("web/package.json")) {
        assert!(pkg.contains("todo-demo-web"));
        assert!(!pkg.contains("realtime-app"));
    }

    let again = app::create_app(&p, "todo-demo", "realtime", Some(&parent))
        .await
        .unwrap();
    assert!(again.already);
    assert_eq!(again.id, info.id);

    // Clashes and bad input: clear errors, nothing created.
    let other = dir.path().join("elsewhere");
    let err = app::create_app(&p, "todo-demo", "realtime", Some(&other))
        .await
        .unwrap_err();
    assert!(matches!(err, PlatformError::Conflict(_)), "{err}");
    std::fs::create_dir_all(parent.join("taken")).unwrap();
    let err = app::create_app(&p, "taken", "realtime", Some(&parent))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let err = app::create_app(&p, "Bad_Name", "realtime", Some(&parent))
        .await
        .unwrap_err();
    assert!(matches!(err, PlatformError::InvalidName { .. }), "{err}");
    let err = app::create_app(&p, "x", "nope", Some(&parent))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown template"), "{err}");
    assert_eq!(
        entries(&parent),
        vec!["taken".to_owned(), "todo-demo".to_owned()]
    );
    assert_eq!(state::read(p.home()).unwrap().apps.len(), 1);

    // A deleted app folder is made again under the same id.
    std::fs::remove_dir_all(&root).unwrap();
    let remade = app::create_app(&p, "todo-demo", "realtime", Some(&parent))
        .await
        .unwrap();
    assert_eq!(remade.id, info.id);
    assert!(!remade.already);
    assert!(root.join("server/Cargo.toml").is_file());
    assert_eq!(state::read(p.home()).unwrap().apps.len(), 1);

    // An unwritable parent: no temp folder is left, nothing recorded.
    let ro = dir.path().join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if !riptide_localpg::is_root() {
        let err = app::create_app(&p, "nowhere", "realtime", Some(&ro))
            .await
            .unwrap_err();
        assert!(matches!(err, PlatformError::Io { .. }), "{err}");
        assert!(entries(&ro).is_empty());
        assert_eq!(state::read(p.home()).unwrap().apps.len(), 1);
    }
}

#[tokio::test]
async fn state_lock_excludes_a_second_command() {
    let (_dir, p) = temp_home();
    let held = state::Store::open(p.home(), std::time::Duration::from_secs(1))
        .await
        .unwrap();
    let err = state::Store::open(p.home(), std::time::Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, PlatformError::Locked { .. }), "{err}");
    drop(held);
    state::Store::open(p.home(), std::time::Duration::from_millis(300))
        .await
        .unwrap();
    let mode = std::fs::metadata(p.home().join("state.lock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn a_failed_sync_enable_takes_everything_back() {
    let (dir, _) = temp_home();
    // `riptide serve` that dies at once.
    let p = Platform::new(dir.path().join("home"), "/bin/false");
    let name = unique("undo");
    let db = database::create_database(&p, &name, Some(&server_url()), &Quiet)
        .await
        .unwrap();
    let c = riptide_pg::PgConnection::from_uri(&db.direct_uri)
        .unwrap()
        .connect()
        .await
        .unwrap();
    c.batch_execute("CREATE TABLE t (id uuid PRIMARY KEY)")
        .await
        .unwrap();
    let before = std::fs::read(p.home().join("state.json")).unwrap();

    let err = sync::sync_enable(&p, &name, None, &Quiet)
        .await
        .unwrap_err();
    assert!(matches!(err, PlatformError::ServiceStart { .. }), "{err}");
    assert!(err.to_string().contains("the process exited"), "{err}");
    assert_eq!(std::fs::read(p.home().join("state.json")).unwrap(), before);
    assert!(entries(&p.home().join("sync")).is_empty());
    assert!(!exists_on_server(&format!("{name}_sync_storage")).await);
    assert!(
        c.query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = 'powersync'",
            &[]
        )
        .await
        .unwrap()
        .is_none(),
        "the publication it created is dropped again"
    );

    // A binary that cannot be started at all: the same.
    let p2 = Platform::new(p.home(), "/nonexistent/riptide");
    let err = sync::sync_enable(&p2, &name, None, &Quiet)
        .await
        .unwrap_err();
    assert!(matches!(err, PlatformError::Io { .. }), "{err}");
    assert_eq!(std::fs::read(p.home().join("state.json")).unwrap(), before);
    assert!(!exists_on_server(&format!("{name}_sync_storage")).await);
}

/// Records the warnings a command gives.
#[derive(Default)]
struct Warnings(std::sync::Mutex<Vec<String>>);

impl riptide_platform::Progress for Warnings {
    fn start(&self, _message: &str) {}
    fn finish(&self) {}
    fn warn(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_owned());
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn the_local_cluster_refuses_connections_without_its_password() {
    let (_dir, p) = temp_home();
    let info = database::create_database(&p, "vault", None, &Quiet)
        .await
        .unwrap();
    let st = state::read(p.home()).unwrap();
    let cluster = st.cluster.clone().unwrap();
    let password = cluster
        .password
        .clone()
        .expect("a new cluster has a password");
    assert_eq!(password.len(), 32);
    assert_eq!(mode(&p.home().join("state.json")), 0o600);
    assert!(
        !format!("{cluster:?}").contains(&password),
        "Debug shows no password"
    );

    // The URL handed out carries the password and connects; the CLI and MCP see it redacted.
    assert!(info.direct_uri.contains(&format!("postgres:{password}@")));
    let c = riptide_pg::PgConnection::from_uri(&info.direct_uri)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let method: String = c
        .query_one(
            "SELECT string_agg(DISTINCT auth_method, ',') FROM pg_hba_file_rules",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(method, "scram-sha-256", "every pg_hba rule asks for SCRAM");
    drop(c);
    let shown = info.redacted();
    assert!(
        !shown.direct_uri.contains(&password),
        "{}",
        shown.direct_uri
    );
    assert!(
        shown.direct_uri.contains("postgres:***@"),
        "{}",
        shown.direct_uri
    );

    // Without the password, or with a wrong one, the cluster refuses (replication connections
    // go through the same SCRAM rules, checked above).
    for url in [
        riptide_localpg::url(cluster.port, "vault"),
        riptide_localpg::url_with(cluster.port, "vault", Some("wrong")),
    ] {
        let err = riptide_pg::PgConnection::from_uri(&url)
            .unwrap()
            .connect()
            .await
            .expect_err("refused without the password");
        let mut chain = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            chain.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        assert!(chain.contains("password"), "{url}: {chain}");
    }
    status::stop(&p, None, true).await.unwrap();
}

/// A cluster created by a Riptide that trusted local connections (no password in the state)
/// keeps working as it was, and each use says how to get a password-protected one.
#[tokio::test]
async fn a_cluster_from_before_passwords_keeps_working_with_a_warning() {
    let (_dir, p) = temp_home();
    std::fs::create_dir_all(p.home()).unwrap();
    let data_dir = p.home().join("clusters/local");
    let old = riptide_localpg::LocalCluster::new(&data_dir);
    old.init(
        riptide_localpg::Durability::Ephemeral,
        &riptide_localpg::Auth::Trust,
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let record = serde_json::json!({
        "version": 1,
        "cluster": {"data_dir": data_dir, "port": port},
    });
    std::fs::write(p.home().join("state.json"), record.to_string()).unwrap();

    let warnings = Warnings::default();
    let info = database::create_database(&p, "legacy", None, &warnings)
        .await
        .unwrap();
    assert_eq!(
        *warnings.0.lock().unwrap(),
        [riptide_platform::local::TRUST_WARNING]
    );
    assert_eq!(
        info.direct_uri,
        riptide_localpg::url(port, "legacy"),
        "the same password-less URLs as before"
    );
    riptide_pg::PgConnection::from_uri(&info.direct_uri)
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(
        state::read(p.home()).unwrap().cluster.unwrap().password,
        None
    );
    status::stop(&p, None, true).await.unwrap();
}
