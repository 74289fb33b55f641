//! The replicator: source checks, the snapshot of a new deployment, then streaming.

use futures::FutureExt;
use std::sync::Arc;
use std::time::Duration;

use pgwire_replication::{ReplicationClient, ReplicationEvent};
use riptide_protocol::Lsn;
use riptide_rules::SyncRules;
use riptide_storage::{BucketStorage, CheckpointEvent, Deployment};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::connection;
use crate::error::ReplicationError;
use crate::schema::TypeMap;
use crate::snapshot::{self, SnapshotContext};
use crate::source;
use crate::status::ReplicationStatus;
use crate::stream::{StreamOptions, TransactionApplier};

/// Where to replicate from.
#[derive(Debug, Clone)]
pub struct ReplicatorOptions {
    /// The source database (a user with REPLICATION and SELECT).
    pub source: tokio_postgres::Config,
    /// Publication to stream (`powersync`).
    pub publication: String,
    /// Prefix of replication slot names (`riptide_`).
    pub slot_prefix: String,
}

/// Replicates one source database into bucket storage.
pub struct Replicator {
    options: ReplicatorOptions,
    storage: Arc<dyn BucketStorage>,
    events: broadcast::Sender<CheckpointEvent>,
    status: Arc<ReplicationStatus>,
    stream_options: StreamOptions,
}

impl Replicator {
    pub fn new(
        options: ReplicatorOptions,
        storage: Arc<dyn BucketStorage>,
        events: broadcast::Sender<CheckpointEvent>,
    ) -> Self {
        Replicator {
            options,
            storage,
            events,
            status: Arc::new(ReplicationStatus::default()),
            stream_options: StreamOptions::default(),
        }
    }

    /// Overrides chunk sizes and idle commit interval (tests and benchmarks).
    pub fn with_stream_options(mut self, options: StreamOptions) -> Self {
        self.stream_options = options;
        self
    }

    /// Checks the source database for this rules' needs; errors name the fix.
    pub async fn check_source(&self, rules: &SyncRules) -> Result<(), ReplicationError> {
        let client = connection::connect(&self.options.source).await?;
        let mut tables = rules.source_tables();
        tables.sort();
        let problems = source::check(&client, &self.options.publication, &tables).await?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ReplicationError::Source(problems))
        }
    }

    /// Live counters for metrics and the dashboard.
    pub fn status(&self) -> Arc<ReplicationStatus> {
        self.status.clone()
    }

    /// Drops a replication slot if it exists (used when a deployment is replaced).
    pub async fn drop_slot(&self, slot_name: &str) -> Result<(), ReplicationError> {
        let client = connection::connect(&self.options.source).await?;
        drop_slot(&client, slot_name).await
    }

    /// Runs one deployment until cancelled: snapshot if needed (then `storage.activate(id)`),
    /// then streams. Returns Ok on cancellation.
    pub async fn run(
        &self,
        deployment: Deployment,
        rules: Arc<SyncRules>,
        cancel: CancellationToken,
    ) -> Result<(), ReplicationError> {
        tokio::select! {
            result = self.run_inner(deployment, rules) => result,
            () = cancel.cancelled() => {
                tracing::info!("replication cancelled");
                Ok(())
            }
        }
    }

    async fn run_inner(
        &self,
        deployment: Deployment,
        rules: Arc<SyncRules>,
    ) -> Result<(), ReplicationError> {
        let mut client = connection::connect(&self.options.source).await?;
        let types =
            TypeMap::load_with(&client, crate::values::ValueOptions::from_rules(&rules)).await?;
        let slot = deployment.slot_name.clone();
        // The stored state is the truth (the caller's copy may be stale).
        let deployment = self.storage.deployment(deployment.id).await?;

        let (session, resume, baseline) = if deployment.snapshot_done {
            let resume = deployment.resume_lsn.ok_or_else(|| {
                ReplicationError::Protocol("snapshot done but no resume LSN stored".into())
            })?;
            if !slot_usable(&client, &slot).await? {
                return Err(ReplicationError::SlotMissing { slot });
            }
            tracing::info!(lsn = %resume, slot = %slot, "resuming replication");
            let cfg = connection::replication_config(
                &self.options.source,
                &self.options.publication,
                &slot,
                resume,
            )?
            .with_ack_lsn(pgwire_replication::Lsn(resume.0));
            // The tables tracked when storage was last committed: the first catalog check
            // then sees table changes made while stopped (`tables.rs`).
            let baseline =
                match crate::tables::stored_tracked(&*self.storage, deployment.id).await? {
                    Some(stored) => stored,
                    None => {
                        // Stored before the tracked set was: start from the catalog, and store it.
                        let current = crate::tables::published(
                            &client,
                            &self.options.publication,
                            &rules.source_tables(),
                        )
                        .await?;
                        let mut batch = self.storage.begin_batch(deployment.id).await?;
                        batch
                            .save(vec![crate::tables::tracked_op(&current)])
                            .await?;
                        let event = batch.commit(resume).await?;
                        let _ = self.events.send(event);
                        current
                    }
                };
            (start_streaming(cfg).await?, resume, baseline)
        } else {
            // An interrupted snapshot starts over: no partial data, a fresh slot.
            self.storage.reset_snapshot(deployment.id).await?;
            drop_slot(&client, &slot).await?;
            let cfg = connection::replication_config(
                &self.options.source,
                &self.options.publication,
                &slot,
                Lsn::ZERO,
            )?;
            let mut session = connection::connect_gated(cfg).await?;
            let created = snapshot::create_slot(&mut session, &slot).await?;
            tracing::info!(lsn = %created.consistent_point, slot = %slot, "replication slot created; snapshot started");
            let ctx = SnapshotContext {
                storage: &self.storage,
                deployment: deployment.id,
                rules: &rules,
                types: &types,
                status: &self.status,
                chunk_rows: snapshot::FETCH_ROWS,
            };
            let (event, baseline) =
                snapshot::copy_tables(&ctx, &mut client, &created, &self.options.publication)
                    .await?;
            self.status.committed(created.consistent_point, 0);
            let _ = self.events.send(event);
            self.storage.mark_snapshot_done(deployment.id).await?;
            self.storage.activate(deployment.id).await?;
            tracing::info!(lsn = %created.consistent_point, "snapshot done; deployment active");
            session.start().await?;
            session.wait_started().await?;
            (session, created.consistent_point, baseline)
        };
        drop(client);

        let applier = TransactionApplier::new(
            self.storage.clone(),
            deployment.id,
            rules,
            types,
            resume,
            self.stream_options.clone(),
            self.status.clone(),
            self.events.clone(),
        )
        .with_source(self.options.source.clone())
        .with_tracking(self.options.publication.clone(), baseline);
        stream(session, applier).await
    }
}

