//! PowerSync's admin API v1 for `riptide serve` ([`riptide_service::InstanceAdmin`]):
//! diagnostics of the source connection and the deployments (`diagnostics.rs`), the source
//! schema (`source_schema.rs`), SQL on the source (`execute_sql.rs`) and reprocessing
//! (`deployments/reprocess.rs`).
//!
//! Every request opens its own connection to the source with the replicator's session settings
//! (`riptide_replication::connect`), so a slow admin call never takes a connection from the
//! write-checkpoint pool. The source has one connection, named `default` (id and tag), as
//! upstream when the config names none.

mod diagnostics;
mod execute_sql;
mod source_schema;

use std::error::Error;
use std::sync::Arc;

use async_trait::async_trait;
use riptide_service::instance_admin::{
    Diagnostics, InstanceSchema, ReprocessedConnection, SqlArg, SqlOutcome, SyncRulesStatus,
};
use riptide_service::{InstanceAdmin, InstanceAdminError, RulesAdminError};
use riptide_storage::BucketStorage;

pub use execute_sql::ExecuteSqlOptions;

use crate::deployments::{Admin, NOT_THE_HOLDER};

/// The id and tag of the one source connection.
pub const CONNECTION_ID: &str = "default";

/// The admin API v1's hook.
pub struct Instance {
    admin: Arc<Admin>,
    source: riptide_pg::PgConnection,
    publication: String,
    sql: ExecuteSqlOptions,
}

impl Instance {
    pub fn new(
        admin: Arc<Admin>,
        source: riptide_pg::PgConnection,
        publication: impl Into<String>,
        sql: ExecuteSqlOptions,
    ) -> Instance {
        Instance {
            admin,
            source,
            publication: publication.into(),
            sql,
        }
    }
}

#[async_trait]
impl InstanceAdmin for Instance {
    async fn diagnostics(&self, include_content: bool) -> Result<Diagnostics, InstanceAdminError> {
        let current = self.admin.current_rules().await.map_err(rules_error)?;
        let status = self.admin.node.status().snapshot();
        Ok(diagnostics::diagnostics(self, current, &status, include_content).await)
    }

    async fn validate(&self, content: &str) -> Result<SyncRulesStatus, InstanceAdminError> {
        Ok(diagnostics::validate(self, content).await)
    }

    async fn schema(&self) -> Result<InstanceSchema, InstanceAdminError> {
        source_schema::schema(&self.source).await
    }

    async fn execute_sql(&self, query: &str, args: &[SqlArg]) -> SqlOutcome {
        execute_sql::execute(&self.source, &self.sql, query, args).await
    }

    async fn reprocess(&self) -> Result<ReprocessedConnection, InstanceAdminError> {
        let Some(deployments) = self.admin.node.deployments() else {
            return Err(InstanceAdminError::NotHolder(NOT_THE_HOLDER));
        };
        let d = deployments.reprocess().await?;
        Ok(ReprocessedConnection {
            id: CONNECTION_ID.into(),
            tag: CONNECTION_ID.into(),
            slot_name: d.slot_name,
        })
    }

    fn compaction_storage(&self) -> Result<Arc<dyn BucketStorage>, InstanceAdminError> {
        match self.admin.node.deployments() {
            Some(deployments) => Ok(deployments.storage()),
            None => Err(InstanceAdminError::NotHolder(NOT_THE_HOLDER)),
        }
    }
}

fn rules_error(e: RulesAdminError) -> InstanceAdminError {
    match e {
        RulesAdminError::Storage(e) => InstanceAdminError::Storage(e),
        other => InstanceAdminError::Failed(other.to_string()),
    }
}

/// An error and its causes, `: `-separated (what the answers' `errors` carry).
fn chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
