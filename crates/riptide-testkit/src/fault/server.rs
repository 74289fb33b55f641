//! A private Postgres server a fault test may kill and restart (the test run's shared cluster
//! must never be): its own data directory and port, `wal_level = logical`, commits durable
//! against a killed process (`synchronous_commit = on`), removed when dropped.

use std::time::Duration;

use riptide_localpg::{Auth, Durability, LocalCluster, LocalPgError};

/// A Postgres server of one test: started on creation, on the same port after every restart.
#[derive(Debug)]
pub struct PgServer {
    cluster: LocalCluster,
    port: u16,
    /// Keeps the data directory until the server is dropped.
    _dir: tempfile::TempDir,
}

impl PgServer {
    /// Initialises and starts a new server on a free port.
    pub fn start() -> Result<PgServer, LocalPgError> {
        let dir = tempfile::Builder::new()
            .prefix("riptide-fault-pg")
            .tempdir()
            .map_err(|source| LocalPgError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        make_traversable(dir.path());
        let cluster = LocalCluster::new(dir.path().join("pg"));
        cluster.init(Durability::Ephemeral, &Auth::Trust)?;
        // A killed server keeps every commit it acknowledged, as a real one does: with
        // synchronous_commit off (the ephemeral default) an immediate stop loses the last
        // commits, which a crash test would take for data the service lost. fsync stays off:
        // the process is killed, not the machine.
        let conf = dir.path().join("pg").join("postgresql.conf");
        let io = |source| LocalPgError::Io {
            path: conf.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(io)?;
        std::io::Write::write_all(&mut file, b"\nsynchronous_commit = on\n").map_err(io)?;
        let port = cluster.start(None)?;
        Ok(PgServer {
            cluster,
            port,
            _dir: dir,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/DBNAME`.
    pub fn url(&self, dbname: &str) -> String {
        riptide_localpg::url(self.port, dbname)
    }

    pub fn config(&self, dbname: &str) -> tokio_postgres::Config {
        self.url(dbname).parse().expect("local URL parses")
    }

    /// Kills the server (`pg_ctl stop -m immediate`: no checkpoint, like a crash; it
    /// recovers from its WAL at the next start).
    pub fn kill(&self) -> Result<(), LocalPgError> {
        self.cluster.stop(false)
    }

    /// Starts the server again on its port (after [`PgServer::kill`]).
    pub fn restart(&self) -> Result<(), LocalPgError> {
        self.cluster.start(Some(self.port)).map(|_| ())
    }

    /// Whether the server runs.
    pub fn is_running(&self) -> bool {
        self.cluster.running_port().is_some()
    }

    /// Creates database `name` (the server must run).
    pub async fn create_database(&self, name: &str) {
        self.client("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    }

    /// A new connection to `dbname`, retried for up to 30 s while the server starts.
    pub async fn client(&self, dbname: &str) -> tokio_postgres::Client {
        let url = self.url(dbname);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let connection = riptide_pg::PgConnection::from_uri(&url)
                .unwrap_or_else(|e| panic!("fault server URL {url}: {e}"));
            match connection.connect().await {
                Ok(client) => return client,
                Err(e) if std::time::Instant::now() > deadline => panic!("connect to {url}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// `ALTER SYSTEM SET <name> = '<value>'` and a configuration reload.
    pub async fn set(&self, name: &str, value: &str) {
        let client = self.client("postgres").await;
        // Two statements: ALTER SYSTEM refuses to run inside a transaction block.
        for sql in [
            format!("ALTER SYSTEM SET {name} = '{}'", value.replace('\'', "''")),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            client
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("set {name}: {e:?}"));
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.cluster.stop(false);
    }
}

/// The `postgres` user runs the server when we are root: it must reach the data directory.
fn make_traversable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
}
