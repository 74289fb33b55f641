//! `sync_enable`: turns a database into a sync source and runs a managed sync service for it;
//! `deploy_files`: what it takes to run the same service elsewhere (Docker, Fly.io).
//!
//! The publication `powersync`: an existing one is left as it is. Otherwise, when the database
//! already has tables, `sync_enable` creates it `FOR ALL TABLES` (the sync rules decide what
//! reaches clients). A database with no tables yet (a fresh `create_database`) gets none: the
//! app's first migration creates it with the tables it means to sync (the realtime template's
//! `0001_init.sql` runs `CREATE PUBLICATION powersync FOR TABLE lists, todos, list_members`),
//! and the service starts replicating once sync rules are deployed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use riptide_pg::SslMode;
use riptide_pg::uri::with_default_sslmode;
use serde::Serialize;
use serde_json::json;

use crate::database::LOCK_WAIT;
use crate::keys::{self, KeyPair};
use crate::state::{DatabaseRecord, Provider, Store, SyncRecord, new_id, write_atomic};
use crate::{Platform, PlatformError, Progress, local, pg, process};

/// The publication the service replicates.
pub const PUBLICATION: &str = "powersync";
/// The `aud` the service accepts (and the template's process issues).
pub const AUDIENCE: &str = "riptide";
/// How long the service may take to answer its liveness probe.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(90);

/// What `sync_enable` returns.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncInfo {
    pub id: String,
    pub database_id: String,
    /// The service's base URL.
    pub url: String,
    pub port: u16,
    pub pid: Option<u32>,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    /// What happened to the publication `powersync`.
    pub publication: String,
    /// Sync was enabled before this call.
    pub already: bool,
    /// The service was not running and has been started by this call.
    pub started: bool,
}

impl SyncInfo {
    fn of(r: &SyncRecord, publication: String, already: bool, started: bool) -> SyncInfo {
        SyncInfo {
            id: r.id.clone(),
            database_id: r.database_id.clone(),
            url: r.url(),
            port: r.port,
            pid: process::running_pid(&r.pid_path()),
            config_path: r.config_path(),
            log_path: r.log_path(),
            publication,
            already,
            started,
        }
    }
}

/// Enables sync on database `key` (id or name), or makes sure its service runs if enabled.
/// `port`: the service's port (a free one when `None`).
pub async fn sync_enable(
    platform: &Platform,
    key: &str,
    port: Option<u16>,
    progress: &dyn Progress,
) -> Result<SyncInfo, PlatformError> {
    let mut store = Store::open(platform.home(), LOCK_WAIT).await?;
    let db = store.state.database(key)?.clone();
    if db.provider == Provider::Local {
        let before = store.state.cluster.clone();
        local::ensure_cluster(&mut store, progress).await?;
        if store.state.cluster != before {
            store.save()?;
        }
    }
    if let Some(existing) = store.state.sync_of(&db.id).cloned() {
        if let Some(p) = port
            && p != existing.port
        {
            return Err(PlatformError::Conflict(format!(
                "sync is already enabled on {} with port {}; it keeps that port",
                db.name, existing.port
            )));
        }
        let started = ensure_service(platform, &existing, progress).await?;
        let source = pg::connect(&db.direct_uri).await?;
        let publication = if publication_exists(&source).await? {
            "exists".to_owned()
        } else {
            "missing: the app's migrations create it".to_owned()
        };
        return Ok(SyncInfo::of(&existing, publication, true, started));
    }
    let port = match port {
        Some(p) => {
            if process::port_in_use(p) {
                return Err(PlatformError::PortInUse { port: p });
            }
            p
        }
        None => process::free_port()?,
    };
    let source = pg::connect(&db.direct_uri).await?;
    ensure_wal_level(&mut store, &db, &source, progress).await?;
    // Re-connect: a restart of the local cluster closed the connection.
    let source = pg::connect(&db.direct_uri).await?;

    let mut undo = Undo::default();
    let result = enable(
        platform, &mut store, &db, &source, port, &mut undo, progress,
    )
    .await;
    match result {
        Ok((record, publication)) => Ok(SyncInfo::of(&record, publication, false, true)),
        Err(e) => {
            undo.run(&source).await;
            Err(e)
        }
    }
}

