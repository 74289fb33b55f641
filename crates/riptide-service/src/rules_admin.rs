//! The hook behind the sync-rules admin API (`/api/sync-rules/v1/*`, [`crate::routes::admin`]).
//!
//! Deploying rules means creating a deployment and replicating it, which the service crate
//! knows nothing about: `riptide serve` implements [`RulesAdmin`] and attaches it with
//! [`crate::AppState::with_rules_admin`]. Without one, the admin API answers 404.

use async_trait::async_trait;
use riptide_storage::{Deployment, StorageError};
use serde::Serialize;

/// One problem with submitted rules; `line`/`column` (1-based, in the submitted YAML) are
/// absent when the problem has no place in the file (e.g. the source database is unreachable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleProblem {
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl RuleProblem {
    pub fn located(message: impl Into<String>, line: usize, column: usize) -> RuleProblem {
        RuleProblem {
            message: message.into(),
            line: Some(line),
            column: Some(column),
        }
    }

    pub fn unlocated(message: impl Into<String>) -> RuleProblem {
        RuleProblem {
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

/// The deployment serving clients and the one replicating in the background to replace it.
#[derive(Debug, Clone, Default)]
pub struct CurrentRules {
    pub current: Option<Deployment>,
    pub next: Option<Deployment>,
}

#[derive(Debug, thiserror::Error)]
pub enum RulesAdminError {
    /// The rules do not parse or do not fit the source database.
    #[error("invalid sync rules")]
    Invalid(Vec<RuleProblem>),
    /// The config file's `sync_config` supplies the rules (`PSYNC_S4105`).
    #[error(
        "sync rules are managed by the config file (`sync_config`); edit the file and restart, or remove `sync_config` to deploy rules through this API"
    )]
    ManagedByConfig,
    #[error("storage error")]
    Storage(#[from] StorageError),
    /// Anything else that went wrong while deploying (logged; the client sees a generic
    /// message).
    #[error("{0}")]
    Failed(String),
    /// This process does not hold the replication lease: deploys go to the one that does
    /// (503, the message says so).
    #[error("{0}")]
    NotHolder(&'static str),
}

/// What the admin routes need from whoever runs replication.
#[async_trait]
pub trait RulesAdmin: Send + Sync + 'static {
    /// Whether the rules come from the config file (deploys are then refused with 422).
    fn managed_by_config(&self) -> bool;

    /// Every problem of `content` (empty: deployable).
    async fn validate(&self, content: &str) -> Result<Vec<RuleProblem>, RulesAdminError>;

    /// Deploys `content`: a new deployment replicates in the background and replaces the
    /// serving one once its snapshot is done. Returns the new (or, for rules equal to the
    /// current or next deployment's, that) deployment.
    async fn deploy(&self, content: &str) -> Result<Deployment, RulesAdminError>;

    /// The serving and the next deployment.
    async fn current(&self) -> Result<CurrentRules, RulesAdminError>;
}
