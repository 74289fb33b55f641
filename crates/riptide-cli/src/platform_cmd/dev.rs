//! `riptide dev` (in an app folder) and `riptide demo`.
//!
//! `dev` starts what is missing — the database (local cluster), the sync service, the app's
//! process (`cargo run --manifest-path server/Cargo.toml`, or `--server-bin`), the Vite dev
//! server (`npm run dev` in `web/`, after `npm install` when `node_modules` is missing) — and
//! prints one merged log with `[db] [sync] [server] [web] [dev]` labels. It applies migrations,
//! regenerates `web/src/lib/schema.ts` and deploys `sync-rules.yaml` at start and whenever
//! `migrations/` or `sync-rules.yaml` change (polled once a second). Built with `cargo run`,
//! the app's process is rebuilt and restarted when `server/src` or `server/Cargo.toml` change,
//! and when it exits (a build error, a panic) dev waits for the next change instead of
//! stopping. Ctrl-C (or SIGTERM) stops the processes it started, and the sync service and
//! cluster if it started them.
//!
//! `demo` makes database `demo`, enables sync, creates app `demo` in `RIPTIDE_HOME/apps/demo`
//! (so it works from any directory and leaves the current one alone), connects them and runs
//! `dev` there.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use riptide_platform::Platform;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::process::{Child, Command};

/// Options of `riptide dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevOptions {
    /// The app's process port (default 3001, or a free one if taken).
    #[arg(long)]
    pub port: Option<u16>,
    /// The Vite dev server's port (default 5173, or a free one if taken).
    #[arg(long)]
    pub web_port: Option<u16>,
    /// Run this prebuilt app-process binary instead of `cargo run`.
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Do not start the Vite dev server (the process serves web/dist if it was built).
    #[arg(long)]
    pub no_web: bool,
}

/// Prints labelled lines on stdout.
#[derive(Clone, Copy)]
struct Log {
    color: bool,
}

impl Log {
    fn line(&self, label: &str, text: &str) {
        if self.color {
            let code = match label {
                "db" => "34",
                "sync" => "35",
                "server" => "33",
                "web" => "36",
                _ => "32",
            };
            println!("\x1b[{code}m[{label}]\x1b[0m {text}");
        } else {
            println!("[{label}] {text}");
        }
    }
}

/// `riptide demo`: the four platform steps for app `demo`, then `dev`.
pub async fn demo(options: DevOptions) -> Result<()> {
    let platform = Platform::from_env()?;
    // What ran before the demo: at Ctrl-C, dev stops what the demo started.
    let before = riptide_platform::status::status(&platform).await?;
    let spinner = super::Spinner::new(true);
    let log = Log {
        color: std::io::stdout().is_terminal(),
    };
    let db = riptide_platform::database::create_database(&platform, "demo", None, &spinner).await?;
    log.line(
        "dev",
        &format!(
            "database demo: {} ({})",
            db.id,
            riptide_platform::redact(&db.direct_uri)
        ),
    );
    let sync = riptide_platform::sync::sync_enable(&platform, &db.id, None, &spinner).await?;
    log.line("dev", &format!("sync service: {}", sync.url));
    let apps = platform.home().join("apps");
    let app = riptide_platform::app::create_app(&platform, "demo", "realtime", Some(&apps)).await?;
    log.line("dev", &format!("app demo: {}", app.path.display()));
    riptide_platform::connect::connect(&platform, &app.id, &db.id).await?;
    dev_in(&platform, &app.path, options, log, Some(before)).await
}

/// `riptide dev` in the app around the current directory.
pub async fn dev(options: DevOptions) -> Result<()> {
    let platform = Platform::from_env()?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let root = super::app_root(&cwd).with_context(|| {
        format!(
            "{} is not inside an app folder (one with sync-rules.yaml); run `riptide create-app NAME` first",
            cwd.display()
        )
    })?;
    let log = Log {
        color: std::io::stdout().is_terminal(),
    };
    dev_in(&platform, &root, options, log, None).await
}