/// What a failed `sync_enable` must take back.
#[derive(Default)]
struct Undo {
    publication: bool,
    storage: Option<(String, String)>,
    dir: Option<PathBuf>,
    pid_file: Option<PathBuf>,
}

impl Undo {
    async fn run(self, source: &tokio_postgres::Client) {
        if let Some(pid_file) = &self.pid_file
            && let Err(e) = process::stop(pid_file, Duration::from_secs(10)).await
        {
            tracing::warn!(error = %e, "could not stop the sync service while undoing");
        }
        if let Some((admin_url, dbname)) = &self.storage
            && let Ok(admin) = pg::connect(admin_url).await
        {
            pg::drop_database(&admin, dbname).await;
        }
        if self.publication {
            let _ = source
                .batch_execute(&format!("DROP PUBLICATION IF EXISTS {PUBLICATION}"))
                .await;
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn enable(
    platform: &Platform,
    store: &mut Store,
    db: &DatabaseRecord,
    source: &tokio_postgres::Client,
    port: u16,
    undo: &mut Undo,
    progress: &dyn Progress,
) -> Result<(SyncRecord, String), PlatformError> {
    let has_tables = source
        .query_opt(
            "SELECT 1 FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') LIMIT 1",
            &[],
        )
        .await
        .map_err(PlatformError::pg("cannot list tables"))?
        .is_some();
    let publication = if publication_exists(source).await? {
        "exists".to_owned()
    } else if !has_tables {
        "not created: the database has no tables yet; the app's first migration creates it"
            .to_owned()
    } else {
        "created FOR ALL TABLES".to_owned()
    };
    if publication.starts_with("created") {
        source
            .batch_execute(&format!("CREATE PUBLICATION {PUBLICATION} FOR ALL TABLES"))
            .await
            .map_err(PlatformError::pg(format!(
                "cannot create the publication {PUBLICATION} (FOR ALL TABLES needs a superuser or, on managed services, the provider's replication role)"
            )))?;
        undo.publication = true;
    }

    let admin_url = match db.provider {
        Provider::Local => pg::with_dbname(&db.direct_uri, "postgres")?,
        Provider::Server => db
            .server_url
            .clone()
            .unwrap_or_else(|| db.direct_uri.clone()),
    };
    let storage_dbname = format!("{}_sync_storage", db.dbname);
    let admin = pg::connect(&admin_url).await?;
    if pg::database_exists(&admin, &storage_dbname).await? {
        return Err(PlatformError::Conflict(format!(
            "the storage database {storage_dbname:?} already exists on {} but is not recorded by Riptide; drop it or rename it",
            pg::redact(&admin_url)
        )));
    }
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {}",
            pg::quote_ident(&storage_dbname)
        ))
        .await
        .map_err(PlatformError::pg(format!(
            "cannot create the storage database {storage_dbname:?}"
        )))?;
    undo.storage = Some((admin_url.clone(), storage_dbname.clone()));
    let storage_uri = pg::with_dbname(&db.direct_uri, &storage_dbname)?;

    let id = new_id("sync");
    let dir = store.home().join("sync").join(&id);
    std::fs::create_dir_all(&dir).map_err(PlatformError::io(&dir))?;
    undo.dir = Some(dir.clone());
    set_mode(&dir, 0o700)?;
    let key = KeyPair::generate();
    let record = SyncRecord {
        id,
        database_id: db.id.clone(),
        port,
        dir,
        storage_dbname,
        storage_uri,
        kid: key.kid.clone(),
        signing_key: key.private_jwk_base64(),
        api_token: keys::api_token(),
        created_at: crate::now(),
    };
    write_config(&record, db, &key.public_jwk())?;
    undo.pid_file = Some(record.pid_path());
    ensure_service(platform, &record, progress).await?;
    store.state.sync.push(record.clone());
    store.save()?;
    Ok((record, publication))
}

async fn publication_exists(source: &tokio_postgres::Client) -> Result<bool, PlatformError> {
    Ok(source
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&PUBLICATION],
        )
        .await
        .map_err(PlatformError::pg("cannot read pg_publication"))?
        .is_some())
}

