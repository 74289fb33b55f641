//! A storage batch whose `save`s run in the background: while storage writes one chunk, the
//! replicator decodes and evaluates the next. At most one save is in flight; each `save`,
//! and `commit`, first waits for the previous save and reports its error.

use std::collections::HashMap;

use riptide_protocol::Lsn;
use riptide_storage::{BatchOperation, CheckpointEvent, StorageBatch, StorageError};
use tokio::task::JoinHandle;

use crate::error::ReplicationError;

type SaveTask = JoinHandle<Result<Box<dyn StorageBatch>, StorageError>>;

enum State {
    Idle(Box<dyn StorageBatch>),
    Saving(SaveTask),
    /// A save failed or panicked; the batch is gone.
    Broken,
}

pub struct PipelinedBatch {
    state: State,
}

impl PipelinedBatch {
    pub fn new(batch: Box<dyn StorageBatch>) -> Self {
        PipelinedBatch {
            state: State::Idle(batch),
        }
    }

    async fn take(&mut self) -> Result<Box<dyn StorageBatch>, ReplicationError> {
        match std::mem::replace(&mut self.state, State::Broken) {
            State::Idle(batch) => Ok(batch),
            State::Saving(task) => match task.await {
                Ok(result) => Ok(result?),
                Err(join) => Err(ReplicationError::Protocol(format!(
                    "storage save task failed: {join}"
                ))),
            },
            State::Broken => Err(ReplicationError::Protocol(
                "storage batch is unusable after an earlier failure".into(),
            )),
        }
    }

    /// Starts saving `ops` in the background (after the previous save finished).
    pub async fn save(&mut self, ops: Vec<BatchOperation>) -> Result<(), ReplicationError> {
        let mut batch = self.take().await?;
        if ops.is_empty() {
            self.state = State::Idle(batch);
            return Ok(());
        }
        self.state = State::Saving(tokio::spawn(async move {
            batch.save(ops).await?;
            Ok(batch)
        }));
        Ok(())
    }

    /// Rows of a table as this batch sees them (its saves, then what is committed), once the
    /// save in flight is done.
    pub async fn current_rows(
        &mut self,
        source_table: &str,
        keys: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Vec<u8>>, ReplicationError> {
        let mut batch = self.take().await?;
        let rows = batch.current_rows(source_table, keys).await;
        self.state = State::Idle(batch);
        Ok(rows?)
    }

    /// Waits for the last save and commits.
    pub async fn commit(mut self, lsn: Lsn) -> Result<CheckpointEvent, ReplicationError> {
        let batch = self.take().await?;
        Ok(batch.commit(lsn).await?)
    }
}

impl Drop for PipelinedBatch {
    fn drop(&mut self) {
        // An abandoned batch must not keep writing: abort the save, which drops (and so
        // rolls back) the batch.
        if let State::Saving(task) = &self.state {
            task.abort();
        }
    }
}
