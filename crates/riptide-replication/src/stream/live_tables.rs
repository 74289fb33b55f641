//! Live table changes while streaming (`tables.rs` explains the design): between source
//! transactions, when due, the applier compares the referenced published tables in the
//! catalog with the ones it tracks; tables that went away have their rows removed, new ones
//! are copied from a temporary slot's exported snapshot, and gates on relation OIDs keep the
//! stream's older changes of those tables out.

use std::collections::HashMap;
use std::time::Instant;

use riptide_protocol::Lsn;
use riptide_rules::TableRef;
use riptide_storage::BatchOperation;

use super::TransactionApplier;
use crate::batch::PipelinedBatch;
use crate::connection::{QUERY_TIMEOUT, within};
use crate::error::ReplicationError;
use crate::schema::TableSchema;
use crate::snapshot::{self, CreatedSlot, SnapshotContext};
use crate::tables::{self, Gate, Tracked};
use riptide_pg::quote_literal;

/// The referenced tables the applier streams, and when to compare them with the catalog.
pub(super) struct Tracking {
    publication: String,
    /// Referenced published table → relation OID applied under that name (and its
    /// publication membership).
    tracked: Tracked,
    /// The reverse of `tracked`.
    pub(super) tracked_oids: HashMap<u32, String>,
    pub(super) check_needed: bool,
    last_check: Instant,
}

/// A table name and the relation OID it had (tracked) or has (in the catalog).
type NamedOid = (String, u32);

impl TransactionApplier {
    /// Tracks the referenced tables of `publication` live (`tables.rs`), starting from
    /// `baseline` (referenced published table → OID, as already in storage). Needs a source.
    pub fn with_tracking(mut self, publication: String, baseline: Tracked) -> Self {
        let tracked_oids = tables::oid_names(&baseline);
        self.tracking = Some(Tracking {
            publication,
            tracked: baseline,
            tracked_oids,
            // The stored baseline may predate table changes made while stopped.
            check_needed: true,
            last_check: Instant::now(),
        });
        self
    }

    /// Between transactions, when due: compares the referenced published tables in the
    /// catalog with the tracked ones and resyncs on a difference (`tables.rs`). Returns the
    /// LSN to acknowledge if it committed.
    pub(super) async fn check_tables(&mut self) -> Result<Option<Lsn>, ReplicationError> {
        let Some(tracking) = &self.tracking else {
            return Ok(None);
        };
        if self.tx.is_some()
            || self.storage_held()
            || (!tracking.check_needed
                && tracking.last_check.elapsed() < self.options.catalog_check_interval)
        {
            return Ok(None);
        }
        let Some(source) = self.source.clone() else {
            return Ok(None);
        };
        let publication = tracking.publication.clone();
        // Everything up to here has been processed.
        let position = self.unrecorded.unwrap_or(self.resume_lsn);
        // The stream is past these: every later transaction passes them.
        self.gates
            .retain(|_, gate| !matches!(gate, Gate::Before(c) if *c <= position));
        let tables = self.rules.source_tables();
        let Some(reader) = self.reader().await? else {
            return Ok(None);
        };
        let query = tables::published(reader, &publication, &tables);
        let current = match within("check the catalog", QUERY_TIMEOUT, query).await {
            Ok(current) => current,
            Err(e) => {
                // A connection that hung or failed is not used again.
                self.reader = None;
                return Err(e);
            }
        };
        let Some(tracking) = &mut self.tracking else {
            return Ok(None);
        };
        tracking.check_needed = false;
        tracking.last_check = Instant::now();
        let blocked = current
            .values()
            .any(|p| self.gates.get(&p.oid) == Some(&Gate::Blocked));
        if current == tracking.tracked && !blocked {
            return Ok(None);
        }
        if appeared(&tracking.tracked, &current, &self.gates).is_empty() {
            // Only removals: no copy, so no temporary slot (whose creation waits for the
            // source's running transactions).
            let Some(seen) = self.insert_position().await? else {
                return Ok(None);
            };
            return self.remove_tables(current, position, seen).await.map(Some);
        }
        self.resync(&source, &publication, &tables, position)
            .await
            .map(Some)
    }