/// Checks `wal_level`: the local cluster is switched to `logical` and restarted; a server is
/// left alone with an error saying what to change.
async fn ensure_wal_level(
    store: &mut Store,
    db: &DatabaseRecord,
    source: &tokio_postgres::Client,
    progress: &dyn Progress,
) -> Result<(), PlatformError> {
    let level = pg::wal_level(source).await?;
    if level == "logical" {
        return Ok(());
    }
    match db.provider {
        Provider::Server => Err(PlatformError::WalLevel(format!(
            "the server of database {:?} has wal_level = {level}, but sync needs logical replication (wal_level = logical). \
             Change it and restart the server: on your own Postgres run `ALTER SYSTEM SET wal_level = logical;` as a superuser \
             (or set `wal_level = logical` in postgresql.conf) and restart it; on Amazon RDS/Aurora set rds.logical_replication = 1 \
             in the parameter group and reboot; on Neon enable logical replication in the project settings; \
             on Google Cloud SQL set the cloudsql.logical_decoding flag. Then run `riptide sync enable` again.",
            db.name
        ))),
        Provider::Local => {
            progress.start("switching the local cluster to wal_level = logical and restarting it");
            let r = async {
                source
                    .batch_execute("ALTER SYSTEM SET wal_level = logical")
                    .await
                    .map_err(PlatformError::pg("cannot set wal_level"))?;
                let running = local::ensure_cluster(store, &crate::Quiet).await?;
                local::restart(&running).await
            }
            .await;
            progress.finish();
            r
        }
    }
}

/// The service config: source and storage, listening on 127.0.0.1, the public key inline,
/// audience `riptide`, the admin token; no sync rules (apps deploy theirs through the admin API). Mode 0600.
fn write_config(
    record: &SyncRecord,
    db: &DatabaseRecord,
    public_jwk: &serde_json::Value,
) -> Result<(), PlatformError> {
    // A config connection without `sslmode` means verify-full (PowerSync's default): spell
    // out what the URL means on its own (the local cluster has no TLS; libpq's `prefer`).
    let mode = match db.provider {
        Provider::Local => SslMode::Disable,
        Provider::Server => SslMode::Prefer,
    };
    let source_uri = with_default_sslmode(&db.direct_uri, mode);
    let storage_uri = with_default_sslmode(&record.storage_uri, mode);
    let config = json!({
        "replication": {"connections": [{"type": "postgresql", "uri": source_uri}]},
        "storage": {"type": "postgresql", "uri": storage_uri},
        // A managed service is for this machine's apps: not reachable from the network.
        "host": "127.0.0.1",
        "port": record.port,
        "client_auth": {"jwks": {"keys": [public_jwk]}, "audience": [AUDIENCE]},
        "api": {"tokens": [record.api_token]},
    });
    let yaml = yaml_serde::to_string(&config)
        .map_err(|e| PlatformError::Template(format!("cannot write the service config: {e}")))?;
    let text = format!(
        "# Riptide sync service for database {} (written by `riptide sync enable`; holds secrets)\n{yaml}",
        db.name
    );
    write_atomic(&record.config_path(), text.as_bytes(), 0o600)
}

/// Starts the service unless it runs; waits for its liveness probe. Whether it was started.
pub async fn ensure_service(
    platform: &Platform,
    record: &SyncRecord,
    progress: &dyn Progress,
) -> Result<bool, PlatformError> {
    if process::running_pid(&record.pid_path()).is_some() {
        return Ok(false);
    }
    if process::port_in_use(record.port) {
        return Err(PlatformError::PortInUse { port: record.port });
    }
    progress.start(&format!(
        "starting the sync service on port {}",
        record.port
    ));
    let result = start_service(platform, record).await;
    progress.finish();
    result.map(|()| true)
}

