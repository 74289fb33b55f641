//! This process's role and its share of the replication lease on `/metrics` (`riptide
//! serve` attaches a [`NodeStatus`]; without one the series are not shown). Refreshed when
//! `/metrics` is rendered, like the replication counters.

use std::sync::Arc;

use metrics::{Counter, Gauge};

/// Series names (see `docs/scaling.md`).
pub mod names {
    /// 1, labelled with the process's role (`all`, `replicator`, `api`).
    pub const NODE_ROLE: &str = "riptide_node_role";
    /// 1 while this process holds the replication lease.
    pub const LEASE_HOLDER: &str = "riptide_lease_holder";
    /// 1 while this process competes for the lease without holding it.
    pub const LEASE_STANDBY: &str = "riptide_lease_standby";
    /// The lease epoch held (0: none).
    pub const LEASE_EPOCH: &str = "riptide_lease_epoch";
    /// Times this process took the lease.
    pub const LEASE_TAKEOVERS: &str = "riptide_lease_takeovers_total";
    /// Times it lost the lease while holding it (taken over, or storage unreachable).
    pub const LEASE_LOSSES: &str = "riptide_lease_losses_total";
}

/// The role and lease state of this process, as `riptide serve` keeps them.
pub trait NodeStatus: Send + Sync + 'static {
    fn node(&self) -> NodeSnapshot;
}

/// A copy of [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSnapshot {
    pub role: &'static str,
    /// Whether the role competes for the lease.
    pub competes: bool,
    pub lease_epoch: Option<i64>,
    pub takeovers: u64,
    pub losses: u64,
}

pub(crate) struct NodeSeries {
    holder: Gauge,
    standby: Gauge,
    epoch: Gauge,
    takeovers: Counter,
    losses: Counter,
}

impl NodeSeries {
    /// Registers the series on the recorder in scope.
    pub(crate) fn register() -> NodeSeries {
        use names::*;
        metrics::describe_gauge!(NODE_ROLE, "1, labelled with this process's role");
        metrics::describe_gauge!(
            LEASE_HOLDER,
            "1 while this process holds the replication lease"
        );
        metrics::describe_gauge!(LEASE_STANDBY, "1 while this process waits for the lease");
        metrics::describe_gauge!(LEASE_EPOCH, "Replication lease epoch held (0: none)");
        metrics::describe_counter!(LEASE_TAKEOVERS, "Times this process took the lease");
        metrics::describe_counter!(LEASE_LOSSES, "Times this process lost the lease");
        NodeSeries {
            holder: metrics::gauge!(LEASE_HOLDER),
            standby: metrics::gauge!(LEASE_STANDBY),
            epoch: metrics::gauge!(LEASE_EPOCH),
            takeovers: metrics::counter!(LEASE_TAKEOVERS),
            losses: metrics::counter!(LEASE_LOSSES),
        }
    }

    /// Sets the series from `status`; the role series is registered on first use.
    pub(crate) fn refresh(&self, status: &Arc<dyn NodeStatus>, recorder: &dyn metrics::Recorder) {
        let s = status.node();
        metrics::with_local_recorder(recorder, || {
            metrics::gauge!(names::NODE_ROLE, "role" => s.role).set(1.0);
        });
        let holder = s.lease_epoch.is_some();
        self.holder.set(if holder { 1.0 } else { 0.0 });
        self.standby
            .set(if s.competes && !holder { 1.0 } else { 0.0 });
        self.epoch.set(s.lease_epoch.unwrap_or(0) as f64);
        self.takeovers.absolute(s.takeovers);
        self.losses.absolute(s.losses);
    }
}