    /// The source's WAL insert position, read after the catalog: every transaction the
    /// catalog showed committed (the DDL, and the changes before it) has its commit record
    /// before it. The insert position, not `pg_current_wal_lsn()` (the write position): with
    /// `synchronous_commit = off` a commit returns before its WAL is written, so the write
    /// position can be behind committed changes of a removed table, which would then pass
    /// the gate and bring their rows back after the removal.
    /// `None` without a source.
    async fn insert_position(&mut self) -> Result<Option<Lsn>, ReplicationError> {
        let Some(reader) = self.reader().await? else {
            return Ok(None);
        };
        let query = async {
            let row = reader
                .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
                .await?;
            Ok(row.try_get::<_, String>(0)?)
        };
        let wal = match within("read the WAL position", QUERY_TIMEOUT, query).await {
            Ok(wal) => wal,
            Err(e) => {
                self.reader = None;
                return Err(e);
            }
        };
        let lsn = wal
            .parse::<Lsn>()
            .map_err(|_| ReplicationError::Catalog(format!("pg_current_wal_insert_lsn {wal:?}")))?;
        Ok(Some(lsn))
    }

    /// Removes the rows of tracked tables missing from `current` at `position` and ignores
    /// their OIDs' changes of transactions before `seen` (after the DDL that removed them).
    async fn remove_tables(
        &mut self,
        current: Tracked,
        position: Lsn,
        seen: Lsn,
    ) -> Result<Lsn, ReplicationError> {
        let Some(tracking) = &self.tracking else {
            return Ok(position);
        };
        let removed = left(&tracking.tracked, &current);
        let mut ops = Vec::with_capacity(removed.len() + 1);
        ops.push(tables::tracked_op(&current));
        self.track(current);
        for (name, oid) in removed {
            tracing::info!(table = %name, lsn = %position, "table rows removed: the table left");
            self.gates.insert(oid, Gate::Before(seen));
            ops.push(BatchOperation::Truncate { source_table: name });
        }
        let mut batch = PipelinedBatch::new(self.storage.begin_batch(self.deployment).await?);
        batch.save(ops).await?;
        let event = batch.commit(position).await?;
        self.committed(event, position, 0);
        Ok(position)
    }

    /// Removes the rows of tables that went away and copies the new ones as of a temporary
    /// slot's consistent point, committing at `position` (`tables.rs` explains why sound).
    async fn resync(
        &mut self,
        source: &riptide_pg::PgConnection,
        publication: &str,
        tables: &[TableRef],
        position: Lsn,
    ) -> Result<Lsn, ReplicationError> {
        // 1. A temporary slot: its consistent point and exported snapshot agree exactly.
        let (session, created) = temporary_slot(source, publication).await?;
        // 2. The truth as of the consistent point, in a transaction importing the snapshot.
        let mut client = crate::connection::connect(source).await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        tx.batch_execute(&format!(
            "SET TRANSACTION SNAPSHOT {}",
            quote_literal(&created.snapshot_name)
        ))
        .await?;
        let current = tables::published(&tx, publication, tables).await?;
        let Some(tracking) = &self.tracking else {
            return Ok(position);
        };
        // A table whose membership changed (left the publication and came back between two
        // checks) is in both: its rows are replaced by a copy.
        let removed = left(&tracking.tracked, &current);
        let added = appeared(&tracking.tracked, &current, &self.gates);
        // 3. One batch: the rows of every name that went away or changed removed, then the
        //    new tables copied.
        let mut batch = PipelinedBatch::new(self.storage.begin_batch(self.deployment).await?);
        truncate_names(&mut batch, &removed, &added, position).await?;
        self.copy_added(&tx, &mut batch, tables, &added, position, &created)
            .await?;
        tx.commit().await?;
        // Ends the walsender session, which drops the temporary slot.
        drop(session);
        // 4. Committed at `position` with the new tracked set; the stream's changes of these
        //    tables before the consistent point are gated out.
        batch.save(vec![tables::tracked_op(&current)]).await?;
        let event = batch.commit(position).await?;
        self.committed(event, position, 0);
        for (_, oid) in removed.iter().chain(&added) {
            self.gates
                .insert(*oid, Gate::Before(created.consistent_point));
        }
        self.track(current);
        Ok(position)
    }