/// Runs the app in `root`; `before` is what ran before the caller started anything (default:
/// now), so Ctrl-C stops exactly what was started.
async fn dev_in(
    platform: &Platform,
    root: &Path,
    options: DevOptions,
    log: Log,
    before: Option<riptide_platform::status::StatusInfo>,
) -> Result<()> {
    let state = riptide_platform::state::read(platform.home())?;
    let key = root.display().to_string();
    let app = state.app(&key).with_context(|| {
        format!(
            "{} is not an app Riptide knows (riptide create-app makes one; `riptide status` lists them)",
            root.display()
        )
    })?;
    let db_id = app.database_id.clone().with_context(|| {
        format!(
            "app {} is not connected to a database: riptide create-database NAME, riptide sync enable NAME, riptide connect {} NAME",
            app.name, app.name
        )
    })?;
    let db = state.database(&db_id)?.clone();
    let app_id = app.id.clone();

    // What runs already (dev stops only what it starts).
    let before = match before {
        Some(b) => b,
        None => riptide_platform::status::status(platform).await?,
    };
    let cluster_was_running = before.cluster.as_ref().map(|c| c.running).unwrap_or(false);
    let service_was_running = before
        .sync
        .iter()
        .any(|s| s.database_id == db.id && s.running);

    let spinner = super::Spinner::new(true);
    let sync = riptide_platform::sync::sync_enable(platform, &db.id, None, &spinner).await?;
    if !cluster_was_running {
        log.line("db", "started the local Postgres cluster");
    }
    log.line(
        "sync",
        &format!(
            "{} the sync service at {} (log {})",
            if sync.started { "started" } else { "using" },
            sync.url,
            sync.log_path.display()
        ),
    );
    let mut tails = vec![tokio::spawn(tail_file(sync.log_path.clone(), "sync", log))];
    if db.provider == riptide_platform::state::Provider::Local
        && let Some(c) = &riptide_platform::state::read(platform.home())?.cluster
    {
        tails.push(tokio::spawn(tail_file(
            c.data_dir.join("server.log"),
            "db",
            log,
        )));
    }

    let mut watched = Watched::read(root);
    refresh(platform, &app_id, true, true, log).await;

    let mut children: Vec<(&'static str, Child)> = Vec::new();
    let result = run_children(
        root,
        &options,
        log,
        &mut children,
        platform,
        &app_id,
        &mut watched,
    )
    .await;

    log.line("dev", "stopping");
    for (label, child) in children.iter_mut().rev() {
        if let Some(pid) = child.id() {
            if let Err(e) = riptide_platform::process::terminate(pid, Duration::from_secs(10)).await
            {
                log.line(label, &format!("could not stop: {e}"));
            }
            let _ = child.wait().await;
        }
    }
    if !service_was_running {
        let _ = riptide_platform::status::stop(platform, Some(&sync.id), false).await;
        log.line("sync", "stopped");
    }
    if !cluster_was_running
        && let Some(c) = &riptide_platform::state::read(platform.home())?.cluster
    {
        let _ = riptide_platform::local::stop(c).await;
        log.line("db", "stopped");
    }
    for t in tails {
        t.abort();
    }
    result
}

async fn run_children(
    root: &Path,
    options: &DevOptions,
    log: Log,
    children: &mut Vec<(&'static str, Child)>,
    platform: &Platform,
    app_id: &str,
    watched: &mut Watched,
) -> Result<()> {
    let port = pick_port(options.port, 3001)?;
    // Built by `cargo run` from the app's sources, the process is rebuilt and restarted when
    // `server/` changes, and waits for the next change when it exits (a build error, a panic).
    let rebuilds = options.server_bin.is_none();
    log.line(
        "server",
        &format!(
            "starting the app's process on port {port}{}",
            if rebuilds {
                " (cargo run: the first build takes a few minutes)"
            } else {
                ""
            }
        ),
    );
    children.push(("server", spawn_server(root, options, port, log)?));

    let web_url = start_web(root, options, port, log, children).await?;
    let app_url = web_url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
    let health = format!("http://127.0.0.1:{port}/api/health");
    let mut announced = false;
    riptide_pg::install_default_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
            _ = tick.tick() => {}
        }
        let mut exited = None;
        for (i, (label, child)) in children.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                if *label == "server" && rebuilds {
                    exited = Some(i);
                    log.line(
                        "server",
                        &format!(
                            "the app's process exited ({status}); save a change in server/ to rebuild and restart it"
                        ),
                    );
                } else {
                    bail!("the {label} process exited ({status}); see its log above");
                }
            }
        }
        if let Some(i) = exited {
            children.remove(i);
        }
        if !announced
            && matches!(http.get(&health).send().await, Ok(r) if r.status().is_success())
            && match &web_url {
                Some(u) => http.get(u).send().await.is_ok(),
                None => true,
            }
        {
            announced = true;
            log.line("dev", &format!("ready: open {app_url}  (Ctrl-C stops)"));
        }
        let now = Watched::read(root);
        let migrations = now.migrations != watched.migrations;
        let rules = now.rules != watched.rules;
        let server = now.server != watched.server;
        *watched = now;
        if migrations || rules {
            refresh(platform, app_id, migrations, rules, log).await;
        }
        if server && rebuilds {
            log.line(
                "server",
                "server/ changed: rebuilding and restarting the app's process",
            );
            restart_server(root, options, port, log, children).await?;
            announced = false;
        }
    }
}

