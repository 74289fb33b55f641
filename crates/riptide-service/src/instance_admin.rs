//! The hook behind PowerSync's admin API v1 (`/api/admin/v1/*`, [`crate::routes::admin_v1`]),
//! and the shapes its answers take on the wire (those of `@powersync/service-types`'
//! `internal_routes`, so `@powersync/service-client` and PowerSync's CLI read them).
//!
//! Diagnostics, schema, SQL and reprocessing need the source database and the deployments,
//! which the service crate knows nothing about: `riptide serve` implements [`InstanceAdmin`]
//! and attaches it with [`crate::AppState::with_instance_admin`]. Without one, the routes
//! answer 404 `PSYNC_S2002`.

use std::sync::Arc;

use async_trait::async_trait;
use riptide_storage::{BucketStorage, StorageError};
use serde::{Deserialize, Serialize};

/// `ReplicationError`: a problem of a connection, a table or the sync rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicationIssue {
    /// `warning` (could indicate an issue) or `fatal` (prevents replicating).
    pub level: IssueLevel,
    pub message: String,
    /// RFC 3339, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ts: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueLevel {
    Warning,
    Fatal,
}

impl ReplicationIssue {
    pub fn fatal(message: impl Into<String>) -> ReplicationIssue {
        ReplicationIssue {
            level: IssueLevel::Fatal,
            message: message.into(),
            ts: None,
        }
    }

    pub fn warning(message: impl Into<String>) -> ReplicationIssue {
        ReplicationIssue {
            level: IssueLevel::Warning,
            message: message.into(),
            ts: None,
        }
    }
}

/// `ConnectionStatus`: the source database as the service sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionStatus {
    pub id: String,
    /// The connection's URI without its password.
    pub postgres_uri: String,
    pub connected: bool,
    pub errors: Vec<ReplicationIssue>,
}

/// `TableInfo`: one source table the rules read.
#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    /// Set when the table comes from a wildcard pattern (`todos_%`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The columns identifying a row (primary key, or every column with `REPLICA IDENTITY FULL`).
    pub replication_id: Vec<String>,
    pub data_queries: bool,
    pub parameter_queries: bool,
    pub errors: Vec<ReplicationIssue>,
}

/// One source connection of a deployment (`SyncRulesStatus.connections[]`).
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentConnection {
    pub id: String,
    pub tag: String,
    pub slot_name: String,
    pub initial_replication_done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_lsn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_keepalive_ts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_checkpoint_ts: Option<String>,
    /// WAL bytes between the source's position and the slot's confirmed flush position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_lag_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_status: Option<String>,
    pub tables: Vec<TableInfo>,
}

/// `SyncRulesStatus`: a deployment (or submitted rules) against the source database.
#[derive(Debug, Clone, Serialize)]
pub struct SyncRulesStatus {
    /// The rules YAML, when asked for (`sync_rules_content`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    pub connections: Vec<DeploymentConnection>,
    pub errors: Vec<ReplicationIssue>,
}

/// `DiagnosticsResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnostics {
    pub connections: Vec<ConnectionStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_sync_rules: Option<SyncRulesStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploying_sync_rules: Option<SyncRulesStatus>,
}

/// A column of `TableSchema`.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnSchema {
    pub name: String,
    /// The SQLite type a value of this column syncs as: `text`, `integer`, `real`, `blob`.
    pub sqlite_type: String,
    /// `format_type(…)`, e.g. `character varying(255)[]`.
    pub internal_type: String,
    /// Same as `internal_type` (deprecated upstream, still read by older tools).
    #[serde(rename = "type")]
    pub type_name: String,
    /// `pg_type.typname`, arrays as `elem[]`.
    pub pg_type: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableSchema {
    pub name: String,
    pub columns: Vec<ColumnSchema>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseSchema {
    pub name: String,
    pub tables: Vec<TableSchema>,
}

/// One connection of `InstanceSchema`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionSchema {
    pub id: String,
    pub tag: String,
    pub schemas: Vec<DatabaseSchema>,
}

/// `InstanceSchema` (`GetSchemaResponse`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSchema {
    pub connections: Vec<ConnectionSchema>,
    pub default_connection_tag: String,
    pub default_schema: String,
}

/// A bound argument of `execute-sql` (`string | number | boolean`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SqlArg {
    Bool(bool),
    Number(serde_json::Number),
    Text(String),
}

/// `ExecuteSqlResponse.results`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SqlResults {
    pub columns: Vec<String>,
    /// Each value a string, number, boolean or null.
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// `ExecuteSqlResponse`. A failing query is a 200 with `success: false` and the database's
/// message in `error`, as upstream.
#[derive(Debug, Clone, Serialize)]
pub struct SqlOutcome {
    pub success: bool,
    pub results: SqlResults,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SqlOutcome {
    pub fn failed(message: impl Into<String>) -> SqlOutcome {
        SqlOutcome {
            success: false,
            results: SqlResults::default(),
            error: Some(message.into()),
        }
    }
}

/// What reprocessing started: the new deployment's connection and slot.
#[derive(Debug, Clone, Serialize)]
pub struct ReprocessedConnection {
    pub id: String,
    pub tag: String,
    pub slot_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum InstanceAdminError {
    /// A deployment is still processing (409 `PSYNC_S4106`).
    #[error("Busy processing sync rules - cannot reprocess")]
    Busy,
    /// No deployment is active (422 `PSYNC_S4104`).
    #[error("No active sync rules")]
    NoActiveRules,
    #[error("storage error")]
    Storage(#[from] StorageError),
    /// Anything else (logged; the client sees a generic message).
    #[error("{0}")]
    Failed(String),
    /// This process does not hold the replication lease: reprocessing goes to the one that
    /// does (503, the message says so).
    #[error("{0}")]
    NotHolder(&'static str),
}

/// What the admin API v1 needs from whoever runs replication.
#[async_trait]
pub trait InstanceAdmin: Send + Sync + 'static {
    /// The source connection, the active and the deploying deployment; `include_content` adds
    /// their rules YAML.
    async fn diagnostics(&self, include_content: bool) -> Result<Diagnostics, InstanceAdminError>;

    /// `content` against the source database, as a deployment of it would be diagnosed before
    /// it replicates.
    async fn validate(&self, content: &str) -> Result<SyncRulesStatus, InstanceAdminError>;

    /// Tables and columns of the source database.
    async fn schema(&self) -> Result<InstanceSchema, InstanceAdminError>;

    /// Runs `query` with `args` on the source database (read-only, row-limited and under a
    /// statement timeout unless configured otherwise; refused unless `debug_api` is set).
    async fn execute_sql(&self, query: &str, args: &[SqlArg]) -> SqlOutcome;

    /// Deploys the active rules again on a new slot (a full re-replication), unless a deploy
    /// is still processing.
    async fn reprocess(&self) -> Result<ReprocessedConnection, InstanceAdminError>;

    /// The storage compaction on request writes through: the lease holder's, fenced at its
    /// epoch ([`InstanceAdminError::NotHolder`] on any other process, so an API node or a
    /// standby never rewrites buckets beside the holder).
    fn compaction_storage(&self) -> Result<Arc<dyn BucketStorage>, InstanceAdminError>;
}
