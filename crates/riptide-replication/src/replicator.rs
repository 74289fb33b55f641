//! The replicator: source checks, the snapshot of a new deployment (or the rest of an
//! interrupted one), then streaming (`streaming.rs`).

use std::sync::Arc;

use riptide_rules::SyncRules;
use riptide_storage::{BucketStorage, CheckpointEvent, Deployment, DeploymentState};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use riptide_pg::PgConnection;

use crate::connection::{self, Protocol};
use crate::error::ReplicationError;
use crate::schema::TypeMap;
use crate::slot::{self, SlotInfo, SlotState};
use crate::snapshot::{self, Initial, SnapshotContext, Started};
use crate::source;
use crate::status::ReplicationStatus;
use crate::stream::{StreamOptions, TransactionApplier};
use crate::streaming::Completion;

/// Where to replicate from.
#[derive(Debug, Clone)]
pub struct ReplicationSource {
    /// The source database (a user with REPLICATION and SELECT), TLS included.
    pub connection: PgConnection,
    /// Publication to stream (`powersync`).
    pub publication: String,
    /// Prefix of replication slot names (`riptide_`).
    pub slot_prefix: String,
}

/// Replicates one source database into bucket storage.
pub struct Replicator {
    options: ReplicationSource,
    storage: Arc<dyn BucketStorage>,
    events: broadcast::Sender<CheckpointEvent>,
    status: Arc<ReplicationStatus>,
    stream_options: StreamOptions,
    /// Ends another session holding the deployment's slot before streaming (the lease holder).
    take_over_slot: bool,
}

impl Replicator {
    pub fn new(
        options: ReplicationSource,
        storage: Arc<dyn BucketStorage>,
        events: broadcast::Sender<CheckpointEvent>,
    ) -> Self {
        Replicator {
            options,
            storage,
            events,
            status: Arc::new(ReplicationStatus::default()),
            stream_options: StreamOptions::default(),
            take_over_slot: false,
        }
    }

    /// Before streaming, ends the session of whoever else streams from the deployment's slot
    /// (a previous lease holder, paused with its connection open): for a replicator that holds
    /// the replication lease. Storage fencing keeps that previous holder from writing; this
    /// frees the slot for the new one (`pg_terminate_backend`, which the source user may do
    /// for sessions of its own role).
    pub fn taking_over_slots(mut self) -> Self {
        self.take_over_slot = true;
        self
    }

    /// Overrides chunk sizes and idle commit interval (tests and benchmarks).
    pub fn with_stream_options(mut self, options: StreamOptions) -> Self {
        self.stream_options = options;
        self
    }

    /// Checks the source database for this rules' needs; errors name the fix.
    pub async fn check_source(&self, rules: &SyncRules) -> Result<(), ReplicationError> {
        let client = connection::connect(&self.options.connection).await?;
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
        let client = connection::connect(&self.options.connection).await?;
        slot::drop(&client, slot_name).await
    }

    /// The replication slots of the source database (for finding slots left behind).
    pub async fn slots(&self) -> Result<Vec<SlotInfo>, ReplicationError> {
        let client = connection::connect(&self.options.connection).await?;
        slot::list(&client).await
    }

    /// Runs one deployment until cancelled: its initial snapshot if not done (which activates
    /// it, `snapshot/`), then streams. Returns Ok on cancellation.
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

    /// Sessions until one fails. A streamed transaction deferred by one session
    /// (`stream/streamed.rs`) is replayed by the next with protocol 1, which ends once that
    /// transaction has committed; the one after streams again.
    async fn run_inner(
        &self,
        deployment: Deployment,
        rules: Arc<SyncRules>,
    ) -> Result<(), ReplicationError> {
        let mut deferred = None;
        loop {
            match self.session(&deployment, rules.clone(), deferred).await {
                Err(ReplicationError::StreamDeferred { xid }) => deferred = Some(xid),
                Err(ReplicationError::StreamResumes { xid }) => {
                    tracing::info!(xid, "deferred transaction committed; streaming again");
                    deferred = None;
                }
                other => return other,
            }
        }
    }

