//! A private PostgreSQL cluster under a data directory we own, driven through the server
//! binaries on PATH (`initdb`, `pg_ctl`). Used by `riptide serve`'s embedded default, the
//! platform tools' local database provider, and the test kit.
//!
//! The cluster is configured for logical replication (`wal_level = logical`), listens on
//! 127.0.0.1 only, and trusts loopback connections including replication. PostgreSQL refuses to
//! run as root; when we are root, `initdb` and `pg_ctl` run as the `postgres` user and the data
//! directory is owned by it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

    /// Runs `initdb` (if not done yet) and writes the replication-ready configuration.
    pub fn init(&self, durability: Durability) -> Result<(), LocalPgError> {
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
        run(pg_command("initdb").arg("-D").arg(&self.data_dir).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]))?;
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
            "\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n",
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

/// `postgres://postgres@127.0.0.1:PORT/DBNAME`.
pub fn url(port: u16, dbname: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/{dbname}")
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
        cluster.init(Durability::Ephemeral).unwrap();
        assert!(cluster.is_initialized());
        cluster.init(Durability::Ephemeral).unwrap();
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
}
