//! A new deployment's initial snapshot, from its start or from where a crash interrupted it
//! (the module docs of `snapshot/` say why both are sound), up to the stream it hands over to.

use std::sync::Arc;

use pgwire_replication::ReplicationClient;
use riptide_protocol::Lsn;
use riptide_storage::{BucketStorage, CheckpointEvent};
use tokio::sync::broadcast;
use tokio_postgres::Client;

use super::copy::{Order, RowSink, SnapshotContext, copy_rows, key_ordered};
use super::progress::{self, TableProgress};
use super::{CreatedSlot, create_slot};
use crate::batch::PipelinedBatch;
use crate::connection::{self, Protocol, QUERY_TIMEOUT, within};
use crate::error::ReplicationError;
use crate::failpoints::failpoint;
use crate::replicator::ReplicationSource;
use crate::schema::TableSchema;
use crate::slot::{self, SlotState};
use crate::tables::{self, Tracked};
use riptide_pg::quote_literal;

/// Prefix and content of the logical message marking where a resumed snapshot's copy ended
/// (the checkpoint prefix, so the stream commits its position: `stream/transaction.rs`).
const COPY_END_MESSAGE: &str = "snapshot copied";

/// What the snapshot hands over to streaming.
pub struct Started {
    /// The walsender session, streaming from `resume`.
    pub session: ReplicationClient,
    /// Everything before this is in storage.
    pub resume: Lsn,
    /// The referenced published tables as copied (the baseline of `tables.rs`).
    pub baseline: Tracked,
    /// A resumed snapshot is complete (and the deployment activated) once the stream has
    /// committed up to here; `None`: it is complete already.
    pub complete_at: Option<Lsn>,
}

/// One deployment's initial snapshot.
pub struct Initial<'a> {
    pub ctx: SnapshotContext<'a>,
    pub options: &'a ReplicationSource,
    /// How the stream that follows the copy sends transactions.
    pub protocol: Protocol,
    pub slot: &'a str,
    /// The deployment's stored resume position (chunks of an interrupted run committed there).
    pub resume_lsn: Option<Lsn>,
    /// Rows per storage commit.
    pub commit_rows: usize,
    pub events: &'a broadcast::Sender<CheckpointEvent>,
}

impl Initial<'_> {
    /// Copies what is not copied yet and starts streaming.
    pub async fn run(&self, client: &mut Client) -> Result<Started, ReplicationError> {
        match slot::state(client, self.slot).await? {
            SlotState::Usable { confirmed_flush } => {
                let Some(base) = self.resume_lsn.or(confirmed_flush) else {
                    return self.fresh(client).await;
                };
                self.resume(client, base).await
            }
            SlotState::Missing | SlotState::Lost => self.fresh(client).await,
        }
    }

    /// A new slot and a consistent copy at its consistent point.
    async fn fresh(&self, client: &mut Client) -> Result<Started, ReplicationError> {
        let storage = self.ctx.storage;
        let id = self.ctx.deployment;
        // No partial data of an earlier slot may stay.
        storage.reset_snapshot(id).await?;
        slot::drop(client, self.slot).await?;
        let cfg = connection::replication_config(
            &self.options.connection,
            &self.options.publication,
            self.slot,
            Lsn::ZERO,
        )?;
        let mut session =
            connection::connect_gated(&self.options.connection, self.protocol.apply(cfg)).await?;
        let created = create_slot(&mut session, self.slot).await?;
        tracing::info!(lsn = %created.consistent_point, slot = %self.slot, "replication slot created; snapshot started");
        failpoint!("snapshot::after_slot");
        let (event, baseline) = self
            .copy(client, Some(&created), created.consistent_point)
            .await?;
        failpoint!("snapshot::after_copy");
        storage.complete_snapshot(id).await?;
        self.ctx.status.committed(created.consistent_point, 0);
        let _ = self.events.send(event);
        tracing::info!(lsn = %created.consistent_point, "snapshot done; deployment active");
        failpoint!("snapshot::after_complete");
        session.start().await?;
        session.wait_started().await?;
        Ok(Started {
            session,
            resume: created.consistent_point,
            baseline,
            complete_at: None,
        })
    }

    /// The slot of an interrupted snapshot still holds every change since `base`: copy the
    /// rest, then stream from `base` until past the end of this copy.
    async fn resume(&self, client: &mut Client, base: Lsn) -> Result<Started, ReplicationError> {
        tracing::info!(lsn = %base, slot = %self.slot, "resuming an interrupted snapshot");
        let (_, baseline) = self.copy(client, None, base).await?;
        // Every row read above was read before this message: once the stream has applied
        // everything up to it, storage equals the source there.
        let end = copy_end(client).await?;
        failpoint!("snapshot::after_copy");
        let cfg = connection::replication_config(
            &self.options.connection,
            &self.options.publication,
            self.slot,
            base,
        )?
        .with_ack_lsn(pgwire_replication::Lsn(base.0));
        let session =
            slot::start_streaming(&self.options.connection, self.protocol.apply(cfg)).await?;
        tracing::info!(lsn = %base, until = %end, "snapshot copied; streaming until the copy is consistent");
        Ok(Started {
            session,
            resume: base,
            baseline,
            complete_at: Some(end),
        })
    }

    /// Copies every published table the rules use that is not copied yet, as of the exported
    /// snapshot of `created` (a fresh snapshot when `None`), committing at `lsn` every
    /// `commit_rows` rows and at the end (with the tracked set). Returns the last commit's
    /// event and the referenced published tables as read.
    async fn copy(
        &self,
        client: &mut Client,
        created: Option<&CreatedSlot>,
        lsn: Lsn,
    ) -> Result<(CheckpointEvent, Tracked), ReplicationError> {
        let ctx = &self.ctx;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        if let Some(created) = created {
            tx.batch_execute(&format!(
                "SET TRANSACTION SNAPSHOT {}",
                quote_literal(&created.snapshot_name)
            ))
            .await?;
        }
        let mut tables = ctx.rules.source_tables();
        tables.sort();
        let published = tables::published(&tx, &self.options.publication, &tables).await?;
        let names: Vec<String> = tables.iter().map(|t| t.qualified()).collect();
        let done = progress::stored(&**ctx.storage, ctx.deployment, &names).await?;
        let mut commits = Commits {
            storage: ctx.storage,
            deployment: ctx.deployment,
            lsn,
            every: self.commit_rows.max(1),
            batch: None,
            rows: 0,
        };
        for table in &tables {
            let name = table.qualified();
            if !published.contains_key(&name) {
                // The stream would never update its rows; copied once it is published.
                tracing::warn!(table = %name, publication = %self.options.publication, "table used by the sync rules is not in the publication; skipped");
                continue;
            }
            let after = match done.get(&name) {
                Some(TableProgress::Done) => continue,
                Some(TableProgress::After(key)) => Some(key.as_slice()),
                None => None,
            };
            let Some(schema) = TableSchema::load(&tx, table, ctx.types).await? else {
                tracing::warn!(table = %name, "table used by the sync rules does not exist; skipped");
                continue;
            };
            ctx.status.snapshot_table_started(Some(&schema.qualified));
            tracing::info!(table = %schema.qualified, lsn = %lsn, resumed = after.is_some(), "snapshot of table started");
            let after = after.filter(|_| key_ordered(&schema));
            let rows = copy_rows(ctx, &tx, &schema, Order::Key { after }, &mut commits).await?;
            commits.table_done(&schema.qualified).await?;
            tracing::info!(table = %schema.qualified, rows, "snapshot of table done");
        }
        ctx.status.snapshot_table_started(None);
        tx.commit().await?;
        let event = commits.finish(vec![tables::tracked_op(&published)]).await?;
        Ok((event, published))
    }
}

