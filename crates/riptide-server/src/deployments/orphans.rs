//! Replication slots left behind. A replaced deployment's slot is dropped when it is retired,
//! but that can fail (the source was down, the process died between the steps), and a slot
//! nobody reads holds WAL on the source forever. So at start and after every switch, the slots
//! of the source database named with our prefix are checked against storage, carefully: a slot
//! is dropped only when it is not in use and storage records it as the slot of a deployment
//! that was replaced (`STOP` or `TERMINATED`). Slots of live deployments, and slots this
//! storage knows nothing of (another service on the same database may share the prefix), are
//! kept.

use riptide_storage::{DeploymentState, StorageError};

use super::Deployments;

impl Deployments {
    /// Drops the slots replaced deployments left behind (see the module docs); a replaced
    /// deployment whose storage was not removed yet is terminated too.
    pub(super) async fn drop_orphan_slots(&self) {
        let replicator = self.replicator();
        let slots = match replicator.slots().await {
            Ok(slots) => slots,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list replication slots");
                return;
            }
        };
        let prefix = &self.options.replicator.slot_prefix;
        for slot in slots.iter().filter(|s| !s.active) {
            let Some(id) = deployment_id(&slot.name, prefix) else {
                continue;
            };
            let d = match self.storage.deployment(id).await {
                Ok(d) => d,
                Err(StorageError::UnknownDeployment(_)) => {
                    tracing::debug!(slot = %slot.name, "a slot with our prefix that this storage does not know; kept");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(slot = %slot.name, error = %e, "cannot read the slot's deployment");
                    continue;
                }
            };
            if d.slot_name != slot.name
                || !matches!(d.state, DeploymentState::Stop | DeploymentState::Terminated)
            {
                continue;
            }
            match replicator.drop_slot(&slot.name).await {
                Ok(()) => {
                    tracing::info!(deployment = id, slot = %slot.name, "replication slot left by a replaced deployment dropped")
                }
                Err(e) => {
                    tracing::warn!(deployment = id, slot = %slot.name, error = %e, "cannot drop a replication slot left by a replaced deployment");
                    continue;
                }
            }
            if d.state == DeploymentState::Stop
                && let Err(e) = self.storage.terminate(id).await
            {
                tracing::warn!(deployment = id, error = %e, "cannot remove a replaced deployment's storage");
            }
        }
    }
}

/// The deployment id in a slot name `<prefix><id>_<4 hex>`.
fn deployment_id(name: &str, prefix: &str) -> Option<i64> {
    let (id, suffix) = name.strip_prefix(prefix)?.split_once('_')?;
    if suffix.len() != 4 || !suffix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    id.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::deployment_id;

    #[test]
    fn slot_names_give_their_deployment() {
        assert_eq!(deployment_id("riptide_12_ab3f", "riptide_"), Some(12));
        assert_eq!(deployment_id("riptide_12_ab3", "riptide_"), None);
        assert_eq!(deployment_id("riptide_resync_1_2_3", "riptide_"), None);
        assert_eq!(deployment_id("powersync_3_9f2a", "riptide_"), None);
        assert_eq!(deployment_id("riptide_x_9f2a", "riptide_"), None);
    }
}
