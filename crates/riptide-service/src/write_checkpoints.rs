//! In-process notices of new write checkpoints, so a stream of the same user/client looks for
//! its write checkpoint right away and on every following storage checkpoint until reported.

use riptide_protocol::OpId;
use tokio::sync::broadcast;

/// A write checkpoint was created (or a checkpoint request stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteCheckpointNotice {
    pub user_id: String,
    pub client_id: String,
    pub id: OpId,
}

/// Fan-out of [`WriteCheckpointNotice`]s to stream sessions.
#[derive(Debug, Clone)]
pub struct WriteCheckpointNotifier {
    tx: broadcast::Sender<WriteCheckpointNotice>,
}

impl Default for WriteCheckpointNotifier {
    fn default() -> Self {
        WriteCheckpointNotifier {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl WriteCheckpointNotifier {
    pub fn notify(&self, notice: WriteCheckpointNotice) {
        // No receivers just means no open stream.
        let _ = self.tx.send(notice);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<WriteCheckpointNotice> {
        self.tx.subscribe()
    }
}
