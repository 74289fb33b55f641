//! The replication lease and the nodes of a storage (`riptide.leases`, `riptide.nodes`).
//!
//! A lease is one row: its holder (a node id), an *epoch* (the fencing token, raised on every
//! acquisition) and a heartbeat stamped with the database clock (`clock_timestamp()`), so the
//! nodes' clocks never matter. The holder renews the heartbeat; anyone may take the lease once
//! the heartbeat is older than the lease duration ([`acquire`], one statement). A paused holder
//! keeps its connections, so only the heartbeat's age can tell that it stopped.
//!
//! **Fencing.** A storage made with [`crate::PgStorage::fenced`] checks, inside every write
//! transaction it commits (replication batches, snapshot chunks, deployment changes,
//! compaction), that the lease still has its epoch: `SELECT … FOR SHARE` on the lease row
//! ([`Fence::check`]; in a batch's commit it is folded into the statement that stores the
//! checkpoint, so it costs no round trip). The share lock is held until the commit, and an
//! acquisition (an `UPDATE` of that row) waits for it: no transaction that checked an old epoch
//! can commit after a new epoch exists. A failed check is [`StorageError::LeaseLost`] and the
//! transaction rolls back.
//!
//! Nodes register a row (id, role, HTTP address, lease epoch held or none) and refresh its
//! heartbeat; [`nodes`] lists them with whether that heartbeat is recent.

use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};

use crate::{Result, StorageError};

/// The lease a fenced storage's writes require: `lease` held at `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub epoch: i64,
    /// The lease duration. A replication batch of a fenced storage sets it as its
    /// transaction's `idle_in_transaction_session_timeout`: the open transaction of a holder
    /// paused longer than its lease is ended by the server, and the row locks it holds (the
    /// deployment row) do not keep the next holder waiting.
    pub duration: Duration,
}

/// The check every fenced transaction runs before it commits; its row lock is held to commit.
pub(super) const FENCE_CHECK: &str =
    "SELECT 1 FROM riptide.leases WHERE name = $1 AND epoch = $2 FOR SHARE";

impl Fence {
    /// Checks inside the open transaction of `tx` that the lease still has this epoch.
    pub(super) async fn check<C: GenericClient>(&self, tx: &C) -> Result<()> {
        let stmt = tx.prepare_cached(FENCE_CHECK).await?;
        match tx.query_opt(&stmt, &[&self.lease, &self.epoch]).await? {
            Some(_) => Ok(()),
            None => Err(self.lost()),
        }
    }

    pub(super) fn lost(&self) -> StorageError {
        StorageError::LeaseLost {
            lease: self.lease.clone(),
            epoch: self.epoch,
        }
    }
}

/// Checks `fence`, when there is one, inside the open transaction of `tx`.
pub(super) async fn check<C: GenericClient>(fence: Option<&Fence>, tx: &C) -> Result<()> {
    match fence {
        Some(f) => f.check(tx).await,
        None => Ok(()),
    }
}

/// A lease as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseRecord {
    pub name: String,
    pub holder: String,
    pub epoch: i64,
    /// Seconds since the holder's last heartbeat (database clock).
    pub heartbeat_age: f64,
}

/// One registered node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    pub id: String,
    pub role: String,
    /// Where its HTTP service listens (`host:port`).
    pub address: String,
    pub started_at: std::time::SystemTime,
    /// Seconds since its last heartbeat (database clock).
    pub heartbeat_age: f64,
    /// The lease epoch it holds, `None`: standby or an API node.
    pub lease_epoch: Option<i64>,
}

impl NodeRecord {
    /// Whether its heartbeat is older than `expiry` (the node is gone, or paused).
    pub fn is_gone(&self, expiry: Duration) -> bool {
        self.heartbeat_age > expiry.as_secs_f64()
    }
}

/// Takes lease `name` for `holder` if nobody holds it or its heartbeat is older than
/// `duration`; returns the new epoch (`None`: held by another, or by `holder` under an epoch
/// still live). A released lease (heartbeat `-infinity`) is free at once.
pub(super) async fn acquire(
    pool: &Pool,
    name: &str,
    holder: &str,
    duration: Duration,
) -> Result<Option<i64>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "INSERT INTO riptide.leases AS l (name, holder, epoch, heartbeat_at, acquired_at) \
             VALUES ($1, $2, 1, clock_timestamp(), clock_timestamp()) \
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, epoch = l.epoch + 1, \
                 heartbeat_at = clock_timestamp(), acquired_at = clock_timestamp() \
             WHERE l.heartbeat_at < clock_timestamp() - $3::float8 * interval '1 second' \
             RETURNING epoch",
            &[&name, &holder, &duration.as_secs_f64()],
        )
        .await?;
    row.map(|r| r.try_get(0)).transpose().map_err(Into::into)
}

