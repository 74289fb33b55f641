//! Streaming: replication events → storage batches, one per source transaction or per group
//! of consecutive ones.
//!
//! [`TransactionApplier`] is driven by the events of a replication session (see
//! `replicator.rs` for the socket loop). It keeps relation metadata per relation id, opens a
//! storage batch at the first relevant change of a transaction, buffers changes in chunks of
//! [`StreamOptions::chunk_rows`] (filling unchanged TOAST columns from stored rows, one lookup
//! per table per chunk), evaluates the rules once per row, saves each chunk and commits at the
//! transaction's end LSN. It returns the LSN that may be acknowledged to Postgres, which is
//! only ever one storage has just committed.
//!
//! Group commit: at a source commit the storage batch may stay open ([`TransactionApplier::
//! holding`]) so that the next source transaction continues it, when the socket loop already
//! has the next transaction's events in hand. The loop calls [`TransactionApplier::release`]
//! as soon as no event is waiting, so a lone commit is stored at once, while a burst of small
//! transactions costs one storage commit instead of one each (a storage commit is about ten
//! round trips). The group's checkpoint is at its last commit: every source transaction is
//! still applied whole, and a checkpoint never splits one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use riptide_protocol::Lsn;
use riptide_rules::{Row, SqliteValue, SyncRules, TableRef};
use riptide_storage::{BatchOperation, BucketStorage, CheckpointEvent, DeploymentId};
use tokio::sync::broadcast;

use crate::batch::PipelinedBatch;
use crate::error::ReplicationError;
use crate::evaluate;
use crate::pgoutput::{self, LogicalMessage, OldTuple, TupleValue};
use crate::row_image::{self, TupleError};
use crate::schema::{TableSchema, TypeMap};
use crate::snapshot::{self, SnapshotContext};
use crate::status::ReplicationStatus;
use crate::tables::{self, Gate, Tracked};
use riptide_pg::{PgConnection, quote_ident, quote_literal};

/// Prefix of the logical messages that advance checkpoints (write checkpoints).
pub const CHECKPOINT_MESSAGE_PREFIX: &str = "powersync";

/// Rows that may hold TOASTed values (approximate size above this) are remembered for the
/// rest of their transaction, so a later update in the same transaction can fill its
/// unchanged columns before storage has them.
const TOAST_CANDIDATE_BYTES: usize = 1_000;

#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Row changes per storage `save`.
    pub chunk_rows: usize,
    /// How long irrelevant transactions may go unacknowledged before an empty commit
    /// records their position (bounds the WAL the slot retains).
    pub idle_commit_interval: Duration,
    /// How often the catalog is compared with the tracked tables (new, dropped, renamed
    /// and unpublished tables; see `tables.rs`).
    pub catalog_check_interval: Duration,
    /// Most source transactions one storage commit may hold (group commit; 1 turns it off).
    pub group_max_transactions: u64,
    /// How long a group may keep its first transaction waiting for the storage commit.
    pub group_max_age: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            chunk_rows: 10_000,
            idle_commit_interval: Duration::from_secs(1),
            catalog_check_interval: Duration::from_secs(1),
            group_max_transactions: 1_000,
            group_max_age: Duration::from_millis(20),
        }
    }
}

/// One change waiting in the current chunk.
enum Pending {
    Upsert {
        schema: Arc<TableSchema>,
        key: Vec<u8>,
        row: Row,
        /// Columns not sent (unchanged TOAST), to fill from the stored row.
        unchanged: Vec<usize>,
    },
    Delete {
        schema: Arc<TableSchema>,
        key: Vec<u8>,
    },
    Truncate {
        schema: Arc<TableSchema>,
    },
}

