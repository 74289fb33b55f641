//! `riptide.deployments`: sync-rules deployments and their lifecycle.

use deadpool_postgres::{GenericClient, Pool};
use postgres_types::PgLsn;
use riptide_protocol::OpId;
use tokio_postgres::Row;

use super::lease::{self, Fence};
use super::{CHECKPOINT_CHANNEL, compact, from_pg_lsn};
use crate::notifications;
use crate::{Deployment, DeploymentId, DeploymentState, Result, StorageCheckpoint, StorageError};

/// Advisory lock serialising `activate` (one ACTIVE deployment at most).
const ACTIVATE_LOCK: i64 = 0x7269_7074_6964_6561;

const COLUMNS: &str = "id, content, state, slot_name, snapshot_done, last_op_id, \
                       last_checkpoint_lsn, resume_lsn";

fn from_row(row: &Row) -> Result<Deployment> {
    let state: String = row.try_get(2)?;
    let state = DeploymentState::parse(&state)
        .ok_or_else(|| StorageError::Corrupt(format!("unknown deployment state {state:?}")))?;
    let snapshot_done: bool = row.try_get(4)?;
    let last_op_id: i64 = row.try_get(5)?;
    let last_lsn: Option<PgLsn> = row.try_get(6)?;
    let resume_lsn: Option<PgLsn> = row.try_get(7)?;
    // Readers see a checkpoint only once the snapshot is complete.
    let checkpoint = match (snapshot_done, last_lsn) {
        (true, Some(lsn)) => Some(StorageCheckpoint {
            op_id: OpId(last_op_id),
            lsn: from_pg_lsn(lsn),
        }),
        _ => None,
    };
    Ok(Deployment {
        id: row.try_get(0)?,
        content: row.try_get(1)?,
        state,
        slot_name: row.try_get(3)?,
        snapshot_done,
        checkpoint,
        resume_lsn: resume_lsn.map(from_pg_lsn),
    })
}

async fn one(
    pool: &Pool,
    filter: &str,
    params: &[&(dyn postgres_types::ToSql + Sync)],
) -> Result<Option<Deployment>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM riptide.deployments {filter}"
        ))
        .await?;
    client
        .query_opt(&stmt, params)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

pub(super) async fn active(pool: &Pool) -> Result<Option<Deployment>> {
    one(pool, "WHERE state = 'ACTIVE'", &[]).await
}

pub(super) async fn processing(pool: &Pool) -> Result<Option<Deployment>> {
    one(
        pool,
        "WHERE state = 'PROCESSING' ORDER BY id DESC LIMIT 1",
        &[],
    )
    .await
}

pub(super) async fn get(pool: &Pool, id: DeploymentId) -> Result<Deployment> {
    one(pool, "WHERE id = $1", &[&id])
        .await?
        .ok_or(StorageError::UnknownDeployment(id))
}

pub(super) async fn create(
    pool: &Pool,
    fence: Option<&Fence>,
    content: &str,
    slot_prefix: &str,
) -> Result<Deployment> {
    let mut client = pool.get().await?;
    let client = client.transaction().await?;
    let id: i64 = client
        .query_one("SELECT nextval('riptide.deployments_id_seq')", &[])
        .await?
        .try_get(0)?;
    let b = uuid::Uuid::new_v4();
    let b = b.as_bytes();
    let slot_name = format!("{slot_prefix}{id}_{:02x}{:02x}", b[0], b[1]);
    let row = client
        .query_one(
            &format!(
                "INSERT INTO riptide.deployments (id, content, state, slot_name, last_op_id) \
                 VALUES ($1, $2, 'PROCESSING', $3, \
                         (SELECT COALESCE(max(last_op_id), 0) FROM riptide.deployments)) \
                 RETURNING {COLUMNS}"
            ),
            &[&id, &content, &slot_name],
        )
        .await?;
    let created = from_row(&row)?;
    lease::check(fence, &client).await?;
    client.commit().await?;
    Ok(created)
}

