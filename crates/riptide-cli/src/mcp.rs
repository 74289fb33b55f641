//! `riptide mcp`: the platform tools as an MCP server over stdio (for AI agents).
//!
//! Tools: `create_database`, `database_sync_enable`, `create_app`, `connect_app_to_database`,
//! `status`, `run_migrations`, `deploy_sync_rules`, `generate_schema`. Each calls the same
//! `riptide_platform` function as the CLI subcommand and answers with structured JSON (the same
//! objects `--json` prints); a failure is a tool error (`isError: true`) whose text is the full
//! message. stdout carries the protocol only; logs go to stderr.

use std::path::PathBuf;

use anyhow::{Context, Result};
use riptide_platform::{Platform, PlatformError, Quiet};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateDatabaseArgs {
    /// The database name: a lowercase slug (a-z, 0-9, '-', '_'), 1-40 characters.
    pub name: String,
    /// An existing Postgres server to create it on (postgres://user:password@host:port/postgres).
    /// Without it, the database is created on Riptide's local Postgres cluster.
    pub server_url: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseArgs {
    /// The database id (db_…) or name.
    pub database_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateAppArgs {
    /// The app name: a lowercase slug; also the folder name.
    pub name: String,
    /// The template: "realtime".
    pub template: Option<String>,
    /// The parent folder of the app folder (default: the server's working directory).
    pub directory: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectArgs {
    /// The app id (app_…), name or folder.
    pub app_id: String,
    /// The database id (db_…) or name.
    pub database_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppArgs {
    /// The app id (app_…), name or folder.
    pub app_id: String,
}

/// The MCP server: one platform (RIPTIDE_HOME) and its tools.
#[derive(Debug, Clone)]
pub struct RiptideMcp {
    platform: Platform,
    tool_router: ToolRouter<Self>,
}

fn result<T: Serialize>(r: Result<T, PlatformError>) -> Result<CallToolResult, ErrorData> {
    match r {
        Ok(value) => match serde_json::to_value(&value) {
            Ok(json) => Ok(CallToolResult::structured(json)),
            Err(e) => Err(ErrorData::internal_error(e.to_string(), None)),
        },
        Err(e) => {
            let message = error_chain(&e);
            tracing::info!(error = %message, "tool failed");
            Ok(CallToolResult::error(vec![ContentBlock::text(message)]))
        }
    }
}

/// `err: cause: cause …`, each message once.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        source = s.source();
    }
    out
}

#[tool_router(router = tool_router)]
impl RiptideMcp {
    pub fn new(platform: Platform) -> Self {
        RiptideMcp {
            platform,
            tool_router: Self::tool_router(),
        }
    }

    /// Create a Postgres database (on Riptide's local cluster, or on an existing server with
    /// serverUrl). Returns its id and the pooled and direct connection URIs. Idempotent.
    #[tool(name = "create_database")]
    async fn create_database(
        &self,
        Parameters(a): Parameters<CreateDatabaseArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        // Passwords are never shown: `connect_app_to_database` writes the real URIs to `.env`.
        result(
            riptide_platform::database::create_database(
                &self.platform,
                &a.name,
                a.server_url.as_deref(),
                &Quiet,
            )
            .await
            .map(|info| info.redacted()),
        )
    }

    /// Enable realtime sync on a database: checks logical replication, creates the storage
    /// database, signing keys and an admin token, and starts a Riptide sync service for it.
    /// Returns the service URL. Idempotent (restarts the service if it is not running).
    #[tool(name = "database_sync_enable")]
    async fn database_sync_enable(
        &self,
        Parameters(a): Parameters<DatabaseArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        result(
            riptide_platform::sync::sync_enable(&self.platform, &a.database_id, None, &Quiet).await,
        )
    }

    /// Create an app folder from a template ("realtime": Rust server + React/PowerSync web UI,
    /// migrations, sync rules). Returns the app id and path. Idempotent.
    #[tool(name = "create_app")]
    async fn create_app(
        &self,
        Parameters(a): Parameters<CreateAppArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let dir = a.directory.map(PathBuf::from);
        result(
            riptide_platform::app::create_app(
                &self.platform,
                &a.name,
                a.template.as_deref().unwrap_or("realtime"),
                dir.as_deref(),
            )
            .await,
        )
    }

    /// Connect an app to a database with sync enabled: writes the app's .env (database URLs,
    /// sync service URL, signing key, admin token; mode 0600). Idempotent.
    #[tool(name = "connect_app_to_database")]
    async fn connect_app_to_database(
        &self,
        Parameters(a): Parameters<ConnectArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        result(riptide_platform::connect::connect(&self.platform, &a.app_id, &a.database_id).await)
    }

    /// List databases, sync services and apps, and whether their processes run.
    #[tool(name = "status")]
    async fn status(&self) -> Result<CallToolResult, ErrorData> {
        result(riptide_platform::status::status(&self.platform).await)
    }

    /// Apply the app's migrations/*.sql to its database (those not applied yet).
    #[tool(name = "run_migrations")]
    async fn run_migrations(
        &self,
        Parameters(a): Parameters<AppArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        result(riptide_platform::migrate::run_migrations(&self.platform, &a.app_id).await)
    }

    /// Deploy the app's sync-rules.yaml to its sync service (validated by the service first).
    #[tool(name = "deploy_sync_rules")]
    async fn deploy_sync_rules(
        &self,
        Parameters(a): Parameters<AppArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        result(riptide_platform::rules::deploy_sync_rules(&self.platform, &a.app_id).await)
    }

    /// Regenerate the app's web/src/lib/schema.ts from the database and its sync rules.
    #[tool(name = "generate_schema")]
    async fn generate_schema(
        &self,
        Parameters(a): Parameters<AppArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        result(riptide_platform::schema::generate_schema(&self.platform, &a.app_id).await)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for RiptideMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("riptide", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Riptide builds realtime, local-first apps on Postgres. To make an app: \
                 create_database {name}, database_sync_enable {databaseId}, create_app {name, template: \"realtime\"}, \
                 connect_app_to_database {appId, databaseId}; then run_migrations and deploy_sync_rules {appId}, \
                 and `riptide dev` in the app folder.",
            )
    }
}

/// Serves MCP on stdin/stdout until the client closes it.
pub async fn serve() -> Result<()> {
    let platform = Platform::from_env()?;
    tracing::info!(home = %platform.home().display(), "riptide mcp server on stdio");
    let service = RiptideMcp::new(platform)
        .serve(rmcp::transport::stdio())
        .await
        .context("cannot start the MCP server")?;
    service.waiting().await.context("MCP server failed")?;
    Ok(())
}
