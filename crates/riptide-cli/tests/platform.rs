//! The platform subcommands end to end through the `riptide` binary, in a temporary
//! `RIPTIDE_HOME`, on the test run's Postgres server (`--server-url`): create-database → sync
//! enable → create-app → connect → migrate → deploy-rules → schema, each run twice; status and
//! stop; bad input leaving nothing behind.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::Builder::new()
            .prefix("riptide-cli-platform")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Home { dir }
    }

    fn home(&self) -> std::path::PathBuf {
        self.dir.path().join("home")
    }

    fn run_in(&self, cwd: &Path, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_riptide"))
            .args(args)
            .env("RIPTIDE_HOME", self.home())
            .current_dir(cwd)
            .output()
            .unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_in(self.dir.path(), args)
    }

    /// Runs with `--json`, expects success, returns the JSON.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "riptide {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Runs, expects failure, returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "riptide {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn state(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.home().join("state.json")).unwrap()).unwrap()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = self.run(&["stop", "--all"]);
    }
}

fn server_url() -> String {
    riptide_testkit::server().url("postgres")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{:08x}", rand_u32())
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    nanos ^ std::process::id().rotate_left(16)
}

#[tokio::test]
async fn create_database_sync_app_connect_migrate_rules_schema() {
    let h = Home::new();
    let url = server_url();
    let name = unique("app");

    let db = h.json(&["create-database", &name, "--server-url", &url]);
    let db_id = db["id"].as_str().unwrap().to_owned();
    assert!(db_id.starts_with("db_"));
    assert_eq!(db["already"], false);
    assert!(h.json(&["create-database", &name, "--server-url", &url])["already"] == true);

    let sync = h.json(&["sync", "enable", &name]);
    assert_eq!(sync["already"], false);
    let service = sync["url"].as_str().unwrap().to_owned();
    let live = riptide_testkit::http_get(format!("{service}/probes/liveness"))
        .await
        .unwrap();
    assert!(live.status().is_success());
    let config = Path::new(sync["configPath"].as_str().unwrap());
    assert_eq!(
        std::fs::metadata(config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = h.json(&["sync", "enable", &db_id]);
    assert_eq!(again["already"], true);
    assert_eq!(again["started"], false);

    let app = h.json(&["create-app", &name, "--dir", "apps"]);
    let app_dir = Path::new(app["path"].as_str().unwrap()).to_owned();
    assert!(app_dir.join("server/Cargo.toml").is_file());
    assert_eq!(
        h.json(&["create-app", &name, "--dir", "apps"])["already"],
        true
    );

    let conn = h.json(&["connect", &name, &name]);
    assert_eq!(conn["already"], false);
    let env = std::fs::read_to_string(app_dir.join(".env")).unwrap();
    for var in [
        "VITE_POWERSYNC_URL=",
        "VITE_POWERSYNC_TOKEN_ENDPOINT=/api/powersync/token",
        "VITE_DATABASE_URL=",
        "DIRECT_DATABASE_URL=",
        "POWERSYNC_SIGNING_KEY=",
        "POWERSYNC_API_TOKEN=",
        "POWERSYNC_URL=",
    ] {
        assert!(env.lines().any(|l| l.starts_with(var)), "{var} in {env}");
    }
    assert_eq!(
        std::fs::metadata(app_dir.join(".env"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // A line the user adds survives a second connect.
    std::fs::write(app_dir.join(".env"), format!("PORT=3999\n{env}")).unwrap();
    assert_eq!(h.json(&["connect", &name, &db_id])["already"], true);
    assert!(
        std::fs::read_to_string(app_dir.join(".env"))
            .unwrap()
            .starts_with("PORT=3999\n")
    );

    // The app's own folder is enough to name it.
    let out = h.run_in(&app_dir.join("web"), &["migrate", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let migrated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!migrated["applied"].as_array().unwrap().is_empty());
    assert!(
        h.json(&["migrate", &name])["applied"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let rules = h.json(&["deploy-rules", &name]);
    assert_eq!(rules["already"], false);
    assert_eq!(h.json(&["deploy-rules", &name])["already"], true);

    let schema = h.json(&["schema", &name]);
    let ts = std::fs::read_to_string(app_dir.join("web/src/lib/schema.ts")).unwrap();
    assert!(ts.contains("new Schema({"), "{ts}");
    assert!(!schema["tables"].as_array().unwrap().is_empty());
    assert_eq!(h.json(&["schema", &name])["already"], true);

    let deploy = h.json(&["sync", "deploy-files", &name, "--out", "deploy"]);
    let deploy_dir = h.dir.path().join("deploy");
    for f in ["Dockerfile", "fly.toml", "powersync.yaml", "riptide"] {
        assert!(deploy_dir.join(f).is_file(), "{f}");
    }
    let deploy_config = std::fs::read_to_string(deploy_dir.join("powersync.yaml")).unwrap();
    assert!(!deploy_config.contains(&*env_value(&env, "POWERSYNC_API_TOKEN")));
    assert_eq!(deploy["already"], false);

    // status (no secrets), stop, restart on the same port.
    let out = h.run(&["status", "--json"]);
    let status_text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!status_text.contains(&*env_value(&env, "POWERSYNC_API_TOKEN")));
    let status: Value = serde_json::from_str(&status_text).unwrap();
    assert_eq!(status["sync"][0]["running"], true);
    let sync_id = sync["id"].as_str().unwrap();
    let stopped = h.json(&["stop", sync_id]);
    assert_eq!(stopped["stopped"][0], sync_id);
    assert!(
        riptide_testkit::http_get(format!("{service}/probes/liveness"))
            .await
            .is_err()
    );
    assert_eq!(h.json(&["stop", &name])["notRunning"][0], sync_id);
    let restarted = h.json(&["sync", "enable", &name]);
    assert_eq!(restarted["started"], true);
    assert_eq!(restarted["url"], service.as_str());
    assert!(
        riptide_testkit::http_get(format!("{service}/probes/liveness"))
            .await
            .unwrap()
            .status()
            .is_success()
    );
}

fn env_value(env: &str, key: &str) -> String {
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn sync_enable_publishes_all_tables_of_an_existing_database() {
    let h = Home::new();
    let name = unique("existing");
    h.json(&["create-database", &name, "--server-url", &server_url()]);
    let db_url = riptide_testkit::server().url(&name);
    let client = riptide_pg::PgConnection::from_uri(&db_url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    client
        .batch_execute("CREATE TABLE items (id uuid PRIMARY KEY, name text)")
        .await
        .unwrap();
    let sync = h.json(&["sync", "enable", &name]);
    assert_eq!(sync["publication"], "created FOR ALL TABLES");
    let all: bool = client
        .query_one(
            "SELECT puballtables FROM pg_publication WHERE pubname = 'powersync'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(all);
}

#[test]
fn bad_input_is_a_clear_error_and_changes_nothing() {
    let h = Home::new();
    assert!(
        h.fails(&["sync", "enable", "db_unknown"])
            .contains("no database \"db_unknown\"")
    );
    assert!(
        h.fails(&["connect", "nope", "nada"])
            .contains("no app \"nope\"")
    );
    assert!(
        h.fails(&["create-database", "Not Valid"])
            .contains("invalid name")
    );
    assert!(h.fails(&["create-app", "UPPER"]).contains("invalid name"));
    assert!(h.fails(&["stop"]).contains("--all"));
    assert!(h.fails(&["schema"]).contains("not inside an app folder"));
    std::fs::create_dir_all(h.dir.path().join("taken")).unwrap();
    assert!(h.fails(&["create-app", "taken"]).contains("already exists"));
    let state = std::fs::read(h.home().join("state.json")).ok();
    assert!(state.is_none() || h.state()["apps"].as_array().unwrap().is_empty());
    let mut names: Vec<String> = std::fs::read_dir(h.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["home".to_owned(), "taken".to_owned()]);
}

/// Lines of a child's stdout, read on a thread.
struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn of(out: std::process::ChildStdout) -> Lines {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`.
    fn wait_for(&mut self, needle: &str, timeout: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} within {timeout:?}; output:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

#[test]
fn dev_applies_migrations_and_rules_on_change_and_stops_cleanly() {
    let h = Home::new();
    let name = unique("dev");
    h.json(&["create-database", &name, "--server-url", &server_url()]);
    let sync = h.json(&["sync", "enable", &name]);
    let app = h.json(&["create-app", &name]);
    h.json(&["connect", &name, &name]);
    let app_dir = Path::new(app["path"].as_str().unwrap()).to_owned();

    // A stand-in for the app's process: answers GET /api/health on $PORT.
    let fake = h.dir.path().join("fake-server.sh");
    std::fs::write(
        &fake,
        "#!/bin/sh\ncd \"$(mktemp -d)\" && mkdir api && echo '{\"ok\":true}' > api/health && \
         exec python3 -m http.server \"$PORT\" --bind 127.0.0.1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = riptide_testkit::free_port();

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_riptide"))
        .args(["dev", "--no-web", "--port", &port.to_string()])
        .arg("--server-bin")
        .arg(&fake)
        .env("RIPTIDE_HOME", h.home())
        .current_dir(app_dir.join("server"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = Lines::of(child.stdout.take().unwrap());
    let long = std::time::Duration::from_secs(60);
    lines.wait_for("[dev] migrations applied: 0001_init.sql", long);
    lines.wait_for("[dev] sync rules deployed", long);
    lines.wait_for(&format!("[dev] ready: open http://127.0.0.1:{port}"), long);

    // A new migration: applied, schema.ts regenerated with the new column.
    std::fs::write(
        app_dir.join("migrations/0003_priority.sql"),
        "ALTER TABLE todos ADD COLUMN priority integer;\n",
    )
    .unwrap();
    lines.wait_for("[dev] migrations applied: 0003_priority.sql", long);
    lines.wait_for("schema.ts", long);
    let ts = std::fs::read_to_string(app_dir.join("web/src/lib/schema.ts")).unwrap();
    assert!(ts.contains("priority: column.integer"), "{ts}");

    // Changed sync rules: deployed again.
    let rules_path = app_dir.join("sync-rules.yaml");
    let rules = std::fs::read_to_string(&rules_path).unwrap();
    std::fs::write(&rules_path, format!("# changed\n{rules}")).unwrap();
    lines.wait_for("[dev] sync rules deployed (deployment 2)", long);

    // SIGTERM: dev stops its processes and exits; the sync service it found running stays.
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    lines.wait_for("[dev] stopping", long);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the app's process is stopped"
    );
    let st = h.json(&["status"]);
    assert_eq!(st["sync"][0]["running"], true);
    assert_eq!(st["sync"][0]["id"], sync["id"]);
}

#[test]
fn missing_postgres_binaries_name_the_package_and_create_nothing() {
    let h = Home::new();
    if Path::new("/usr/bin/initdb").exists() || Path::new("/bin/initdb").exists() {
        return; // cannot hide them on this machine
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_riptide"))
        .args(["create-database", "nopg"])
        .env("RIPTIDE_HOME", h.home())
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("apt-get install -y postgresql"), "{err}");
    let state = std::fs::read(h.home().join("state.json")).ok();
    assert!(state.is_none() || h.state()["databases"].as_array().unwrap().is_empty());
    assert!(!h.home().join("clusters/local").exists());
}

/// The scaffolded app is a workspace of its own (no parent workspace claims it) and resolves
/// with the versions its embedded `Cargo.lock` pins (cargo prunes the entries it does not use).
/// Not `--offline`: the lockfile also pins packages for other targets (wasm), which a fresh
/// machine's cargo cache does not hold, so cargo may download them.
#[test]
fn a_scaffolded_app_resolves_as_its_own_workspace() {
    let h = Home::new();
    let app = h.json(&["create-app", "standalone"]);
    let manifest = Path::new(app["path"].as_str().unwrap()).join("server/Cargo.toml");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(meta["workspace_members"].as_array().unwrap().len(), 1);
    assert!(
        meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "standalone-server")
    );
}

#[tokio::test]
async fn sync_enable_switches_the_local_cluster_to_logical_replication() {
    let h = Home::new();
    let db = h.json(&["create-database", "local-wal"]);
    // The CLI shows the URL without its password; state.json (0600) has the real one.
    assert!(
        db["directUri"].as_str().unwrap().contains("postgres:***@"),
        "{db}"
    );
    let url = h.state()["databases"][0]["direct_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = riptide_pg::PgConnection::from_uri(&url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    c.batch_execute("ALTER SYSTEM SET wal_level = replica")
        .await
        .unwrap();
    drop(c);
    h.json(&["stop", "--all"]);
    // The next command starts the cluster again, now with wal_level = replica.
    assert_eq!(h.json(&["create-database", "local-wal"])["already"], true);
    let c = riptide_pg::PgConnection::from_uri(&url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let level: String = c.query_one("SHOW wal_level", &[]).await.unwrap().get(0);
    assert_eq!(level, "replica");
    drop(c);

    let sync = h.json(&["sync", "enable", "local-wal"]);
    assert_eq!(sync["already"], false);
    let c = riptide_pg::PgConnection::from_uri(&url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let level: String = c.query_one("SHOW wal_level", &[]).await.unwrap().get(0);
    assert_eq!(level, "logical");
    let live =
        riptide_testkit::http_get(format!("{}/probes/liveness", sync["url"].as_str().unwrap()))
            .await
            .unwrap();
    assert!(live.status().is_success());
}

/// `riptide serve` without a config (the embedded default): its cluster asks for the password
/// kept in `RIPTIDE_HOME/embedded-postgres-password` (0600), the banner shows the URL without
/// it, and the demo database is there.
#[tokio::test]
async fn embedded_default_requires_its_password() {
    let h = Home::new();
    let port = riptide_testkit::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_riptide"))
        .args(["serve", "--port", &port.to_string()])
        .env("RIPTIDE_HOME", h.home())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = Lines::of(child.stdout.take().unwrap());
    let long = std::time::Duration::from_secs(120);
    let banner = lines.wait_for("Embedded Postgres:", long);
    let file = h.home().join("embedded-postgres-password");
    lines.wait_for(&format!("(password in {})", file.display()), long);
    let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(password.len(), 32);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        banner.contains("postgres:***@") && !banner.contains(&password),
        "{banner}"
    );
    let pg_port: u16 = banner
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {banner}"));

    let with = riptide_localpg::url_with(pg_port, "riptide_demo", Some(&password));
    let c = riptide_pg::PgConnection::from_uri(&with)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let lists: i64 = c
        .query_one("SELECT count(*) FROM lists", &[])
        .await
        .unwrap()
        .get(0);
    assert!(lists >= 1, "the demo data is seeded");
    drop(c);
    let without = riptide_localpg::url(pg_port, "riptide_demo");
    assert!(
        riptide_pg::PgConnection::from_uri(&without)
            .unwrap()
            .connect()
            .await
            .is_err(),
        "a connection without the password is refused"
    );

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(child.wait().unwrap().success());
}