/// The source transaction in progress, or the group of committed source transactions whose
/// storage commit is held for the next one.
struct OpenTransaction {
    /// Between transactions of a group: the end LSN of its last (committed) transaction.
    held: Option<Lsn>,
    /// Source transactions committed into this storage batch so far.
    transactions: u64,
    /// When the group's first transaction committed at the source.
    group_started: Option<Instant>,
    /// Skipped: already applied before a restart.
    skip: bool,
    /// LSN of the commit record (for the table gates).
    final_lsn: Lsn,
    batch: Option<PipelinedBatch>,
    pending: Vec<Pending>,
    /// Rows (that may have TOASTed values) written earlier in this transaction (or group).
    written: HashMap<(u32, Vec<u8>), Row>,
    rows: u64,
}

pub struct TransactionApplier {
    storage: Arc<dyn BucketStorage>,
    deployment: DeploymentId,
    rules: Arc<SyncRules>,
    used_tables: HashSet<String>,
    types: Arc<TypeMap>,
    relations: HashMap<u32, Arc<TableSchema>>,
    tx: Option<OpenTransaction>,
    /// Everything up to here is in storage.
    resume_lsn: Lsn,
    /// End of the newest transaction that had nothing for storage, not yet recorded.
    unrecorded: Option<Lsn>,
    last_commit: Instant,
    options: StreamOptions,
    status: Arc<ReplicationStatus>,
    events: broadcast::Sender<CheckpointEvent>,
    /// The source, for re-reading rows whose unchanged TOAST values storage does not have.
    source: Option<PgConnection>,
    /// Lazily opened ordinary connection for those re-reads and the catalog checks.
    reader: Option<tokio_postgres::Client>,
    /// Live table-set tracking (`tables.rs`); `None` without a source and publication.
    tracking: Option<Tracking>,
    /// Relation OIDs whose changes are (partly) ignored; almost always empty.
    gates: HashMap<u32, Gate>,
}

/// The referenced tables the applier streams, and when to compare them with the catalog.
struct Tracking {
    publication: String,
    /// Referenced published table → relation OID applied under that name (and its
    /// publication membership).
    tracked: Tracked,
    /// The reverse of `tracked`.
    tracked_oids: HashMap<u32, String>,
    check_needed: bool,
    last_check: Instant,
}