    /// Copies the `added` tables (as of `tx`'s snapshot) into `batch`.
    async fn copy_added(
        &mut self,
        tx: &tokio_postgres::Transaction<'_>,
        batch: &mut PipelinedBatch,
        tables: &[TableRef],
        added: &[NamedOid],
        position: Lsn,
        created: &CreatedSlot,
    ) -> Result<(), ReplicationError> {
        let ctx = SnapshotContext {
            storage: &self.storage,
            deployment: self.deployment,
            rules: &self.rules,
            types: &self.types,
            status: &self.status,
            chunk_rows: self.options.chunk_rows,
        };
        for (name, oid) in added {
            let Some(table) = tables.iter().find(|t| t.qualified() == *name) else {
                continue;
            };
            let Some(schema) = TableSchema::load(tx, table, &self.types).await? else {
                continue;
            };
            if schema.id != *oid {
                return Err(ReplicationError::Catalog(format!(
                    "table {name} changed OID within one snapshot"
                )));
            }
            if !schema.columns.iter().any(|c| c.is_key) {
                tracing::error!(
                    table = %name,
                    error = %crate::source::SourceError::ReplicaIdentityNothing { table: name.clone() },
                    "table is not replicated: it has no replica identity"
                );
                continue;
            }
            let rows = snapshot::copy_table(&ctx, tx, &schema, batch).await?;
            tracing::info!(table = %name, rows, lsn = %position, from = %created.consistent_point, "table copied while streaming");
        }
        Ok(())
    }

    /// Tracks `current` from now on.
    fn track(&mut self, current: Tracked) {
        if let Some(tracking) = &mut self.tracking {
            tracking.tracked_oids = tables::oid_names(&current);
            tracking.tracked = current;
        }
    }
}

/// A temporary logical slot on its own walsender session, exporting a snapshot. The slot
/// lives as long as the returned session.
async fn temporary_slot(
    source: &riptide_pg::PgConnection,
    publication: &str,
) -> Result<(pgwire_replication::ReplicationClient, CreatedSlot), ReplicationError> {
    // Slot names are cluster-wide: unique per process, resync and moment.
    static RESYNCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = RESYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let slot = format!("riptide_resync_{}_{n}_{nanos}", std::process::id());
    let cfg = crate::connection::replication_config(source, publication, &slot, Lsn::ZERO)?;
    let mut session = crate::connection::connect_gated(source, cfg).await?;
    let created = snapshot::create_slot_with(&mut session, &slot, true).await?;
    Ok((session, created))
}

/// Saves a `Truncate` for each name in `removed` or `added` (once each, by name).
async fn truncate_names(
    batch: &mut PipelinedBatch,
    removed: &[NamedOid],
    added: &[NamedOid],
    position: Lsn,
) -> Result<(), ReplicationError> {
    let mut truncated: Vec<&str> = removed
        .iter()
        .chain(added)
        .map(|(name, _)| name.as_str())
        .collect();
    truncated.sort_unstable();
    truncated.dedup();
    for name in &truncated {
        tracing::info!(table = %name, lsn = %position, "table rows removed: the table left or changed");
    }
    batch
        .save(
            truncated
                .iter()
                .map(|name| BatchOperation::Truncate {
                    source_table: (*name).to_owned(),
                })
                .collect(),
        )
        .await
}

/// Tracked tables that `current` no longer has as tracked (gone, or published anew), sorted.
fn left(tracked: &Tracked, current: &Tracked) -> Vec<NamedOid> {
    let mut left: Vec<NamedOid> = tracked
        .iter()
        .filter(|(name, p)| current.get(name.as_str()) != Some(p))
        .map(|(name, p)| (name.clone(), p.oid))
        .collect();
    left.sort();
    left
}

/// Tables of `current` not tracked as they are now (new, published anew, or blocked by a
/// gate), sorted.
fn appeared(tracked: &Tracked, current: &Tracked, gates: &HashMap<u32, Gate>) -> Vec<NamedOid> {
    let mut appeared: Vec<NamedOid> = current
        .iter()
        .filter(|(name, p)| {
            tracked.get(name.as_str()) != Some(p) || gates.get(&p.oid) == Some(&Gate::Blocked)
        })
        .map(|(name, p)| (name.clone(), p.oid))
        .collect();
    appeared.sort();
    appeared
}
