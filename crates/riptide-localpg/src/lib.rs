//! A private PostgreSQL cluster under a data directory we own, driven through the server
//! binaries on PATH (`initdb`, `pg_ctl`). Used by `riptide serve`'s embedded default, the
//! platform tools' local database provider, and the test kit.
//!
//! The cluster is configured for logical replication (`wal_level = logical`) and listens on
//! 127.0.0.1 only. How it authenticates connections (replication included) is the caller's
//! choice, [`Auth`]: the clusters users run (the embedded default, the platform's local
//! provider) require the superuser's SCRAM-SHA-256 password, which the caller generates
//! ([`generate_password`]) and keeps in its own 0600 state file; the test kit's and the
//! benchmark's throwaway clusters trust loopback connections. PostgreSQL refuses to run as root;
//! when we are root, `initdb` and `pg_ctl` run as the `postgres` user and the data directory is
//! owned by it.

use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::Rng;
use rand::distributions::Alphanumeric;

#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH; install them \
         (Debian/Ubuntu: apt-get install -y postgresql, then add /usr/lib/postgresql/*/bin to PATH)"
    )]
    BinariesMissing,
    #[error(
        "running as root, but there is no `postgres` user to run PostgreSQL as (create one: useradd -r postgres)"
    )]
    NoPostgresUser,
    #[error("{command} failed: {output}")]
    CommandFailed { command: String, output: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start PostgreSQL after {attempts} attempts; see {log}")]
    StartFailed { attempts: u32, log: PathBuf },
}

/// How the cluster trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Normal Postgres durability (fsync on): for data a user keeps.
    Durable,
    /// fsync, synchronous_commit and full_page_writes off: for tests and throwaway data.
    Ephemeral,
}

/// How the cluster authenticates connections: every line of `pg_hba.conf` (Unix sockets and
/// 127.0.0.1, databases and replication) uses the same method.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// Every local connection is the superuser without a password: for test and benchmark
    /// clusters only, which nothing but the test run reaches.
    Trust,
    /// `initdb --auth=scram-sha-256` with this superuser (`postgres`) password; `pg_hba.conf`
    /// asks for it on 127.0.0.1, for replication too.
    Scram(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Trust => f.write_str("Trust"),
            Auth::Scram(_) => f.write_str("Scram(***)"),
        }
    }
}

/// A new random superuser password: 32 letters and digits (190 bits).
pub fn generate_password() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// A PostgreSQL cluster in `data_dir`.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    data_dir: PathBuf,
}

impl LocalCluster {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        LocalCluster {
            data_dir: data_dir.into(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether `initdb` has run in the data directory.
    pub fn is_initialized(&self) -> bool {
        self.data_dir.join("PG_VERSION").is_file()
    }

    /// Runs `initdb` (if not done yet) with `auth` and writes the replication-ready
    /// configuration. An initialised cluster is left as it is (its authentication too).
    pub fn init(&self, durability: Durability, auth: &Auth) -> Result<(), LocalPgError> {
        if self.is_initialized() {
            return Ok(());
        }
        if which("initdb").is_none() || which("pg_ctl").is_none() {
            return Err(LocalPgError::BinariesMissing);
        }
        create_dir(&self.data_dir)?;
        if is_root() {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(&self.data_dir))
            .map_err(|_| LocalPgError::NoPostgresUser)?;
        }
        let mut initdb = pg_command("initdb");
        initdb.arg("-D").arg(&self.data_dir).args([
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        let hba = match auth {
            Auth::Trust => {
                initdb.args(["-A", "trust"]);
                run(&mut initdb)?;
                "trust"
            }
            Auth::Scram(password) => {
                let pwfile = PwFile::write(&self.data_dir, password)?;
                initdb
                    .arg("--auth=scram-sha-256")
                    .arg(format!("--pwfile={}", pwfile.path.display()));
                let result = run(&mut initdb);
                drop(pwfile);
                result?;
                "scram-sha-256"
            }
        };
        let mut conf = String::from(
            "\n# written by riptide\nwal_level = logical\nmax_replication_slots = 64\n\
             max_wal_senders = 64\nmax_connections = 300\nlisten_addresses = '127.0.0.1'\n\
             shared_buffers = 256MB\nmax_wal_size = 4GB\nlog_min_messages = warning\n",
        );
        if durability == Durability::Ephemeral {
            // With synchronous_commit off, a commit reaches logical replication only once the
            // WAL writer flushes it: every wal_writer_delay (default 200 ms). 10 ms keeps the
            // commit-to-client latency of tests close to what a durable cluster shows.
            conf.push_str(
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
                 wal_writer_delay = 10ms\n",
            );
        }
        append(&self.data_dir.join("postgresql.conf"), &conf)?;
        append(
            &self.data_dir.join("pg_hba.conf"),
            &format!(
                "\nhost all all 127.0.0.1/32 {hba}\nhost replication all 127.0.0.1/32 {hba}\n"
            ),
        )?;
        Ok(())
    }

    /// The port of the running server, from `postmaster.pid`, if it is running.
    pub fn running_port(&self) -> Option<u16> {
        let status = pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
        let pid_file = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        pid_file.lines().nth(3)?.trim().parse().ok()
    }

    /// Starts the server (on `port`, or a free port when `None`) unless it already runs, and
    /// returns the port it listens on.
    pub fn start(&self, port: Option<u16>) -> Result<u16, LocalPgError> {
        if let Some(port) = self.running_port() {
            return Ok(port);
        }
        let log = self.data_dir.join("server.log");
        let attempts = if port.is_some() { 1 } else { 5 };
        for _ in 0..attempts {
            let port = match port {
                Some(p) => p,
                None => free_port().map_err(|source| LocalPgError::Io {
                    path: "127.0.0.1:0".into(),
                    source,
                })?,
            };
            let opts = format!("-p {port} -k {}", self.data_dir.display());
            let started = run(pg_command("pg_ctl")
                .arg("-D")
                .arg(&self.data_dir)
                .args(["-o", &opts, "-l"])
                .arg(&log)
                .args(["-w", "-t", "120", "start"]));
            match started {
                Ok(()) => {
                    tracing::debug!(port, data_dir = %self.data_dir.display(), "postgres started");
                    return Ok(port);
                }
                Err(e) => tracing::debug!(error = %e, "postgres start attempt failed"),
            }
        }
        Err(LocalPgError::StartFailed { attempts, log })
    }

    /// Stops the server: `fast` shuts down cleanly, otherwise `immediate`.
    pub fn stop(&self, fast: bool) -> Result<(), LocalPgError> {
        let mode = if fast { "fast" } else { "immediate" };
        run(pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", mode, "-w", "stop"]))
    }

    /// The shell command that stops this cluster (for watchdogs that outlive us).
    pub fn stop_command(&self) -> String {
        let prefix = if is_root() {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!(
            "{prefix}pg_ctl -D '{}' -m immediate -w stop",
            self.data_dir.display()
        )
    }
}

/// `postgres://postgres@127.0.0.1:PORT/DBNAME`: a cluster of [`Auth::Trust`].
pub fn url(port: u16, dbname: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/{dbname}")
}

/// What a URL's userinfo and path segment must percent-encode: everything but letters and
/// digits and the unreserved `-._~`.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `postgres://postgres:PASSWORD@127.0.0.1:PORT/DBNAME` for a cluster of [`Auth::Scram`]
/// (`password` and `dbname` percent-encoded), or [`url`]'s form without a password. The
/// result holds a secret: show it only through `riptide_pg::uri::redact`.
pub fn url_with(port: u16, dbname: &str, password: Option<&str>) -> String {
    let dbname = utf8_percent_encode(dbname, URL_COMPONENT);
    match password {
        Some(pw) => {
            let pw = utf8_percent_encode(pw, URL_COMPONENT);
            format!("postgres://postgres:{pw}@127.0.0.1:{port}/{dbname}")
        }
        None => format!("postgres://postgres@127.0.0.1:{port}/{dbname}"),
    }
}

/// The password file `initdb --pwfile` reads, beside the data directory (which must stay empty
/// for `initdb`), readable by the user `initdb` runs as only, removed when dropped.
struct PwFile {
    path: PathBuf,
}

impl PwFile {
    fn write(data_dir: &Path, password: &str) -> Result<PwFile, LocalPgError> {
        use std::io::Write;
        let mut name = data_dir.file_name().unwrap_or_default().to_owned();
        name.push(".initdb-pwfile");
        let path = data_dir.with_file_name(name);
        let io = |source| LocalPgError::Io {
            path: path.clone(),
            source,
        };
        // A leftover of a crashed init is replaced.
        let _ = std::fs::remove_file(&path);
        let file = PwFile { path: path.clone() };
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{password}"))
            .map_err(io)?;
        if is_root() {
            run(Command::new("chown").arg("postgres:postgres").arg(&path))
                .map_err(|_| LocalPgError::NoPostgresUser)?;
        }
        Ok(file)
    }
}

impl Drop for PwFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether this process runs as root (PostgreSQL then runs as the `postgres` user).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn pg_command(program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command) -> Result<(), LocalPgError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LocalPgError::Io {
            path: PathBuf::from(cmd.get_program()),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(LocalPgError::CommandFailed {
        command: format!("{cmd:?}"),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .trim()
        .to_owned(),
    })
}

fn create_dir(path: &Path) -> Result<(), LocalPgError> {
    std::fs::create_dir_all(path).map_err(|source| LocalPgError::Io {
        path: path.to_owned(),
        source,
    })
}

fn append(path: &Path, text: &str) -> Result<(), LocalPgError> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| LocalPgError::Io {
            path: path.to_owned(),
            source,
        })
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_start_reuse_stop() {
        let dir = tempfile::Builder::new()
            .prefix("riptide-localpg")
            .tempdir()
            .unwrap();
        let cluster = LocalCluster::new(dir.path().join("pg"));
        assert!(!cluster.is_initialized());
        cluster.init(Durability::Ephemeral, &Auth::Trust).unwrap();
        assert!(cluster.is_initialized());
        cluster.init(Durability::Ephemeral, &Auth::Trust).unwrap();
        let port = cluster.start(None).unwrap();
        assert_eq!(cluster.running_port(), Some(port));
        assert_eq!(
            cluster.start(None).unwrap(),
            port,
            "a running cluster is reused"
        );
        cluster.stop(true).unwrap();
        assert_eq!(cluster.running_port(), None);
    }

    #[test]
    fn a_password_cluster_asks_for_scram_and_removes_its_pwfile() {
        let dir = tempfile::Builder::new()
            .prefix("riptide-localpg")
            .tempdir()
            .unwrap();
        let cluster = LocalCluster::new(dir.path().join("pg"));
        let password = generate_password();
        cluster
            .init(Durability::Ephemeral, &Auth::Scram(password.clone()))
            .unwrap();
        let hba = std::fs::read_to_string(dir.path().join("pg/pg_hba.conf")).unwrap();
        let rules: Vec<&str> = hba
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .collect();
        assert!(
            rules.iter().all(|l| !l.contains("trust")),
            "no rule trusts: {rules:?}"
        );
        assert!(
            hba.contains("host replication all 127.0.0.1/32 scram-sha-256"),
            "{hba}"
        );
        assert_eq!(
            entries(dir.path()),
            ["pg"],
            "the password file is removed after initdb"
        );
    }

    #[test]
    fn urls_percent_encode_password_and_database() {
        assert_eq!(
            url_with(5432, "shop", Some("a b/c@d:e%")),
            "postgres://postgres:a%20b%2Fc%40d%3Ae%25@127.0.0.1:5432/shop"
        );
        assert_eq!(
            url_with(5432, "my db", None),
            "postgres://postgres@127.0.0.1:5432/my%20db"
        );
        let pw = generate_password();
        assert_eq!(pw.len(), 32);
        assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(pw, generate_password());
        assert_eq!(format!("{:?}", Auth::Scram(pw)), "Scram(***)");
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}
