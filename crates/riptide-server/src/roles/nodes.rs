//! This process's row in `riptide.nodes`: registered once the HTTP port is bound, its
//! heartbeat (and the lease epoch held) refreshed every renewal interval, removed on a clean
//! shutdown. A row whose heartbeat is older than the lease duration is shown as gone
//! (`riptide status`, the dashboard).

use std::sync::Arc;
use std::time::Duration;

use riptide_storage::PgStorage;
use tokio_util::sync::CancellationToken;

use super::Node;

/// A node id: host name, process id and a random suffix (a restarted process is a new node).
pub fn node_id() -> String {
    format!(
        "{}-{}-{:04x}",
        host_name(),
        std::process::id(),
        rand::random::<u16>()
    )
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether node `id` ran on this machine in a process that no longer exists (a crashed or
/// killed `riptide serve` restarted here): its lease need not be waited for. Only when
/// `/proc` can tell; a paused process still exists, so it is never taken for gone.
pub(crate) fn gone_from_this_host(id: &str) -> bool {
    let mut parts = id.rsplitn(3, '-');
    let (Some(_suffix), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    let proc = std::path::Path::new("/proc");
    host == host_name()
        && pid != std::process::id()
        && proc.join("self").exists()
        && !proc.join(pid.to_string()).exists()
}

/// The node's registration: what it tells storage and how often.
pub struct NodeRegistration {
    pub node: Arc<Node>,
    pub storage: PgStorage,
    /// `host:port` of its HTTP service.
    pub address: String,
    pub interval: Duration,
}

impl NodeRegistration {
    /// Registers, then refreshes the heartbeat until `cancel`, then deregisters.
    pub async fn run(self, cancel: CancellationToken) {
        let id = &self.node.id;
        let role = self.node.role.as_str();
        let mut registered = false;
        loop {
            let epoch = self.node.lease().epoch;
            let result = if registered {
                self.storage.node_heartbeat(id, epoch).await
            } else {
                self.storage
                    .register_node(id, role, &self.address)
                    .await
                    .map(|()| false)
            };
            match result {
                Ok(true) => {}
                // Registered now, or the row was removed meanwhile: (re-)register next time.
                Ok(false) => registered = !registered,
                Err(e) => {
                    tracing::warn!(node = %id, error = %e, "cannot refresh this node's row in storage")
                }
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
        if let Err(e) = self.storage.deregister_node(id).await {
            tracing::warn!(node = %id, error = %e, "cannot remove this node's row from storage");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_of_this_host_that_is_gone_is_recognised() {
        let id = node_id();
        assert!(!gone_from_this_host(&id), "this process is alive");
        let host = host_name();
        // Above the kernel's pid_max: never a live process.
        assert!(gone_from_this_host(&format!("{host}-99999999-abcd")));
        assert!(!gone_from_this_host("another-host-99999999-abcd"));
        assert!(!gone_from_this_host("garbage"));
    }
}
