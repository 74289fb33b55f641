//! `riptide.write_checkpoint_counters` and `riptide.write_checkpoints`: per (user, client)
//! counter and the `(id, lsn)` history the reporting rule needs (see
//! [`crate::write_checkpoint`] for the rule and why entries can be pruned).

use deadpool_postgres::{GenericClient, Pool};
use postgres_types::PgLsn;
use riptide_protocol::{Lsn, OpId};

use super::{CHECKPOINT_CHANNEL, to_pg_lsn};
use crate::notifications;
use crate::{Result, StorageError};

/// Records `(id, lsn)` (keeping the lower LSN for an id already recorded) and prunes entries
/// it makes unreachable (lower id, LSN not lower), plus entries older than an hour that a newer
/// old entry shadows. `id` must be the greatest id of the key.
async fn record<C: GenericClient>(
    tx: &C,
    user_id: &str,
    client_id: &str,
    id: i64,
    lsn: PgLsn,
) -> Result<()> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO riptide.write_checkpoints (user_id, client_id, id, lsn) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, client_id, id) \
             DO UPDATE SET lsn = LEAST(riptide.write_checkpoints.lsn, excluded.lsn)",
        )
        .await?;
    tx.execute(&insert, &[&user_id, &client_id, &id, &lsn])
        .await?;
    let prune = tx
        .prepare_cached(
            "DELETE FROM riptide.write_checkpoints \
             WHERE user_id = $1 AND client_id = $2 AND id < $3 \
               AND (lsn >= $4 OR created_at < now() - interval '1 hour')",
        )
        .await?;
    tx.execute(&prune, &[&user_id, &client_id, &id, &lsn])
        .await?;
    Ok(())
}

/// Tells listeners of other processes (`notifications.rs`), at commit. Ids too long for a
/// notification are not announced: the stream finds the write checkpoint at its next
/// checkpoint read from storage.
async fn announce<C: GenericClient>(
    tx: &C,
    node: &str,
    user_id: &str,
    client_id: &str,
    id: OpId,
) -> Result<()> {
    if let Some(payload) = notifications::write_checkpoint_payload(node, user_id, client_id, id) {
        let stmt = tx.prepare_cached(notifications::NOTIFY_SQL).await?;
        tx.execute(&stmt, &[&CHECKPOINT_CHANNEL, &payload]).await?;
    }
    Ok(())
}

pub(super) async fn create(
    pool: &Pool,
    node: &str,
    user_id: &str,
    client_id: &str,
    lsn: Lsn,
) -> Result<OpId> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO riptide.write_checkpoint_counters (user_id, client_id, last_id) \
             VALUES ($1, $2, 1) \
             ON CONFLICT (user_id, client_id) DO UPDATE \
             SET last_id = riptide.write_checkpoint_counters.last_id + 1, updated_at = now() \
             RETURNING last_id",
        )
        .await?;
    let id: i64 = tx
        .query_one(&stmt, &[&user_id, &client_id])
        .await?
        .try_get(0)?;
    record(&tx, user_id, client_id, id, to_pg_lsn(lsn)).await?;
    announce(&tx, node, user_id, client_id, OpId(id)).await?;
    tx.commit().await?;
    Ok(OpId(id))
}

pub(super) async fn request(
    pool: &Pool,
    node: &str,
    user_id: &str,
    client_id: &str,
    requested: OpId,
    lsn: Lsn,
) -> Result<OpId> {
    if requested.0 < 0 {
        return Err(StorageError::InvalidArgument(
            "checkpoint request id must not be negative".into(),
        ));
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO riptide.write_checkpoint_counters (user_id, client_id, last_id) \
             VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, client_id) DO UPDATE \
             SET last_id = GREATEST(riptide.write_checkpoint_counters.last_id, excluded.last_id), \
                 updated_at = now() \
             RETURNING last_id",
        )
        .await?;
    let stored: i64 = tx
        .query_one(&stmt, &[&user_id, &client_id, &requested.0])
        .await?
        .try_get(0)?;
    if stored == requested.0 {
        record(&tx, user_id, client_id, stored, to_pg_lsn(lsn)).await?;
    }
    announce(&tx, node, user_id, client_id, OpId(stored)).await?;
    tx.commit().await?;
    Ok(OpId(stored))
}

/// Deletes `user_id`'s counters beyond the `keep` most recently updated and those not updated
/// for `max_age`, with their history. Returns how many counters went.
pub(super) async fn prune(
    pool: &Pool,
    user_id: &str,
    keep: usize,
    max_age: std::time::Duration,
) -> Result<u64> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "WITH keep AS ( \
                 SELECT client_id FROM riptide.write_checkpoint_counters \
                 WHERE user_id = $1 AND updated_at >= now() - make_interval(secs => $3) \
                 ORDER BY updated_at DESC LIMIT $2 \
             ), gone AS ( \
                 DELETE FROM riptide.write_checkpoint_counters c \
                 WHERE c.user_id = $1 AND c.client_id NOT IN (SELECT client_id FROM keep) \
                 RETURNING c.client_id \
             ), gone_history AS ( \
                 DELETE FROM riptide.write_checkpoints w \
                 WHERE w.user_id = $1 AND w.client_id IN (SELECT client_id FROM gone) \
             ) \
             SELECT count(*) FROM gone",
        )
        .await?;
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    let max_age = max_age.as_secs_f64().min(1e12);
    let n: i64 = client
        .query_one(&stmt, &[&user_id, &keep, &max_age])
        .await?
        .try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(super) async fn select(
    pool: &Pool,
    user_id: &str,
    client_id: &str,
    lsn: Lsn,
) -> Result<Option<OpId>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT max(id) FROM riptide.write_checkpoints \
             WHERE user_id = $1 AND client_id = $2 AND lsn <= $3",
        )
        .await?;
    let id: Option<i64> = client
        .query_one(&stmt, &[&user_id, &client_id, &to_pg_lsn(lsn)])
        .await?
        .try_get(0)?;
    Ok(id.map(OpId))
}