async fn start_service(platform: &Platform, record: &SyncRecord) -> Result<(), PlatformError> {
    let mut cmd = Command::new(platform.riptide_bin());
    // `--host` too, for services whose config was written before it had `host`.
    cmd.arg("serve")
        .arg("--config")
        .arg(record.config_path())
        .args(["--host", "127.0.0.1"])
        .env_remove("POWERSYNC_CONFIG_PATH")
        .current_dir(&record.dir);
    let pid = process::spawn_detached(&mut cmd, &record.log_path(), &record.pid_path())?;
    let url = format!("{}/probes/liveness", record.url());
    crate::pg::install_default_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|source| PlatformError::Http {
            what: "cannot build an HTTP client".into(),
            source,
        })?;
    let mut exited = false;
    let healthy = process::wait_until(HEALTH_TIMEOUT, || {
        let alive = process::is_alive(pid);
        exited |= !alive;
        let req = client.get(&url).send();
        async move {
            if !alive {
                return true;
            }
            matches!(req.await, Ok(r) if r.status().is_success())
        }
    })
    .await;
    if healthy && !exited {
        tracing::debug!(pid, port = record.port, "sync service is up");
        return Ok(());
    }
    let _ = process::stop(&record.pid_path(), Duration::from_secs(5)).await;
    Err(PlatformError::ServiceStart {
        message: if exited {
            "the process exited".into()
        } else {
            format!("no answer from {url} within {}s", HEALTH_TIMEOUT.as_secs())
        },
        log: record.log_path(),
        tail: process::tail(&record.log_path(), 20),
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), PlatformError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(PlatformError::io(path))
}

/// What `deploy_files` wrote.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployFiles {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// Every file had this content already.
    pub already: bool,
}

/// Writes `Dockerfile`, `fly.toml`, `powersync.yaml` (secrets from environment variables) and
/// a copy of this `riptide` binary to `out` (default `RIPTIDE_HOME/sync/<id>/deploy`): a
/// self-contained build context for running the database's sync service elsewhere.
pub async fn deploy_files(
    platform: &Platform,
    key: &str,
    out: Option<&Path>,
) -> Result<DeployFiles, PlatformError> {
    let store = Store::open(platform.home(), LOCK_WAIT).await?;
    let db = store.state.database(key)?.clone();
    let sync = store.state.sync_of(&db.id).cloned().ok_or_else(|| {
        PlatformError::Conflict(format!(
            "sync is not enabled on database {:?}; run `riptide sync enable {}` first",
            db.name, db.name
        ))
    })?;
    drop(store);
    let dir = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| sync.dir.join("deploy"));
    std::fs::create_dir_all(&dir).map_err(PlatformError::io(&dir))?;
    let jwk =
        keys::public_jwk_of(&sync.signing_key).ok_or_else(|| PlatformError::CorruptState {
            path: platform.home().join("state.json"),
            message: format!("the signing key of {} is not a JWK", sync.id),
        })?;
    let files = [
        ("Dockerfile", dockerfile()),
        ("fly.toml", fly_toml(&db.name)),
        ("powersync.yaml", deploy_config(&jwk)),
        ("README.md", deploy_readme(&db.name)),
    ];
    let mut written = Vec::new();
    let mut already = true;
    for (name, text) in files {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            already = false;
            write_atomic(&path, text.as_bytes(), 0o644)?;
        }
        written.push(path);
    }
    let bin = dir.join("riptide");
    let same_binary = match (
        std::fs::metadata(&bin),
        std::fs::metadata(platform.riptide_bin()),
    ) {
        (Ok(a), Ok(b)) => a.len() == b.len(),
        _ => false,
    };
    if !same_binary {
        already = false;
        let tmp = dir.join(".riptide.tmp");
        std::fs::copy(platform.riptide_bin(), &tmp).map_err(PlatformError::io(&tmp))?;
        std::fs::rename(&tmp, &bin).map_err(PlatformError::io(&bin))?;
    }
    written.push(bin);
    Ok(DeployFiles {
        dir,
        files: written,
        already,
    })
}