/// Takes lease `name` for `holder` whatever its heartbeat, if it still has `epoch` (the caller
/// knows that holder is gone); returns the new epoch.
pub(super) async fn take_from(
    pool: &Pool,
    name: &str,
    holder: &str,
    epoch: i64,
) -> Result<Option<i64>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "UPDATE riptide.leases SET holder = $2, epoch = epoch + 1, \
                 heartbeat_at = clock_timestamp(), acquired_at = clock_timestamp() \
             WHERE name = $1 AND epoch = $3 RETURNING epoch",
            &[&name, &holder, &epoch],
        )
        .await?;
    row.map(|r| r.try_get(0)).transpose().map_err(Into::into)
}

/// Renews the heartbeat of `name` if `holder` still holds it at `epoch`; false: taken over.
pub(super) async fn renew(pool: &Pool, fence: &Fence, holder: &str) -> Result<bool> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "UPDATE riptide.leases SET heartbeat_at = clock_timestamp() \
             WHERE name = $1 AND epoch = $2 AND holder = $3",
        )
        .await?;
    let n = client
        .execute(&stmt, &[&fence.lease, &fence.epoch, &holder])
        .await?;
    Ok(n == 1)
}

/// Gives the lease up (clean shutdown): a standby may take it at once.
pub(super) async fn release(pool: &Pool, fence: &Fence, holder: &str) -> Result<bool> {
    let client = pool.get().await?;
    let n = client
        .execute(
            "UPDATE riptide.leases SET heartbeat_at = '-infinity' \
             WHERE name = $1 AND epoch = $2 AND holder = $3",
            &[&fence.lease, &fence.epoch, &holder],
        )
        .await?;
    Ok(n == 1)
}

/// The lease `name` as stored, if it was ever taken.
pub(super) async fn get(pool: &Pool, name: &str) -> Result<Option<LeaseRecord>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT name, holder, epoch, \
                    COALESCE(extract(epoch FROM clock_timestamp() - heartbeat_at)::float8, \
                             'Infinity'::float8) \
             FROM riptide.leases WHERE name = $1",
            &[&name],
        )
        .await?;
    row.map(|r| {
        Ok(LeaseRecord {
            name: r.try_get(0)?,
            holder: r.try_get(1)?,
            epoch: r.try_get(2)?,
            heartbeat_age: r.try_get(3)?,
        })
    })
    .transpose()
}

/// Registers node `id` (or refreshes it: a restart with the same id) with a fresh heartbeat.
pub(super) async fn register_node(pool: &Pool, id: &str, role: &str, address: &str) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO riptide.nodes (id, role, address, started_at, heartbeat_at) \
             VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp()) \
             ON CONFLICT (id) DO UPDATE SET role = EXCLUDED.role, address = EXCLUDED.address, \
                 heartbeat_at = clock_timestamp(), lease_epoch = NULL",
            &[&id, &role, &address],
        )
        .await?;
    Ok(())
}

/// Refreshes node `id`'s heartbeat and the lease epoch it holds; false: the row is gone
/// (removed as stale by an operator): register again.
pub(super) async fn node_heartbeat(
    pool: &Pool,
    id: &str,
    lease_epoch: Option<i64>,
) -> Result<bool> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "UPDATE riptide.nodes SET heartbeat_at = clock_timestamp(), lease_epoch = $2 \
             WHERE id = $1",
        )
        .await?;
    Ok(client.execute(&stmt, &[&id, &lease_epoch]).await? == 1)
}

/// Removes node `id` (clean shutdown).
pub(super) async fn deregister_node(pool: &Pool, id: &str) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute("DELETE FROM riptide.nodes WHERE id = $1", &[&id])
        .await?;
    Ok(())
}

/// Every registered node, oldest first.
pub(super) async fn nodes(pool: &Pool) -> Result<Vec<NodeRecord>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, role, address, started_at, \
                    extract(epoch FROM clock_timestamp() - heartbeat_at)::float8, lease_epoch \
             FROM riptide.nodes ORDER BY started_at, id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(NodeRecord {
                id: r.try_get(0)?,
                role: r.try_get(1)?,
                address: r.try_get(2)?,
                started_at: r.try_get(3)?,
                heartbeat_age: r.try_get(4)?,
                lease_epoch: r.try_get(5)?,
            })
        })
        .collect()
}