/// Writes the logical message ending a resumed copy; returns its LSN.
async fn copy_end(client: &Client) -> Result<Lsn, ReplicationError> {
    let query = async {
        let row = client
            .query_one(
                "SELECT pg_logical_emit_message(false, $1, $2)::text",
                &[&crate::stream::CHECKPOINT_MESSAGE_PREFIX, &COPY_END_MESSAGE],
            )
            .await?;
        Ok(row.try_get::<_, String>(0)?)
    };
    let text = within("mark the end of the snapshot copy", QUERY_TIMEOUT, query).await?;
    text.parse::<Lsn>()
        .map_err(|_| ReplicationError::Catalog(format!("pg_logical_emit_message {text:?}")))
}

/// The snapshot's storage commits: a batch committed every `every` rows, with the progress of
/// the table it ends in.
struct Commits<'a> {
    storage: &'a Arc<dyn BucketStorage>,
    deployment: i64,
    lsn: Lsn,
    every: usize,
    batch: Option<PipelinedBatch>,
    rows: usize,
}

impl Commits<'_> {
    async fn batch(&mut self) -> Result<&mut PipelinedBatch, ReplicationError> {
        if self.batch.is_none() {
            let batch = self.storage.begin_batch(self.deployment).await?;
            self.batch = Some(PipelinedBatch::new(batch));
        }
        self.batch
            .as_mut()
            .ok_or_else(|| ReplicationError::Protocol("snapshot batch missing".into()))
    }

    async fn commit(&mut self) -> Result<Option<CheckpointEvent>, ReplicationError> {
        self.rows = 0;
        match self.batch.take() {
            Some(batch) => Ok(Some(batch.commit(self.lsn).await?)),
            None => Ok(None),
        }
    }

    /// Every row of `table` is saved: its progress says so (committed with the next commit).
    async fn table_done(&mut self, table: &str) -> Result<(), ReplicationError> {
        let op = progress::op(table, &TableProgress::Done);
        self.batch().await?.save(vec![op]).await
    }

    /// Saves `ops` (the tracked set) and commits whatever is left.
    async fn finish(
        mut self,
        ops: Vec<riptide_storage::BatchOperation>,
    ) -> Result<CheckpointEvent, ReplicationError> {
        self.batch().await?.save(ops).await?;
        match self.commit().await? {
            Some(event) => Ok(event),
            None => Err(ReplicationError::Protocol("snapshot commit missing".into())),
        }
    }
}

impl RowSink for Commits<'_> {
    async fn rows(
        &mut self,
        table: &str,
        ops: Vec<riptide_storage::BatchOperation>,
        last_key: Option<Vec<u8>>,
    ) -> Result<(), ReplicationError> {
        let n = ops.len();
        self.batch().await?.save(ops).await?;
        self.rows += n;
        if self.rows < self.every {
            return Ok(());
        }
        // Committed with how far this table got (a table without a key order starts over
        // after a crash: re-copying its rows writes nothing new).
        if let Some(key) = last_key {
            let op = progress::op(table, &TableProgress::After(key));
            self.batch().await?.save(vec![op]).await?;
        }
        self.commit().await?;
        failpoint!("snapshot::after_chunk_commit");
        Ok(())
    }
}
