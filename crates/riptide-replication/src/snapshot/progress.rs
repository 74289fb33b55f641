//! Where an initial snapshot stands, per table, so one interrupted by a crash resumes after its
//! last commit. Stored like the tracked tables (`tables.rs`): as current rows of a pseudo
//! source table, [`PROGRESS_SOURCE`] (no dot, so no real table shares it), saved in the same
//! storage transaction as the rows they describe, so progress and data never disagree.

use std::collections::HashMap;

use riptide_rules::{Row, SqliteValue};
use riptide_storage::{BatchOperation, BucketStorage, DeploymentId, RowChange, RowOperation};

use crate::error::ReplicationError;

/// Pseudo source table of the snapshot's progress rows (one per table, keyed by its name).
pub const PROGRESS_SOURCE: &str = "riptide:snapshot_progress";

/// How far the snapshot copied one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableProgress {
    /// Every row up to this replica-identity key (the replicator's key encoding), in key
    /// order, is committed.
    After(Vec<u8>),
    /// Every row is committed.
    Done,
}

/// The storage operation recording `progress` for `table`.
pub fn op(table: &str, progress: &TableProgress) -> BatchOperation {
    let mut row = Row::new();
    match progress {
        TableProgress::After(key) => row.insert("after", SqliteValue::Blob(key.clone())),
        TableProgress::Done => row.insert("done", SqliteValue::Integer(1)),
    };
    BatchOperation::Row(RowOperation {
        source_table: PROGRESS_SOURCE.to_owned(),
        key: table.as_bytes().to_vec(),
        change: RowChange::Upsert {
            row: row.encode(),
            buckets: Vec::new(),
            parameters: Vec::new(),
        },
    })
}

/// The stored progress of `tables` (tables without progress are absent).
pub async fn stored(
    storage: &dyn BucketStorage,
    deployment: DeploymentId,
    tables: &[String],
) -> Result<HashMap<String, TableProgress>, ReplicationError> {
    let keys: Vec<Vec<u8>> = tables.iter().map(|t| t.as_bytes().to_vec()).collect();
    let rows = storage
        .current_rows(deployment, PROGRESS_SOURCE, &keys)
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for (key, bytes) in rows {
        let row = Row::decode(&bytes).map_err(ReplicationError::TrackedDecode)?;
        let progress = match (row.get("done"), row.get("after")) {
            (Some(SqliteValue::Integer(1)), _) => TableProgress::Done,
            (_, Some(SqliteValue::Blob(key))) => TableProgress::After(key.clone()),
            _ => continue,
        };
        out.insert(String::from_utf8_lossy(&key).into_owned(), progress);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use riptide_storage::MemoryStorage;

    #[tokio::test]
    async fn progress_round_trips_through_storage() {
        let storage = MemoryStorage::new();
        let d = storage
            .create_deployment("x", "t_")
            .await
            .expect("deployment");
        let mut batch = storage.begin_batch(d.id).await.expect("batch");
        batch
            .save(vec![
                op("public.a", &TableProgress::After(vec![1, 2, 3])),
                op("public.b", &TableProgress::Done),
            ])
            .await
            .expect("save");
        batch
            .commit(riptide_protocol::Lsn(1))
            .await
            .expect("commit");
        let names = [
            "public.a".to_owned(),
            "public.b".to_owned(),
            "public.c".to_owned(),
        ];
        let got = stored(&storage, d.id, &names).await.expect("stored");
        assert_eq!(got.len(), 2);
        assert_eq!(got["public.a"], TableProgress::After(vec![1, 2, 3]));
        assert_eq!(got["public.b"], TableProgress::Done);
    }
}
