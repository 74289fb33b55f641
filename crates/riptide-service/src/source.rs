//! Access to the source database the write-checkpoint endpoints need: its current WAL position,
//! and a logical message so replication advances past that position even when the upload
//! changed nothing replicated.

use async_trait::async_trait;
use riptide_protocol::Lsn;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source database error")]
    Database(#[from] tokio_postgres::Error),
    #[error("source connection pool error")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("source database returned an invalid LSN")]
    InvalidLsn(#[from] riptide_protocol::LsnParseError),
}

/// The source (application) Postgres database, as the write-checkpoint endpoints use it.
///
/// The two steps are separate so the endpoint can store the write checkpoint between them:
/// `current_lsn` → `create_write_checkpoint(lsn)` → `emit_ping`. Pinging first would let the
/// replicator commit a checkpoint past the LSN before the write checkpoint exists.
#[async_trait]
pub trait SourceDatabase: Send + Sync + 'static {
    /// `SELECT pg_current_wal_insert_lsn()`: at or past the end of every committed transaction.
    async fn current_lsn(&self) -> Result<Lsn, SourceError>;
    /// `SELECT pg_logical_emit_message(false, 'powersync', 'ping')`, flushed to the WAL before
    /// it returns (so replication sees it at once).
    async fn emit_ping(&self) -> Result<(), SourceError>;

    /// Both steps at once, for callers that store nothing in between.
    async fn current_lsn_and_ping(&self) -> Result<Lsn, SourceError> {
        let lsn = self.current_lsn().await?;
        self.emit_ping().await?;
        Ok(lsn)
    }
}

/// The ping of [`SourceDatabase::emit_ping`], flushed to the WAL at once (see there).
const PING_AND_FLUSH: &str = "BEGIN; SET LOCAL synchronous_commit = on; \
    SELECT pg_logical_emit_message(false, 'powersync', 'ping'); \
    SELECT txid_current(); COMMIT";

/// [`SourceDatabase`] over a deadpool-postgres pool of the source database.
#[derive(Clone)]
pub struct PgSourceDatabase {
    pool: deadpool_postgres::Pool,
}

impl PgSourceDatabase {
    pub fn new(pool: deadpool_postgres::Pool) -> Self {
        PgSourceDatabase { pool }
    }
}

impl std::fmt::Debug for PgSourceDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSourceDatabase").finish_non_exhaustive()
    }
}

#[async_trait]
impl SourceDatabase for PgSourceDatabase {
    async fn current_lsn(&self) -> Result<Lsn, SourceError> {
        let client = self.pool.get().await?;
        let row = client
            // The insert position, not `pg_current_wal_lsn()` (the write position): with
            // `synchronous_commit = off` a commit returns before its WAL is written, so the
            // write position can be behind transactions that have already committed, and a
            // write checkpoint at it would be reported before their changes are synced.
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await?;
        let text: String = row.try_get(0)?;
        Ok(text.parse()?)
    }

    async fn emit_ping(&self) -> Result<(), SourceError> {
        let client = self.pool.get().await?;
        // One round trip. A non-transactional message is written to the WAL but not flushed
        // (before Postgres 17 there is no `flush` argument), and a walsender sends only
        // flushed WAL: alone, the message waits for the WAL writer (`wal_writer_delay`,
        // 200 ms by default), and so does every write checkpoint waiting on it. A transaction
        // with an xid that commits synchronously flushes the WAL up to its commit record,
        // which is after the message.
        client.batch_execute(PING_AND_FLUSH).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The ping is flushed when `emit_ping` returns: a walsender can send it at once, not at
    /// the WAL writer's next round (up to `wal_writer_delay` later).
    #[tokio::test]
    async fn the_ping_is_flushed_to_the_wal_when_emit_ping_returns() {
        let db = riptide_testkit::TestDatabase::create().await;
        let client = db.client().await;
        let source =
            PgSourceDatabase::new(riptide_pg::PgConnection::from(db.config()).pool(1).unwrap());
        for _ in 0..20 {
            let before = source.current_lsn().await.unwrap();
            source.emit_ping().await.unwrap();
            let row = client
                .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
                .await
                .unwrap();
            let flushed: Lsn = row.get::<_, String>(0).parse().unwrap();
            assert!(
                flushed > before,
                "flushed up to {flushed}, the ping was written after {before}"
            );
        }
    }

    /// With `synchronous_commit = off` the WAL write position lags behind commits that have
    /// returned; the current LSN must still be past every committed transaction.
    #[tokio::test]
    async fn current_lsn_is_past_an_asynchronously_committed_transaction() {
        let db = riptide_testkit::TestDatabase::create().await;
        let client = db.client().await;
        client
            .batch_execute("SET synchronous_commit = off; CREATE TABLE t (id int)")
            .await
            .unwrap();
        let source =
            PgSourceDatabase::new(riptide_pg::PgConnection::from(db.config()).pool(1).unwrap());
        for i in 0..50 {
            client.batch_execute("BEGIN").await.unwrap();
            // The end of a record inside the transaction; its commit record comes after.
            let row = client
                .query_one(
                    "INSERT INTO t VALUES ($1) RETURNING \
                     pg_logical_emit_message(true, 'test', 'x')::text",
                    &[&i],
                )
                .await
                .unwrap();
            let inside: Lsn = row.get::<_, String>(0).parse().unwrap();
            client.batch_execute("COMMIT").await.unwrap();
            let current = source.current_lsn().await.unwrap();
            assert!(
                current > inside,
                "current LSN {current} is not past the committed transaction ({inside})"
            );
        }
    }
}
