//! What other processes on the same storage committed, handed to this node's channels: the
//! [`NotificationSink`] a [`riptide_storage::CheckpointListener`] delivers to
//! ([`AppState::notification_sink`]), and its metrics.
//!
//! Another node's commit goes on the node's checkpoint bus as any commit (with its ops when the
//! listener read a small commit once for the node, else without: the sessions it concerns read
//! storage; the wake index picks them); a write checkpoint created on another node is announced to this node's streams;
//! a deployment change is handed to the hook given (`riptide serve` switches the service's
//! rules with it).
//!
//! Metrics (`names`): notifications received per kind, bad ones, the listener's reconnects, and
//! the lag — the storage database's clock when the writer committed (in the payload) to this
//! process's clock when the notification was handed on, so it includes any skew between the
//! two clocks (none on one machine; NTP-close across machines).

use std::sync::Arc;
use std::time::SystemTime;

use metrics::{Counter, Histogram, Unit};
use riptide_protocol::OpId;
use riptide_storage::{CheckpointEvent, DeploymentId, DeploymentState, NotificationSink};

use crate::state::AppState;
use crate::write_checkpoints::WriteCheckpointNotice;

/// Metric names, defined once.
pub mod names {
    /// Counter, label `kind` (`checkpoint` / `write_checkpoint` / `deployment`): notifications
    /// from other processes handed on to this node's streams.
    pub const NOTIFICATIONS_RECEIVED: &str = "riptide_notifications_received_total";
    /// Counter: notification payloads that were not understood (logged, ignored).
    pub const NOTIFICATIONS_BAD: &str = "riptide_notifications_bad_total";
    /// Counter: times the listener lost its storage connection and reconnected (catching up).
    pub const NOTIFICATION_RECONNECTS: &str = "riptide_notification_listener_reconnects_total";
    /// Counter: times the listener fell behind, dropped notifications and caught up from storage.
    pub const NOTIFICATION_OVERFLOWS: &str = "riptide_notification_listener_overflows_total";
    /// Summary: seconds from the writer's commit (storage database clock) to the notification
    /// handed on here (this process's clock).
    pub const NOTIFICATION_LAG: &str = "riptide_notification_lag_seconds";
}

/// The series, registered once with the service's recorder.
pub(crate) struct NotificationSeries {
    checkpoints: Counter,
    write_checkpoints: Counter,
    deployments: Counter,
    bad: Counter,
    reconnects: Counter,
    overflows: Counter,
    lag: Histogram,
}

impl NotificationSeries {
    /// Registers the series; call inside the service's local recorder.
    pub(crate) fn register() -> NotificationSeries {
        use names::*;
        metrics::describe_counter!(
            NOTIFICATIONS_RECEIVED,
            "Notifications from other processes on the storage handed on"
        );
        metrics::describe_counter!(NOTIFICATIONS_BAD, "Notification payloads not understood");
        metrics::describe_counter!(
            NOTIFICATION_RECONNECTS,
            "Reconnects of the notification listener"
        );
        metrics::describe_counter!(
            NOTIFICATION_OVERFLOWS,
            "Times the notification listener fell behind and caught up from storage"
        );
        metrics::describe_histogram!(
            NOTIFICATION_LAG,
            Unit::Seconds,
            "Seconds from another process's commit to its notification handed on"
        );
        NotificationSeries {
            checkpoints: metrics::counter!(NOTIFICATIONS_RECEIVED, "kind" => "checkpoint"),
            write_checkpoints: metrics::counter!(NOTIFICATIONS_RECEIVED, "kind" => "write_checkpoint"),
            deployments: metrics::counter!(NOTIFICATIONS_RECEIVED, "kind" => "deployment"),
            bad: metrics::counter!(NOTIFICATIONS_BAD),
            reconnects: metrics::counter!(NOTIFICATION_RECONNECTS),
            overflows: metrics::counter!(NOTIFICATION_OVERFLOWS),
            lag: metrics::histogram!(NOTIFICATION_LAG),
        }
    }

    fn lag(&self, sent_at: Option<SystemTime>) {
        if let Some(lag) = sent_at.and_then(|t| SystemTime::now().duration_since(t).ok()) {
            self.lag.record(lag.as_secs_f64());
        }
    }
}

/// Called with a deployment that changed state in another process.
pub type DeploymentHook = Arc<dyn Fn(DeploymentId, DeploymentState) + Send + Sync>;

/// This node's channels as a [`NotificationSink`].
struct NodeChannels {
    state: AppState,
    on_deployment: Option<DeploymentHook>,
}

impl NotificationSink for NodeChannels {
    fn checkpoint(&self, event: CheckpointEvent, sent_at: Option<SystemTime>) {
        let series = &self.state.inner.metrics.notifications;
        series.checkpoints.increment(1);
        series.lag(sent_at);
        // No receivers just means no open stream (the wake index subscribes with the first).
        let _ = self.state.inner.events.send(event);
    }

    fn write_checkpoint(
        &self,
        user_id: String,
        client_id: String,
        id: OpId,
        sent_at: Option<SystemTime>,
    ) {
        let series = &self.state.inner.metrics.notifications;
        series.write_checkpoints.increment(1);
        series.lag(sent_at);
        self.state
            .inner
            .write_checkpoints
            .notify(WriteCheckpointNotice {
                user_id,
                client_id,
                id,
            });
    }

    fn deployment(
        &self,
        deployment: DeploymentId,
        state: DeploymentState,
        sent_at: Option<SystemTime>,
    ) {
        let series = &self.state.inner.metrics.notifications;
        series.deployments.increment(1);
        series.lag(sent_at);
        if let Some(hook) = &self.on_deployment {
            hook(deployment, state);
        }
    }

    fn bad_notification(&self) {
        self.state.inner.metrics.notifications.bad.increment(1);
    }

    fn reconnecting(&self) {
        self.state
            .inner
            .metrics
            .notifications
            .reconnects
            .increment(1);
    }

    fn overflowed(&self) {
        self.state
            .inner
            .metrics
            .notifications
            .overflows
            .increment(1);
    }
}

impl AppState {
    /// Where a [`riptide_storage::CheckpointListener`] hands on what other processes on the
    /// same storage committed: this service's checkpoint bus and write-checkpoint notices, and
    /// `on_deployment` for deployment changes (none: ignored).
    pub fn notification_sink(
        &self,
        on_deployment: Option<DeploymentHook>,
    ) -> Arc<dyn NotificationSink> {
        Arc::new(NodeChannels {
            state: self.clone(),
            on_deployment,
        })
    }
}