impl TransactionApplier {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        storage: Arc<dyn BucketStorage>,
        deployment: DeploymentId,
        rules: Arc<SyncRules>,
        types: Arc<TypeMap>,
        resume_lsn: Lsn,
        options: StreamOptions,
        status: Arc<ReplicationStatus>,
        events: broadcast::Sender<CheckpointEvent>,
    ) -> Self {
        let used_tables = rules
            .source_tables()
            .iter()
            .map(riptide_rules::TableRef::qualified)
            .collect();
        TransactionApplier {
            storage,
            deployment,
            rules,
            used_tables,
            types,
            relations: HashMap::new(),
            tx: None,
            resume_lsn,
            unrecorded: None,
            last_commit: Instant::now(),
            options,
            status,
            events,
            source: None,
            reader: None,
            tracking: None,
            gates: HashMap::new(),
        }
    }

    /// Lets the applier re-read rows from the source by key when an update leaves TOAST
    /// columns unchanged and neither the transaction nor storage has their values.
    pub fn with_source(mut self, source: PgConnection) -> Self {
        self.source = Some(source);
        self
    }

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

    /// A pgoutput Begin.
    pub fn begin(&mut self, final_lsn: Lsn) -> Result<(), ReplicationError> {
        if let Some(tx) = &mut self.tx
            && tx.held.is_some()
        {
            // The next transaction of a group: it continues the held storage batch.
            self.status.received(final_lsn);
            tx.held = None;
            tx.final_lsn = final_lsn;
            return Ok(());
        }
        if self.tx.is_some() {
            return Err(ReplicationError::Protocol(format!(
                "begin at {final_lsn} inside an open transaction"
            )));
        }
        self.status.received(final_lsn);
        // Commit records never overlap the recorded position: one that starts before it
        // ended before it, so the transaction is already in storage.
        let skip = final_lsn < self.resume_lsn;
        if skip {
            tracing::debug!(lsn = %final_lsn, "skipping transaction already applied");
        }
        self.tx = Some(OpenTransaction {
            held: None,
            transactions: 0,
            group_started: None,
            skip,
            final_lsn,
            batch: None,
            pending: Vec::new(),
            written: HashMap::new(),
            rows: 0,
        });
        Ok(())
    }

    /// A pgoutput Commit. Returns the LSN to acknowledge, if storage committed. A transaction
    /// with changes for storage may instead be held for group commit (see the module docs):
    /// then nothing is acknowledged until [`Self::release`].
    pub async fn commit(&mut self, end_lsn: Lsn) -> Result<Option<Lsn>, ReplicationError> {
        let Some(mut tx) = self.tx.take() else {
            return Err(ReplicationError::Protocol(format!(
                "commit at {end_lsn} without a transaction"
            )));
        };
        if tx.held.is_some() {
            self.tx = Some(tx);
            return Err(ReplicationError::Protocol(format!(
                "commit at {end_lsn} without a begin"
            )));
        }
        self.status.received(end_lsn);
        if tx.skip || end_lsn <= self.resume_lsn {
            return Ok(None);
        }
        tx.transactions += 1;
        let started = *tx.group_started.get_or_insert_with(Instant::now);
        let has_changes = tx.batch.is_some() || !tx.pending.is_empty();
        if has_changes
            && tx.transactions < self.options.group_max_transactions
            && started.elapsed() < self.options.group_max_age
        {
            tx.held = Some(end_lsn);
            self.tx = Some(tx);
            return Ok(None);
        }
        let ack = self.commit_transaction(tx, end_lsn).await?;
        let checked = self.check_tables().await?;
        Ok(checked.or(ack))
    }

    /// Whether a group's storage commit is held (see [`Self::release`]).
    pub fn holding(&self) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.held.is_some())
    }

    /// Commits the held group, if any. Returns the LSN to acknowledge.
    pub async fn release(&mut self) -> Result<Option<Lsn>, ReplicationError> {
        let Some(end_lsn) = self.tx.as_ref().and_then(|tx| tx.held) else {
            return Ok(None);
        };
        let Some(tx) = self.tx.take() else {
            return Ok(None);
        };
        let ack = self.commit_transaction(tx, end_lsn).await?;
        let checked = self.check_tables().await?;
        Ok(checked.or(ack))
    }

    async fn commit_transaction(
        &mut self,
        mut tx: OpenTransaction,
        end_lsn: Lsn,
    ) -> Result<Option<Lsn>, ReplicationError> {
        self.flush(&mut tx).await?;
        match tx.batch.take() {
            Some(batch) => {
                let event = batch.commit(end_lsn).await?;
                self.committed(event, end_lsn, tx.transactions);
                tracing::debug!(
                    lsn = %end_lsn,
                    rows = tx.rows,
                    transactions = tx.transactions,
                    "transactions committed"
                );
                Ok(Some(end_lsn))
            }
            None => {
                self.unrecorded = Some(end_lsn);
                self.record_idle(false).await
            }
        }
    }

    /// A logical decoding message. A non-transactional `powersync` message commits an empty
    /// batch at its LSN so the checkpoint LSN advances (write checkpoints wait on it).
    pub async fn message(
        &mut self,
        transactional: bool,
        lsn: Lsn,
        prefix: &str,
    ) -> Result<Option<Lsn>, ReplicationError> {
        self.status.received(lsn);
        if transactional || prefix != CHECKPOINT_MESSAGE_PREFIX || lsn <= self.resume_lsn {
            return Ok(None);
        }
        // pgoutput delivers non-transactional messages between transactions only.
        let released = self.release().await?;
        if self.tx.is_some() || lsn <= self.resume_lsn {
            return Ok(released);
        }
        self.commit_empty(lsn).await.map(Some)
    }

    /// Called when idle (keepalives, timer): records the position of skipped transactions
    /// once `idle_commit_interval` has passed since the last commit.
    pub async fn on_idle(&mut self) -> Result<Option<Lsn>, ReplicationError> {
        if self.holding() {
            return self.release().await;
        }
        if self.tx.is_some() {
            return Ok(None);
        }
        let ack = self.record_idle(false).await?;
        let checked = self.check_tables().await?;
        Ok(checked.or(ack))
    }

    async fn record_idle(&mut self, force: bool) -> Result<Option<Lsn>, ReplicationError> {
        let Some(lsn) = self.unrecorded else {
            return Ok(None);
        };
        if !force && self.last_commit.elapsed() < self.options.idle_commit_interval {
            return Ok(None);
        }
        self.commit_empty(lsn).await.map(Some)
    }

    async fn commit_empty(&mut self, lsn: Lsn) -> Result<Lsn, ReplicationError> {
        let batch = self.storage.begin_batch(self.deployment).await?;
        let event = batch.commit(lsn).await?;
        self.committed(event, lsn, 0);
        Ok(lsn)
    }

    fn committed(&mut self, event: CheckpointEvent, lsn: Lsn, transactions: u64) {
        self.resume_lsn = lsn;
        self.unrecorded = None;
        self.last_commit = Instant::now();
        self.status.committed(lsn, transactions);
        // No receivers is fine: nobody is streaming yet.
        let _ = self.events.send(event);
    }

    /// Raw pgoutput bytes of one XLogData message.
    pub async fn data(&mut self, data: &Bytes) -> Result<Option<Lsn>, ReplicationError> {
        match pgoutput::decode(data)? {
            LogicalMessage::Begin(b) => self.begin(b.final_lsn).map(|()| None),
            LogicalMessage::Commit(c) => self.commit(c.end_lsn).await,
            LogicalMessage::Message(m) => self.message(m.transactional, m.lsn, &m.prefix).await,
            LogicalMessage::Relation(r) => {
                let used = self
                    .used_tables
                    .contains(&format!("{}.{}", r.namespace, r.name));
                let mut schema = TableSchema::from_relation(&r, &self.types, used);
                tracing::debug!(table = %schema.qualified, relation = r.id, "relation described");
                if schema.used && !schema.columns.iter().any(|c| c.is_key) {
                    // REPLICA IDENTITY NOTHING (or DEFAULT without a primary key): rows have no
                    // identity, so updates and deletes cannot be matched. Skip the table rather
                    // than merging every row under one empty key.
                    tracing::error!(
                        table = %schema.qualified,
                        error = %crate::source::SourceError::ReplicaIdentityNothing {
                            table: schema.qualified.clone()
                        },
                        "table is not replicated: it has no replica identity"
                    );
                    schema.used = false;
                }
                if let Some(tracking) = &mut self.tracking {
                    let tracked_name = tracking.tracked_oids.get(&r.id);
                    if schema.used && tracked_name != Some(&schema.qualified) {
                        // A referenced name on an OID not streamed under it: ignore its
                        // changes until the catalog check decides (copy, or removal).
                        self.gates.entry(r.id).or_insert(Gate::Blocked);
                        tracking.check_needed = true;
                    } else if tracked_name.is_some() && !schema.used {
                        tracking.check_needed = true;
                    }
                }
                self.relations.insert(r.id, Arc::new(schema));
                Ok(None)
            }
            LogicalMessage::Type(_) | LogicalMessage::Origin(_) => Ok(None),
            LogicalMessage::Insert(i) => {
                let Some(schema) = self.relevant(i.relation_id)? else {
                    return Ok(None);
                };
                let key = tuple_result(row_image::tuple_key(&schema, &i.new))?;
                let (row, unchanged) = tuple_result(row_image::tuple_row(&schema, &i.new))?;
                self.push(Pending::Upsert {
                    schema,
                    key,
                    row,
                    unchanged,
                })
                .await
            }
            LogicalMessage::Update(u) => {
                let Some(schema) = self.relevant(u.relation_id)? else {
                    return Ok(None);
                };
                let (mut row, mut unchanged) = tuple_result(row_image::tuple_row(&schema, &u.new))?;
                let mut old_key = None;
                if let Some(old) = &u.old {
                    old_key = Some(tuple_result(row_image::tuple_key(&schema, old.tuple()))?);
                    if let OldTuple::Full(old_tuple) = old {
                        fill_from_old(&schema, &old_tuple.0, &mut row, &mut unchanged);
                    }
                }
                let key = match (row_image::tuple_key(&schema, &u.new), &old_key) {
                    (Ok(key), _) => key,
                    // An identity column that was not sent did not change.
                    (Err(TupleError::KeyUnavailable { .. }), Some(old_key)) => old_key.clone(),
                    (Err(e @ TupleError::KeyUnavailable { .. }), None) => {
                        tracing::warn!(table = %schema.qualified, error = %e, "update skipped");
                        return Ok(None);
                    }
                    (Err(e), _) => return Err(tuple_error(e)),
                };
                if let Some(old_key) = old_key
                    && old_key != key
                {
                    self.push(Pending::Delete {
                        schema: schema.clone(),
                        key: old_key,
                    })
                    .await?;
                }
                self.push(Pending::Upsert {
                    schema,
                    key,
                    row,
                    unchanged,
                })
                .await
            }
            LogicalMessage::Delete(d) => {
                let Some(schema) = self.relevant(d.relation_id)? else {
                    return Ok(None);
                };
                let key = tuple_result(row_image::tuple_key(&schema, d.old.tuple()))?;
                self.push(Pending::Delete { schema, key }).await
            }
            LogicalMessage::Truncate(t) => {
                for id in t.relation_ids {
                    if let Some(schema) = self.relevant(id)? {
                        self.push(Pending::Truncate { schema }).await?;
                    }
                }
                Ok(None)
            }
        }
    }

    /// The relation's schema if the rules use it and the transaction is not skipped.
    fn relevant(&self, relation_id: u32) -> Result<Option<Arc<TableSchema>>, ReplicationError> {
        let Some(tx) = self.tx.as_ref().filter(|tx| tx.held.is_none()) else {
            return Err(ReplicationError::Protocol(
                "row change outside a transaction".into(),
            ));
        };
        let schema = self.relations.get(&relation_id).ok_or_else(|| {
            ReplicationError::Protocol(format!("change to undescribed relation {relation_id}"))
        })?;
        if !schema.used || tx.skip {
            return Ok(None);
        }
        if !self.gates.is_empty()
            && let Some(gate) = self.gates.get(&relation_id)
            && !gate.passes(tx.final_lsn)
        {
            return Ok(None);
        }
        Ok(Some(schema.clone()))
    }

    async fn push(&mut self, change: Pending) -> Result<Option<Lsn>, ReplicationError> {
        let chunk_rows = self.options.chunk_rows;
        let Some(mut tx) = self.tx.take() else {
            return Err(ReplicationError::Protocol(
                "row change outside a transaction".into(),
            ));
        };
        tx.pending.push(change);
        let result = if tx.pending.len() >= chunk_rows {
            self.flush(&mut tx).await
        } else {
            Ok(())
        };
        self.tx = Some(tx);
        result.map(|()| None)
    }

    /// Fills unchanged columns, evaluates and saves the pending chunk.
    async fn flush(&mut self, tx: &mut OpenTransaction) -> Result<(), ReplicationError> {
        if tx.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut tx.pending);

        // Stored rows for upserts with unchanged columns not written in this transaction,
        // one lookup per table.
        let mut wanted: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        for p in &pending {
            if let Pending::Upsert {
                schema,
                key,
                unchanged,
                ..
            } = p
                && !unchanged.is_empty()
                && !tx.written.contains_key(&(schema.id, key.clone()))
            {
                wanted
                    .entry(schema.qualified.clone())
                    .or_default()
                    .push(key.clone());
            }
        }
        let mut stored: HashMap<String, HashMap<Vec<u8>, Vec<u8>>> = HashMap::new();
        for (table, keys) in wanted {
            let rows = self
                .storage
                .current_rows(self.deployment, &table, &keys)
                .await?;
            stored.insert(table, rows);
        }

        // Rows neither this transaction nor storage has: re-read them from the source.
        let mut reread: HashMap<(u32, Vec<u8>), Row> = HashMap::new();
        for p in &pending {
            if let Pending::Upsert {
                schema,
                key,
                unchanged,
                ..
            } = p
                && !unchanged.is_empty()
                && !tx.written.contains_key(&(schema.id, key.clone()))
                && !stored
                    .get(schema.qualified.as_str())
                    .is_some_and(|m| m.contains_key(key))
                && !reread.contains_key(&(schema.id, key.clone()))
                && let Some(row) = self.reread(schema, key).await?
            {
                reread.insert((schema.id, key.clone()), row);
            }
        }

        let mut ops = Vec::with_capacity(pending.len());
        for p in pending {
            match p {
                Pending::Upsert {
                    schema,
                    key,
                    mut row,
                    unchanged,
                } => {
                    if !unchanged.is_empty() {
                        let earlier = tx
                            .written
                            .get(&(schema.id, key.clone()))
                            .cloned()
                            .or_else(|| {
                                stored
                                    .get(schema.qualified.as_str())
                                    .and_then(|m| m.get(&key))
                                    .and_then(|bytes| Row::decode(bytes).ok())
                            })
                            .or_else(|| reread.get(&(schema.id, key.clone())).cloned());
                        fill_unchanged(&schema, &unchanged, earlier.as_ref(), &mut row);
                    }
                    let remember = row_image::approximate_size(&row) > TOAST_CANDIDATE_BYTES;
                    if remember || !tx.written.is_empty() {
                        tx.written.remove(&(schema.id, key.clone()));
                    }
                    let op = evaluate::upsert(&self.rules, &schema, key, &row);
                    if remember {
                        tx.written.insert((schema.id, op.key.clone()), row);
                    }
                    ops.push(BatchOperation::Row(op));
                }
                Pending::Delete { schema, key } => {
                    if !tx.written.is_empty() {
                        tx.written.remove(&(schema.id, key.clone()));
                    }
                    ops.push(BatchOperation::Row(evaluate::delete(&schema, key)));
                }
                Pending::Truncate { schema } => {
                    tx.written.retain(|(id, _), _| *id != schema.id);
                    ops.push(BatchOperation::Truncate {
                        source_table: schema.qualified.clone(),
                    });
                }
            }
        }

        let n = ops.len() as u64;
        tx.rows += n;
        self.status.add_rows(n);
        let batch = match &mut tx.batch {
            Some(batch) => batch,
            None => tx.batch.insert(PipelinedBatch::new(
                self.storage.begin_batch(self.deployment).await?,
            )),
        };
        batch.save(ops).await
    }
}