/// Starts the Vite dev server of `web/` (after `npm install` on the first run) unless there is
/// none or `--no-web`; returns its URL.
async fn start_web(
    root: &Path,
    options: &DevOptions,
    port: u16,
    log: Log,
    children: &mut Vec<(&'static str, Child)>,
) -> Result<Option<String>> {
    if options.no_web || !root.join("web/package.json").is_file() {
        return Ok(None);
    }
    let web = root.join("web");
    if !web.join("node_modules").is_dir() {
        log.line("web", "npm install …");
        let mut install = Command::new("npm");
        install
            .args(["install", "--no-audit", "--no-fund"])
            .current_dir(&web);
        let mut child = spawn_labelled(install, "web", log)?;
        let status = child.wait().await.context("npm install")?;
        if !status.success() {
            bail!("npm install in {} failed ({status})", web.display());
        }
    }
    let web_port = pick_port(options.web_port, 5173)?;
    let mut vite = Command::new("npm");
    vite.args([
        "run",
        "dev",
        "--",
        "--port",
        &web_port.to_string(),
        "--strictPort",
        "--host",
        "127.0.0.1",
    ])
    .current_dir(&web)
    .env("PORT", port.to_string());
    children.push(("web", spawn_labelled(vite, "web", log)?));
    Ok(Some(format!("http://127.0.0.1:{web_port}")))
}

/// Stops the app's process (if it still runs) and starts it again on `port`.
async fn restart_server(
    root: &Path,
    options: &DevOptions,
    port: u16,
    log: Log,
    children: &mut Vec<(&'static str, Child)>,
) -> Result<()> {
    if let Some(i) = children.iter().position(|(label, _)| *label == "server") {
        let (_, mut old) = children.remove(i);
        if let Some(pid) = old.id()
            && let Err(e) = riptide_platform::process::terminate(pid, Duration::from_secs(10)).await
        {
            log.line("server", &format!("could not stop: {e}"));
        }
        let _ = old.wait().await;
    }
    children.push(("server", spawn_server(root, options, port, log)?));
    Ok(())
}

/// Starts the app's process: `--server-bin`, or `cargo run` on the app's `server/`.
fn spawn_server(root: &Path, options: &DevOptions, port: u16, log: Log) -> Result<Child> {
    let mut server = match &options.server_bin {
        Some(bin) => Command::new(bin),
        None => {
            let mut c = Command::new("cargo");
            c.args(["run", "--manifest-path", "server/Cargo.toml"]);
            c
        }
    };
    server
        .current_dir(root)
        .env("PORT", port.to_string())
        .env("APP_ROOT", root);
    spawn_labelled(server, "server", log)
}

/// Migrations (then schema.ts) and/or sync rules; problems are logged, dev keeps running.
async fn refresh(platform: &Platform, app_id: &str, migrations: bool, rules: bool, log: Log) {
    let mut schema = false;
    if migrations {
        match riptide_platform::migrate::run_migrations(platform, app_id).await {
            Ok(m) if m.applied.is_empty() => log.line("dev", "migrations: up to date"),
            Ok(m) => {
                schema = true;
                log.line(
                    "dev",
                    &format!("migrations applied: {}", m.applied.join(", ")),
                );
            }
            Err(e) => log.line("dev", &format!("migrations failed: {}", chain(&e))),
        }
    }
    if schema || rules || migrations {
        match riptide_platform::schema::generate_schema(platform, app_id).await {
            Ok(s) if s.already => {}
            Ok(s) => log.line("dev", &format!("wrote {}", s.path.display())),
            Err(e) => log.line("dev", &format!("schema.ts not regenerated: {}", chain(&e))),
        }
    }
    if rules || schema {
        match riptide_platform::rules::deploy_sync_rules(platform, app_id).await {
            Ok(r) if r.already => log.line("dev", "sync rules: up to date"),
            Ok(r) => log.line(
                "dev",
                &format!("sync rules deployed (deployment {})", r.deployment["id"]),
            ),
            Err(e) => log.line("dev", &format!("sync rules not deployed: {}", chain(&e))),
        }
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut s = e.source();
    while let Some(c) = s {
        let m = c.to_string();
        if !out.contains(&m) {
            out = format!("{out}: {m}");
        }
        s = c.source();
    }
    out
}

/// A file's name (or path below its folder), modification time and length.
type Stamp = (String, Option<SystemTime>, u64);

/// Modification stamps of `migrations/`, `sync-rules.yaml` and the app's process sources
/// (`server/Cargo.toml`, `server/src/**`).
#[derive(Debug, PartialEq, Eq)]
struct Watched {
    migrations: Vec<Stamp>,
    rules: Option<(Option<SystemTime>, u64)>,
    server: Vec<Stamp>,
}

impl Watched {
    fn read(root: &Path) -> Watched {
        let mut migrations: Vec<_> = std::fs::read_dir(root.join("migrations"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let m = e.metadata().ok()?;
                        Some((
                            e.file_name().to_string_lossy().into_owned(),
                            m.modified().ok(),
                            m.len(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        migrations.sort();
        let rules = std::fs::metadata(root.join("sync-rules.yaml"))
            .ok()
            .map(|m| (m.modified().ok(), m.len()));
        let mut server = Vec::new();
        stamps(&root.join("server/src"), "src", &mut server);
        if let Ok(m) = std::fs::metadata(root.join("server/Cargo.toml")) {
            server.push(("Cargo.toml".to_owned(), m.modified().ok(), m.len()));
        }
        server.sort();
        Watched {
            migrations,
            rules,
            server,
        }
    }
}

/// Stamps of the files below `dir` (recursively), named `prefix/…`.
fn stamps(dir: &Path, prefix: &str, out: &mut Vec<Stamp>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = format!("{prefix}/{}", e.file_name().to_string_lossy());
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            stamps(&e.path(), &name, out);
        } else {
            out.push((name, m.modified().ok(), m.len()));
        }
    }
}

/// `wanted`, else `default` if free, else a free port.
fn pick_port(wanted: Option<u16>, default: u16) -> Result<u16> {
    if let Some(p) = wanted {
        if riptide_platform::process::port_in_use(p) {
            bail!("port {p} is already in use on 127.0.0.1");
        }
        return Ok(p);
    }
    if !riptide_platform::process::port_in_use(default) {
        return Ok(default);
    }
    Ok(riptide_platform::process::free_port()?)
}

/// Spawns `cmd` in its own process group with stdout and stderr printed line by line under
/// `label`.
fn spawn_labelled(mut cmd: Command, label: &'static str, log: Log) -> Result<Child> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let program = format!("{:?}", cmd.as_std().get_program());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                log.line(label, &l);
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                log.line(label, &l);
            }
        });
    }
    Ok(child)
}

/// Prints lines appended to `path` (from its current end) under `label`.
async fn tail_file(path: PathBuf, label: &'static str, log: Log) {
    let mut pos = tokio::fs::metadata(&path)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Ok(meta) = tokio::fs::metadata(&path).await else {
            continue;
        };
        if meta.len() < pos {
            pos = 0; // rotated or truncated
        }
        if meta.len() == pos {
            continue;
        }
        let Ok(mut f) = tokio::fs::File::open(&path).await else {
            continue;
        };
        if f.seek(std::io::SeekFrom::Start(pos)).await.is_err() {
            continue;
        }
        let mut reader = BufReader::new(f);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !line.ends_with('\n') {
                        break; // an incomplete line: read it next time
                    }
                    pos += n as u64;
                    // Postgres logs every replication command at LOG level: show problems only.
                    if label != "db"
                        || ["ERROR:", "FATAL:", "PANIC:", "WARNING:"]
                            .iter()
                            .any(|s| line.contains(s))
                    {
                        log.line(label, line.trim_end());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watched_sees_each_kind_of_change_apart() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("migrations")).unwrap();
        std::fs::create_dir_all(root.join("server/src/routes")).unwrap();
        std::fs::write(root.join("migrations/0001_init.sql"), "select 1;").unwrap();
        std::fs::write(root.join("sync-rules.yaml"), "bucket_definitions: {}").unwrap();
        std::fs::write(root.join("server/Cargo.toml"), "[package]").unwrap();
        std::fs::write(root.join("server/src/main.rs"), "fn main() {}").unwrap();
        let before = Watched::read(root);
        assert_eq!(before.server.len(), 2);

        // A new file deep in server/src changes only the server stamps.
        std::fs::write(root.join("server/src/routes/todos.rs"), "// todo").unwrap();
        let after = Watched::read(root);
        assert_ne!(after.server, before.server);
        assert_eq!(after.migrations, before.migrations);
        assert_eq!(after.rules, before.rules);

        // A new migration changes only the migration stamps.
        std::fs::write(root.join("migrations/0002_more.sql"), "select 2;").unwrap();
        let later = Watched::read(root);
        assert_ne!(later.migrations, after.migrations);
        assert_eq!(later.server, after.server);
    }
}