/// The socket loop: events in, acknowledgements out. After a source commit held for group
/// commit (see `stream/`), the next event is taken only if it is already waiting; when none
/// is, the group is committed at once.
async fn stream(
    mut session: ReplicationClient,
    mut applier: TransactionApplier,
) -> Result<(), ReplicationError> {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut waiting: Option<ReplicationEvent> = None;
    loop {
        let event = match waiting.take() {
            Some(event) => Some(event),
            None => tokio::select! {
                event = session.recv() => Some(event?.ok_or_else(|| {
                    ReplicationError::Protocol("replication stream ended".into())
                })?),
                _ = tick.tick() => None,
            },
        };
        let mut ack = match event {
            None => applier.on_idle().await?,
            Some(ReplicationEvent::Begin { final_lsn, .. }) => {
                applier.begin(Lsn(final_lsn.0))?;
                None
            }
            Some(ReplicationEvent::XLogData { data, .. }) => applier.data(&data).await?,
            Some(ReplicationEvent::Commit { end_lsn, .. }) => {
                applier.commit(Lsn(end_lsn.0)).await?
            }
            Some(ReplicationEvent::Message {
                transactional,
                lsn,
                prefix,
                ..
            }) => applier.message(transactional, Lsn(lsn.0), &prefix).await?,
            // The walsender sends keepalives between transactions while acknowledgements lag
            // (often more than one a transaction): they must not end a group.
            Some(ReplicationEvent::KeepAlive { .. }) if applier.holding() => None,
            Some(ReplicationEvent::KeepAlive { .. }) => applier.on_idle().await?,
            Some(ReplicationEvent::StoppedAt { .. }) => {
                return Err(ReplicationError::Protocol(
                    "replication stream stopped".into(),
                ));
            }
        };
        if applier.holding() {
            // `recv` is a channel receive: polling it once loses nothing.
            match session.recv().now_or_never() {
                Some(event) => {
                    waiting = Some(event?.ok_or_else(|| {
                        ReplicationError::Protocol("replication stream ended".into())
                    })?);
                }
                None => ack = applier.release().await?.or(ack),
            }
        }
        if let Some(lsn) = ack {
            session.update_applied_lsn(pgwire_replication::Lsn(lsn.0));
        }
    }
}

/// Connects and starts streaming, waiting briefly while the slot's previous session (a
/// replicator that was just stopped) still holds it.
async fn start_streaming(
    cfg: pgwire_replication::ReplicationConfig,
) -> Result<ReplicationClient, ReplicationError> {
    let mut attempts = 0;
    loop {
        let mut session = ReplicationClient::connect(cfg.clone()).await?;
        match session.wait_started().await {
            Ok(()) => return Ok(session),
            // 55006 object_in_use: "replication slot … is active for PID …".
            Err(pgwire_replication::PgWireError::Server(message))
                if attempts < 50 && slot_in_use(&message) =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn slot_in_use(message: &str) -> bool {
    message.contains("55006") || message.contains("is active for PID")
}

/// Whether `slot` exists and has not lost required WAL.
async fn slot_usable(
    client: &tokio_postgres::Client,
    slot: &str,
) -> Result<bool, ReplicationError> {
    // `wal_status` (Postgres 13+) is `lost` for invalidated slots; row_to_json keeps this
    // working on older versions.
    let row = client
        .query_opt(
            "SELECT row_to_json(s)::text FROM pg_replication_slots s WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let json: String = row.try_get(0)?;
    let value: serde_json::Value = serde_json::from_str(&json)
        .map_err(|_| ReplicationError::Catalog("pg_replication_slots row is not JSON".into()))?;
    Ok(value.get("wal_status").and_then(serde_json::Value::as_str) != Some("lost"))
}

/// Drops `slot` if it exists, waiting briefly for a session that still holds it to end.
async fn drop_slot(client: &tokio_postgres::Client, slot: &str) -> Result<(), ReplicationError> {
    let mut attempts = 0;
    loop {
        let result = client
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await;
        match result {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(slot = %slot, "replication slot dropped");
                }
                return Ok(());
            }
            // 55006 object_in_use: the slot's previous session has not ended yet.
            Err(e)
                if attempts < 50
                    && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