impl TransactionApplier {
    /// Reads the current row with `key` from the source table (text format, so it maps like
    /// a snapshot row). `None` if there is no source connection or the row is gone.
    async fn reread(
        &mut self,
        schema: &TableSchema,
        key: &[u8],
    ) -> Result<Option<Row>, ReplicationError> {
        let Some(source) = &self.source else {
            return Ok(None);
        };
        let Some(parts) = row_image::decode_key(key) else {
            return Ok(None);
        };
        let key_columns: Vec<_> = schema.columns.iter().filter(|c| c.is_key).collect();
        if key_columns.is_empty() || key_columns.len() != parts.len() {
            return Ok(None);
        }
        let mut conditions = Vec::with_capacity(parts.len());
        for (column, part) in key_columns.iter().zip(&parts) {
            let name = quote_ident(&column.name);
            conditions.push(match part {
                None => format!("{name} IS NULL"),
                Some(text) => format!(
                    "{name}::text = {}",
                    quote_literal(&String::from_utf8_lossy(text))
                ),
            });
        }
        let select = schema
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {} FROM {}.{} WHERE {} LIMIT 1",
            if select.is_empty() { "NULL" } else { &select },
            quote_ident(&schema.table.schema),
            quote_ident(&schema.table.name),
            conditions.join(" AND ")
        );
        if self
            .reader
            .as_ref()
            .is_none_or(tokio_postgres::Client::is_closed)
        {
            self.reader = Some(crate::connection::connect(source).await?);
        }
        let Some(reader) = &self.reader else {
            return Ok(None);
        };
        let messages = reader.simple_query(&sql).await?;
        for message in &messages {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                let values = (0..schema.columns.len()).map(|i| row.get(i));
                let (_, row) = row_image::text_row(schema, values);
                tracing::debug!(table = %schema.qualified, "row re-read for unchanged TOAST columns");
                return Ok(Some(row));
            }
        }
        Ok(None)
    }
}