/// A runtime image matching this machine's distribution (the copied binary links its libc).
fn base_image() -> String {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |k: &str| {
        release
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_owned())
    };
    match (field("ID").as_deref(), field("VERSION_CODENAME")) {
        (Some("debian"), Some(code)) if !code.is_empty() => format!("debian:{code}-slim"),
        (Some("ubuntu"), Some(code)) if !code.is_empty() => format!("ubuntu:{code}"),
        _ => "debian:bookworm-slim".into(),
    }
}

fn dockerfile() -> String {
    format!(
        "# Riptide sync service (written by `riptide sync deploy-files`).\n\
         # Build context: this folder (it holds the riptide binary it was written by).\n\
         FROM {}\n\
         RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*\n\
         COPY riptide /usr/local/bin/riptide\n\
         COPY powersync.yaml /etc/riptide/powersync.yaml\n\
         ENV POWERSYNC_CONFIG_PATH=/etc/riptide/powersync.yaml\n\
         EXPOSE 8080\n\
         USER nobody\n\
         HEALTHCHECK CMD [\"/bin/bash\", \"-c\", \"exec 3<>/dev/tcp/127.0.0.1/8080\"]\n\
         CMD [\"riptide\", \"serve\", \"--config\", \"/etc/riptide/powersync.yaml\"]\n",
        base_image()
    )
}

fn fly_toml(name: &str) -> String {
    format!(
        "# Fly.io app for the Riptide sync service of database {name:?}.\n\
         # Secrets: fly secrets set PS_DATA_SOURCE_URI=… PS_STORAGE_SOURCE_URI=… PS_ADMIN_TOKEN=…\n\
         app = \"riptide-sync-{name}\"\n\
         primary_region = \"iad\"\n\n\
         [build]\n  dockerfile = \"Dockerfile\"\n\n\
         [http_service]\n  internal_port = 8080\n  force_https = true\n  auto_stop_machines = \"off\"\n  auto_start_machines = true\n  min_machines_running = 1\n\n\
         [[http_service.checks]]\n  method = \"GET\"\n  path = \"/probes/liveness\"\n  interval = \"15s\"\n  timeout = \"5s\"\n  grace_period = \"30s\"\n"
    )
}

fn deploy_config(jwk: &serde_json::Value) -> String {
    format!(
        "# Riptide sync service config: secrets come from the environment.\n\
         replication:\n  connections:\n    - type: postgresql\n      uri: !env PS_DATA_SOURCE_URI\n\
         storage:\n  type: postgresql\n  uri: !env PS_STORAGE_SOURCE_URI\n\
         port: 8080\n\
         client_auth:\n  jwks:\n    keys:\n      - {jwk}\n  audience: [{AUDIENCE}]\n\
         api:\n  tokens:\n    - !env PS_ADMIN_TOKEN\n"
    )
}

fn deploy_readme(name: &str) -> String {
    format!(
        "# Deploying the sync service of database `{name}`\n\n\
         This folder is a Docker build context: `docker build -t riptide-sync-{name} .`\n\n\
         Environment (secrets):\n\n\
         - `PS_DATA_SOURCE_URI`: the source database (direct connection, wal_level = logical, publication `powersync`)\n\
         - `PS_STORAGE_SOURCE_URI`: a Postgres database for bucket storage\n\
         - `PS_ADMIN_TOKEN`: the admin API token apps deploy their sync rules with (`POWERSYNC_API_TOKEN`)\n\n\
         Fly.io: `fly launch --copy-config --no-deploy`, `fly secrets set PS_DATA_SOURCE_URI=… PS_STORAGE_SOURCE_URI=… PS_ADMIN_TOKEN=…`, `fly deploy`.\n\
         The JWKS in `powersync.yaml` is the public key of the local instance: apps keep their `POWERSYNC_SIGNING_KEY`.\n"
    )
}
