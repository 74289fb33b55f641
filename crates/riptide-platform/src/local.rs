//! The local provider: one Riptide-managed PostgreSQL cluster per `RIPTIDE_HOME` (data under
//! `RIPTIDE_HOME/clusters/local`, or `/var/lib/riptide/…` when run as root from a home the
//! `postgres` user cannot reach), configured by `riptide-localpg` for logical replication. It
//! keeps the port it was first given, so the URLs handed out stay valid; it is started on demand.
//!
//! Every connection to it, local ones included, needs the `postgres` superuser's SCRAM-SHA-256
//! password: generated at the cluster's creation, kept in `state.json` (mode 0600), carried
//! (percent-encoded) by every URL handed out ([`RunningCluster::url`]), never printed (the CLI and
//! MCP show URLs through `redact`). A cluster created before that (trusting local connections,
//! no password in the state) keeps working as it was, with a warning on each use: changing it
//! would break the URLs already written to apps' `.env` files and sync configs; deleting the
//! home (its data too) makes the next command create a password-protected one.

use riptide_localpg::{Auth, Durability, LocalCluster};

use crate::state::{ClusterRecord, Store};
use crate::{PlatformError, Progress, home, process};

/// What [`ensure_cluster`] says about a cluster without a password.
pub const TRUST_WARNING: &str = "the local Postgres cluster was created by an older Riptide and \
    accepts every local connection without a password; it keeps working as it is. To get a \
    password-protected cluster, delete RIPTIDE_HOME (its databases are lost) and run the command \
    again.";

/// The local cluster, running.
#[derive(Clone)]
pub struct RunningCluster {
    pub cluster: LocalCluster,
    pub port: u16,
    /// The superuser's password (`None`: a cluster that trusts local connections).
    pub password: Option<String>,
}

impl std::fmt::Debug for RunningCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningCluster")
            .field("cluster", &self.cluster)
            .field("port", &self.port)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl RunningCluster {
    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/dbname` (the password percent-encoded);
    /// a secret: show it through [`crate::redact`].
    pub fn url(&self, dbname: &str) -> String {
        riptide_localpg::url_with(self.port, dbname, self.password.as_deref())
    }
}

/// Initialises (first use) and starts (if stopped) the local cluster, recording it in `store`
/// (not saved: the caller saves with the rest of its change). A failed first initialisation
/// removes the data directory again.
pub async fn ensure_cluster(
    store: &mut Store,
    progress: &dyn Progress,
) -> Result<RunningCluster, PlatformError> {
    let (data_dir, port, mut password) = match &store.state.cluster {
        Some(c) => (c.data_dir.clone(), Some(c.port), c.password.clone()),
        None => (
            home::cluster_dir(store.home(), "clusters/local"),
            None,
            None,
        ),
    };
    let cluster = LocalCluster::new(&data_dir);
    if !cluster.is_initialized() {
        // A new cluster always gets a password (the recorded one if its first initialisation
        // failed after the state was saved).
        let pw = password
            .take()
            .unwrap_or_else(riptide_localpg::generate_password);
        let auth = Auth::Scram(pw.clone());
        password = Some(pw);
        progress.start(&format!(
            "initialising a local Postgres cluster in {}",
            data_dir.display()
        ));
        let existed = data_dir.exists();
        let c = cluster.clone();
        let result = tokio::task::spawn_blocking(move || c.init(Durability::Durable, &auth))
            .await
            .map_err(|e| PlatformError::Process(format!("initdb task failed: {e}")))?;
        progress.finish();
        if let Err(e) = result {
            if !existed {
                let _ = std::fs::remove_dir_all(&data_dir);
            }
            return Err(e.into());
        }
    } else if password.is_none() {
        progress.warn(TRUST_WARNING);
    }
    let port = start(&cluster, port, progress).await?;
    store.state.cluster = Some(ClusterRecord {
        data_dir: data_dir.clone(),
        port,
        password: password.clone(),
    });
    Ok(RunningCluster {
        cluster,
        port,
        password,
    })
}

/// Starts the cluster on `port` (a free one when `None`) unless it runs already.
async fn start(
    cluster: &LocalCluster,
    port: Option<u16>,
    progress: &dyn Progress,
) -> Result<u16, PlatformError> {
    let c = cluster.clone();
    if let Some(p) = tokio::task::spawn_blocking(move || c.running_port())
        .await
        .ok()
        .flatten()
    {
        return Ok(p);
    }
    let port = match port {
        Some(p) => p,
        None => process::free_port()?,
    };
    if process::port_in_use(port) {
        return Err(PlatformError::PortInUse { port });
    }
    progress.start(&format!("starting the local Postgres on port {port}"));
    let c = cluster.clone();
    let result = tokio::task::spawn_blocking(move || c.start(Some(port)))
        .await
        .map_err(|e| PlatformError::Process(format!("pg_ctl task failed: {e}")))?;
    progress.finish();
    Ok(result?)
}

/// Restarts the cluster (after a configuration change).
pub async fn restart(running: &RunningCluster) -> Result<(), PlatformError> {
    let c = running.cluster.clone();
    let port = running.port;
    tokio::task::spawn_blocking(move || {
        c.stop(true)?;
        c.start(Some(port)).map(|_| ())
    })
    .await
    .map_err(|e| PlatformError::Process(format!("pg_ctl task failed: {e}")))?
    .map_err(Into::into)
}

/// Stops the local cluster if it runs; whether it was running.
pub async fn stop(record: &ClusterRecord) -> Result<bool, PlatformError> {
    let c = LocalCluster::new(&record.data_dir);
    tokio::task::spawn_blocking(move || {
        if c.running_port().is_none() {
            return Ok(false);
        }
        c.stop(true).map(|()| true)
    })
    .await
    .map_err(|e| PlatformError::Process(format!("pg_ctl task failed: {e}")))?
    .map_err(Into::into)
}
