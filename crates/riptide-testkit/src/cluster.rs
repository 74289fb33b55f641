//! The test run's PostgreSQL server.

use std::sync::OnceLock;

pub use riptide_localpg::{LocalCluster, LocalPgError};

/// A server tests connect to.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    /// Query parameters every URL gets (TLS settings of the TLS server), without `?`.
    pub params: String,
}

impl Cluster {
    /// `postgres://user[:password]@host:port/dbname[?params]`.
    pub fn url(&self, dbname: &str) -> String {
        self.url_with(dbname, &self.params)
    }

    /// Like [`Cluster::url`] with other query parameters.
    pub fn url_with(&self, dbname: &str, params: &str) -> String {
        let password = self
            .password
            .as_ref()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        let query = if params.is_empty() {
            String::new()
        } else {
            format!("?{params}")
        };
        format!(
            "postgres://{}{password}@{}:{}/{dbname}{query}",
            self.user, self.host, self.port
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
            password: config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            params: String::new(),
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
            .init(
                riptide_localpg::Durability::Ephemeral,
                &riptide_localpg::Auth::Trust,
            )
            .and_then(|()| local.start(None))
            .unwrap_or_else(|e| panic!("cannot start the test Postgres cluster: {e}"));
        spawn_watchdog(&local, &dir);
        Cluster {
            host: "127.0.0.1".into(),
            port,
            user: "postgres".into(),
            password: None,
            params: String::new(),
        }
    })
}

/// Stops the cluster and removes `dir` (its data directory or a parent of it) once this
/// process has exited.
pub(crate) fn spawn_watchdog(cluster: &LocalCluster, dir: &std::path::Path) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        stop = cluster.stop_command(),
        dir = dir.display()
    );
    let _ = std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}