impl TransactionApplier {
    /// Between transactions, when due: compares the referenced published tables in the
    /// catalog with the tracked ones and resyncs on a difference (`tables.rs`). Returns the
    /// LSN to acknowledge if it committed.
    async fn check_tables(&mut self) -> Result<Option<Lsn>, ReplicationError> {
        let Some(tracking) = &self.tracking else {
            return Ok(None);
        };
        if self.tx.is_some()
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
        if self
            .reader
            .as_ref()
            .is_none_or(tokio_postgres::Client::is_closed)
        {
            self.reader = Some(crate::connection::connect(&source).await?);
        }
        let Some(reader) = &self.reader else {
            return Ok(None);
        };
        let current = tables::published(reader, &publication, &tables).await?;
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
        let appeared = current.iter().any(|(name, p)| {
            tracking.tracked.get(name.as_str()) != Some(p)
                || self.gates.get(&p.oid) == Some(&Gate::Blocked)
        });
        if !appeared {
            // Only removals: no copy, so no temporary slot (whose creation waits for the
            // source's running transactions).
            // Read after the catalog: every transaction the catalog showed committed (the
            // DDL, and the changes before it) has its commit record before it. The insert
            // position, not `pg_current_wal_lsn()` (the write position): with
            // `synchronous_commit = off` a commit returns before its WAL is written, so the
            // write position can be behind committed changes of the removed table, which
            // would then pass the gate and bring their rows back after the removal.
            let wal: String = reader
                .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
                .await?
                .try_get(0)?;
            let seen = wal.parse::<Lsn>().map_err(|_| {
                ReplicationError::Catalog(format!("pg_current_wal_insert_lsn {wal:?}"))
            })?;
            return self.remove_tables(current, position, seen).await.map(Some);
        }
        self.resync(&source, &publication, &tables, position)
            .await
            .map(Some)
    }