/// Locks the deployment row (waits for an open batch of it) and returns its state.
async fn lock_row<C: GenericClient>(tx: &C, id: DeploymentId) -> Result<DeploymentState> {
    let row = tx
        .query_opt(
            "SELECT state FROM riptide.deployments WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .ok_or(StorageError::UnknownDeployment(id))?;
    let state: String = row.try_get(0)?;
    DeploymentState::parse(&state)
        .ok_or_else(|| StorageError::Corrupt(format!("unknown deployment state {state:?}")))
}

/// Tells listeners of other processes that `id` is now in `state` (`notifications.rs`), at
/// commit.
async fn announce<C: GenericClient>(
    tx: &C,
    node: &str,
    id: DeploymentId,
    state: DeploymentState,
) -> Result<()> {
    let payload = notifications::deployment_payload(node, id, state);
    tx.execute(notifications::NOTIFY_SQL, &[&CHECKPOINT_CHANNEL, &payload])
        .await?;
    Ok(())
}

pub(super) async fn activate(
    pool: &Pool,
    fence: Option<&Fence>,
    node: &str,
    id: DeploymentId,
) -> Result<()> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    activate_in(&tx, id).await?;
    announce(&tx, node, id, DeploymentState::Active).await?;
    lease::check(fence, &tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Marks the snapshot done and activates, in one transaction.
pub(super) async fn complete_snapshot(
    pool: &Pool,
    fence: Option<&Fence>,
    node: &str,
    id: DeploymentId,
) -> Result<()> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    activate_in(&tx, id).await?;
    tx.execute(
        "UPDATE riptide.deployments SET snapshot_done = true, updated_at = now() WHERE id = $1",
        &[&id],
    )
    .await?;
    announce(&tx, node, id, DeploymentState::Active).await?;
    lease::check(fence, &tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Makes `id` the active deployment and stops the active one, inside `tx`.
async fn activate_in<C: GenericClient>(tx: &C, id: DeploymentId) -> Result<()> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ACTIVATE_LOCK])
        .await?;
    let state = lock_row(tx, id).await?;
    if !matches!(state, DeploymentState::Processing | DeploymentState::Active) {
        return Err(StorageError::InvalidState { id, state });
    }
    tx.execute(
        "UPDATE riptide.deployments SET state = 'STOP', updated_at = now() \
         WHERE state = 'ACTIVE' AND id <> $1",
        &[&id],
    )
    .await?;
    tx.execute(
        "UPDATE riptide.deployments SET state = 'ACTIVE', updated_at = now() WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

async fn delete_data<C: GenericClient>(tx: &C, id: DeploymentId) -> Result<()> {
    for table in [
        "bucket_data",
        "bucket_state",
        "current_data",
        "parameter_lookups",
    ] {
        tx.execute(
            &format!("DELETE FROM riptide.{table} WHERE deployment_id = $1"),
            &[&id],
        )
        .await?;
    }
    Ok(())
}

/// Takes the deployment's data lock exclusively: waits for a compaction transaction writing
/// its buckets, and keeps new ones out until the deletion commits.
async fn lock_data<C: GenericClient>(tx: &C, id: DeploymentId) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&compact::DATA_LOCK, &compact::data_lock_key(id)],
    )
    .await?;
    Ok(())
}

pub(super) async fn terminate(
    pool: &Pool,
    fence: Option<&Fence>,
    node: &str,
    id: DeploymentId,
) -> Result<()> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    lock_row(&tx, id).await?;
    lock_data(&tx, id).await?;
    delete_data(&tx, id).await?;
    tx.execute(
        "UPDATE riptide.deployments SET state = 'TERMINATED', updated_at = now() WHERE id = $1",
        &[&id],
    )
    .await?;
    announce(&tx, node, id, DeploymentState::Terminated).await?;
    lease::check(fence, &tx).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn reset_snapshot(
    pool: &Pool,
    fence: Option<&Fence>,
    id: DeploymentId,
) -> Result<()> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    lock_row(&tx, id).await?;
    lock_data(&tx, id).await?;
    delete_data(&tx, id).await?;
    tx.execute(
        "UPDATE riptide.deployments SET snapshot_done = false, \
         last_op_id = (SELECT COALESCE(max(last_op_id), 0) FROM riptide.deployments WHERE id <> $1), \
         last_checkpoint_lsn = NULL, resume_lsn = NULL, data_epoch = data_epoch + 1, \
         updated_at = now() WHERE id = $1",
        &[&id],
    )
    .await?;
    lease::check(fence, &tx).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn mark_snapshot_done(
    pool: &Pool,
    fence: Option<&Fence>,
    id: DeploymentId,
) -> Result<()> {
    let mut client = pool.get().await?;
    let client = client.transaction().await?;
    let n = client
        .execute(
            "UPDATE riptide.deployments SET snapshot_done = true, updated_at = now() WHERE id = $1",
            &[&id],
        )
        .await?;
    if n == 0 {
        return Err(StorageError::UnknownDeployment(id));
    }
    lease::check(fence, &client).await?;
    client.commit().await?;
    Ok(())
}
