//! A private PostgreSQL cluster driven through `initdb` and `pg_ctl`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH: install the postgresql package (apt-get install -y postgresql)"
    )]
    BinariesMissing,
    #[error("running as root, but there is no `postgres` user to run initdb/pg_ctl as")]
    NoPostgresUser,
    #[error("{command} failed: {output}")]
    CommandFailed { command: String, output: String },
    #[error("io error while setting up the cluster")]
    Io(#[from] std::io::Error),
}

/// A running PostgreSQL server reachable on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Data directory when this process (or the test script) owns the cluster.
    pub data_dir: Option<PathBuf>,
}

impl Cluster {
    /// `postgres://user@host:port/dbname`.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgres://{}@{}:{}/{}",
            self.user, self.host, self.port, dbname
        )
    }

    /// Initialises and starts a new cluster in `dir` (which must not exist or be empty).
    pub fn init_and_start(dir: &Path) -> Result<Cluster, ClusterError> {
        if which("initdb").is_none() || which("pg_ctl").is_none() {
            return Err(ClusterError::BinariesMissing);
        }
        std::fs::create_dir_all(dir)?;
        let as_root = is_root();
        if as_root {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(dir))
            .map_err(|_| ClusterError::NoPostgresUser)?;
        }
        let pg = |program: &str| {
            if as_root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--", program]);
                c
            } else {
                Command::new(program)
            }
        };
        run(pg("initdb").arg("-D").arg(dir).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]))?;
        let conf = "\n# riptide test cluster\nwal_level = logical\nmax_replication_slots = 64\n\
             max_wal_senders = 64\nmax_connections = 300\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nlisten_addresses = '127.0.0.1'\nshared_buffers = 256MB\n\
             max_wal_size = 4GB\nlog_min_messages = warning\n";
        append(&dir.join("postgresql.conf"), conf)?;
        append(
            &dir.join("pg_hba.conf"),
            "\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n",
        )?;
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            let opts = format!("-p {port} -k {}", dir.display());
            let result = run(pg("pg_ctl")
                .arg("-D")
                .arg(dir)
                .args(["-o", &opts, "-l"])
                .arg(dir.join("server.log"))
                .args(["-w", "-t", "60", "start"]));
            match result {
                Ok(()) => {
                    return Ok(Cluster {
                        host: "127.0.0.1".into(),
                        port,
                        user: "postgres".into(),
                        data_dir: Some(dir.to_owned()),
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or(ClusterError::NoPostgresUser))
    }

    /// Stops a cluster started by [`Cluster::init_and_start`] (immediate mode).
    pub fn stop(dir: &Path) -> Result<(), ClusterError> {
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "pg_ctl"]);
            c
        } else {
            Command::new("pg_ctl")
        };
        run(cmd
            .arg("-D")
            .arg(dir)
            .args(["-m", "immediate", "-w", "stop"]))
    }

    /// Parses `RIPTIDE_TEST_PG_URL`-style URLs (`postgres://user@host:port/...`).
    fn from_url(url: &str) -> Option<Cluster> {
        let config: tokio_postgres::Config = url.parse().ok()?;
        let host = match config.get_hosts().first()? {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        };
        Some(Cluster {
            host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            user: config.get_user().unwrap_or("postgres").to_owned(),
            data_dir: None,
        })
    }
}

/// The cluster of this test run, started on first use.
pub fn server() -> &'static Cluster {
    static SERVER: OnceLock<Cluster> = OnceLock::new();
    SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("RIPTIDE_TEST_PG_URL") {
            return Cluster::from_url(&url)
                .unwrap_or_else(|| panic!("RIPTIDE_TEST_PG_URL is not a postgres URL: {url}"));
        }
        let dir = std::env::temp_dir().join(format!(
            "riptide-test-pg-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let cluster = Cluster::init_and_start(&dir)
            .unwrap_or_else(|e| panic!("cannot start the test Postgres cluster: {e}"));
        spawn_watchdog(&dir);
        cluster
    })
}

/// Stops and removes the cluster once this process has exited.
fn spawn_watchdog(dir: &Path) {
    let pid = std::process::id();
    let stop = if is_root() {
        "runuser -u postgres -- pg_ctl"
    } else {
        "pg_ctl"
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         {stop} -D '{dir}' -m immediate -w stop >/dev/null 2>&1; rm -rf '{dir}'",
        dir = dir.display()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

fn run(cmd: &mut Command) -> Result<(), ClusterError> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(ClusterError::CommandFailed {
        command: format!("{cmd:?}"),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path)?;
    f.write_all(text.as_bytes())
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}