    /// Removes the rows of tracked tables missing from `current` at `position` and ignores
    /// their OIDs' changes of transactions before `seen` (after the DDL that removed them).
    async fn remove_tables(
        &mut self,
        current: Tracked,
        position: Lsn,
        seen: Lsn,
    ) -> Result<Lsn, ReplicationError> {
        let Some(tracking) = &mut self.tracking else {
            return Ok(position);
        };
        let mut removed: Vec<(String, u32)> = tracking
            .tracked
            .iter()
            .filter(|(name, p)| current.get(name.as_str()) != Some(p))
            .map(|(name, p)| (name.clone(), p.oid))
            .collect();
        removed.sort();
        let mut ops = Vec::with_capacity(removed.len() + 1);
        ops.push(tables::tracked_op(&current));
        tracking.tracked_oids = tables::oid_names(&current);
        tracking.tracked = current;
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
        source: &PgConnection,
        publication: &str,
        tables: &[TableRef],
        position: Lsn,
    ) -> Result<Lsn, ReplicationError> {
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
        // The truth as of the consistent point.
        let current = tables::published(&tx, publication, tables).await?;
        let Some(tracking) = &self.tracking else {
            return Ok(position);
        };
        // A table whose membership changed (left the publication and came back between two
        // checks) is in both: its rows are replaced by a copy.
        let mut removed: Vec<(String, u32)> = tracking
            .tracked
            .iter()
            .filter(|(name, p)| current.get(name.as_str()) != Some(p))
            .map(|(name, p)| (name.clone(), p.oid))
            .collect();
        let mut added: Vec<(String, u32)> = current
            .iter()
            .filter(|(name, p)| {
                tracking.tracked.get(name.as_str()) != Some(p)
                    || self.gates.get(&p.oid) == Some(&Gate::Blocked)
            })
            .map(|(name, p)| (name.clone(), p.oid))
            .collect();
        removed.sort();
        added.sort();

        let mut batch = PipelinedBatch::new(self.storage.begin_batch(self.deployment).await?);
        let mut truncated: Vec<&str> = removed
            .iter()
            .chain(&added)
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
            .await?;
        let ctx = SnapshotContext {
            storage: &self.storage,
            deployment: self.deployment,
            rules: &self.rules,
            types: &self.types,
            status: &self.status,
            chunk_rows: self.options.chunk_rows,
        };
        for (name, oid) in &added {
            let Some(table) = tables.iter().find(|t| t.qualified() == *name) else {
                continue;
            };
            let Some(schema) = TableSchema::load(&tx, table, &self.types).await? else {
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
            let rows = snapshot::copy_table(&ctx, &tx, &schema, &mut batch).await?;
            tracing::info!(table = %name, rows, lsn = %position, from = %created.consistent_point, "table copied while streaming");
        }
        tx.commit().await?;
        // Ends the walsender session, which drops the temporary slot.
        drop(session);
        batch.save(vec![tables::tracked_op(&current)]).await?;
        let event = batch.commit(position).await?;
        self.committed(event, position, 0);

        for (_, oid) in &removed {
            self.gates
                .insert(*oid, Gate::Before(created.consistent_point));
        }
        for (_, oid) in &added {
            self.gates
                .insert(*oid, Gate::Before(created.consistent_point));
        }
        if let Some(tracking) = &mut self.tracking {
            tracking.tracked_oids = tables::oid_names(&current);
            tracking.tracked = current;
        }
        Ok(position)
    }
}

/// Takes values the old row (REPLICA IDENTITY FULL) carries for unchanged columns.
fn fill_from_old(
    schema: &TableSchema,
    old: &[TupleValue],
    row: &mut Row,
    unchanged: &mut Vec<usize>,
) {
    let mut filled = false;
    unchanged.retain(|&i| {
        let (Some(column), Some(TupleValue::Text(text))) = (schema.columns.get(i), old.get(i))
        else {
            return true;
        };
        row.insert(
            column.name.clone(),
            crate::values::convert(column.kind, text),
        );
        filled = true;
        false
    });
    if filled {
        row_image::reorder(schema, row);
    }
}

/// Fills the unchanged columns from the row's earlier state.
fn fill_unchanged(schema: &TableSchema, unchanged: &[usize], earlier: Option<&Row>, row: &mut Row) {
    let mut missing = 0usize;
    for &i in unchanged {
        let Some(column) = schema.columns.get(i) else {
            continue;
        };
        let value = earlier
            .and_then(|e| e.get(&column.name))
            .cloned()
            .unwrap_or_else(|| {
                missing += 1;
                SqliteValue::Null
            });
        row.insert(column.name.clone(), value);
    }
    if missing > 0 {
        tracing::warn!(
            table = %schema.qualified,
            columns = missing,
            "unchanged TOAST columns not found in stored row nor in the table; replicated as NULL"
        );
    }
    row_image::reorder(schema, row);
}

fn tuple_error(e: TupleError) -> ReplicationError {
    ReplicationError::Protocol(e.to_string())
}

fn tuple_result<T>(r: Result<T, TupleError>) -> Result<T, ReplicationError> {
    r.map_err(tuple_error)
}