    /// The protocol of the next session: streaming unless turned off, a deferred
    /// transaction is being replayed, or the source is older than Postgres 14.
    async fn protocol(
        &self,
        client: &tokio_postgres::Client,
        deferred: Option<u32>,
    ) -> Result<Protocol, ReplicationError> {
        let Some(work_mem_kb) = self.stream_options.stream_in_progress_kb else {
            return Ok(Protocol::WholeTransactions);
        };
        if deferred.is_some() {
            return Ok(Protocol::WholeTransactions);
        }
        let version: String = client
            .query_one("SHOW server_version_num", &[])
            .await?
            .get(0);
        if version.trim().parse::<u32>().unwrap_or(0) < 140_000 {
            tracing::info!(
                server_version_num = %version,
                "source is older than Postgres 14: large transactions arrive whole at their commit (pgoutput protocol 1)"
            );
            return Ok(Protocol::WholeTransactions);
        }
        Ok(Protocol::Streaming { work_mem_kb })
    }

    /// One walsender session: the snapshot or resume, then the stream until it fails.
    async fn session(
        &self,
        deployment: &Deployment,
        rules: Arc<SyncRules>,
        deferred: Option<u32>,
    ) -> Result<(), ReplicationError> {
        let mut client = connection::connect(&self.options.connection).await?;
        let protocol = self.protocol(&client, deferred).await?;
        let types =
            TypeMap::load_with(&client, crate::values::ValueOptions::from_rules(&rules)).await?;
        // The stored state is the truth (the caller's copy may be stale).
        let deployment = self.storage.deployment(deployment.id).await?;
        if self.take_over_slot {
            slot::take_over(&client, &deployment.slot_name).await?;
        }
        let started = if deployment.snapshot_done {
            if deployment.state == DeploymentState::Processing {
                // Done but never activated (storage written by a version that did the two
                // apart, and failed between them): activate now.
                self.storage.activate(deployment.id).await?;
            }
            self.resume(&client, &deployment, &rules, protocol).await?
        } else {
            Initial {
                ctx: SnapshotContext {
                    storage: &self.storage,
                    deployment: deployment.id,
                    rules: &rules,
                    types: &types,
                    status: &self.status,
                    chunk_rows: snapshot::FETCH_ROWS,
                },
                options: &self.options,
                protocol,
                slot: &deployment.slot_name,
                resume_lsn: deployment.resume_lsn,
                commit_rows: self.stream_options.snapshot_commit_rows,
                events: &self.events,
            }
            .run(&mut client)
            .await?
        };
        drop(client);

        let applier = TransactionApplier::new(
            self.storage.clone(),
            deployment.id,
            rules,
            types,
            started.resume,
            self.stream_options.clone(),
            self.status.clone(),
            self.events.clone(),
        )
        .with_source(self.options.connection.clone())
        .with_tracking(self.options.publication.clone(), started.baseline);
        let completion = started.complete_at.map(|at| Completion {
            storage: self.storage.clone(),
            deployment: deployment.id,
            at,
        });
        crate::streaming::stream(
            started.session,
            applier,
            &self.stream_options,
            self.options.connection.clone(),
            completion,
            deferred,
        )
        .await
    }

    /// Streaming again for a deployment whose snapshot is done, from its stored position.
    async fn resume(
        &self,
        client: &tokio_postgres::Client,
        deployment: &Deployment,
        rules: &SyncRules,
        protocol: Protocol,
    ) -> Result<Started, ReplicationError> {
        let slot = &deployment.slot_name;
        let resume = deployment.resume_lsn.ok_or_else(|| {
            ReplicationError::Protocol("snapshot done but no resume LSN stored".into())
        })?;
        if !matches!(slot::state(client, slot).await?, SlotState::Usable { .. }) {
            self.status.slot_invalidated();
            return Err(ReplicationError::SlotMissing { slot: slot.clone() });
        }
        tracing::info!(lsn = %resume, slot = %slot, "resuming replication");
        let cfg = connection::replication_config(
            &self.options.connection,
            &self.options.publication,
            slot,
            resume,
        )?
        .with_ack_lsn(pgwire_replication::Lsn(resume.0));
        // The tables tracked when storage was last committed: the first catalog check then
        // sees table changes made while stopped (`tables.rs`).
        let baseline = match crate::tables::stored_tracked(&*self.storage, deployment.id).await? {
            Some(stored) => stored,
            None => {
                // Stored before the tracked set was: start from the catalog, and store it.
                let current = crate::tables::published(
                    client,
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
        Ok(Started {
            session: slot::start_streaming(&self.options.connection, protocol.apply(cfg)).await?,
            resume,
            baseline,
            complete_at: None,
        })
    }
}
