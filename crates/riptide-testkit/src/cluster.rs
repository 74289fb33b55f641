//! The test run's PostgreSQL server.

use std::sync::OnceLock;

pub use riptide_localpg::{LocalCluster, LocalPgError};

/// The server tests connect to.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl Cluster {
    /// `postgres://user@host:port/dbname`.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgres://{}@{}:{}/{}",
            self.user, self.host, self.port, dbname
        )
    }

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
        })
    }
}

/// The cluster of this test run: `RIPTIDE_TEST_PG_URL` when set, otherwise a private cluster
/// this process starts on first use and a watchdog stops and removes after it exits.
pub fn server() -> &'static Cluster {
    static SERVER: OnceLock<Cluster> = OnceLock::new();
    SERVER.get_or_init(|| {
        if let Some(url) = std::env::var("RIPTIDE_TEST_PG_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            return Cluster::from_url(&url)
                .unwrap_or_else(|| panic!("RIPTIDE_TEST_PG_URL is not a postgres URL: {url}"));
        }
        let dir = std::env::temp_dir().join(format!(
            "riptide-test-pg-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let local = LocalCluster::new(&dir);
        let port = local
            .init(riptide_localpg::Durability::Ephemeral)
            .and_then(|()| local.start(None))
            .unwrap_or_else(|e| panic!("cannot start the test Postgres cluster: {e}"));
        spawn_watchdog(&local);
        Cluster {
            host: "127.0.0.1".into(),
            port,
            user: "postgres".into(),
        }
    })
}

/// Stops and removes the cluster once this process has exited.
fn spawn_watchdog(cluster: &LocalCluster) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        stop = cluster.stop_command(),
        dir = cluster.data_dir().display()
    );
    let _ = std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}
