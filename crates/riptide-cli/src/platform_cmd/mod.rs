//! The platform subcommands: `create-database`, `sync enable|deploy-files`, `create-app`,
//! `connect`, `status`, `stop`, `schema`, `migrate`, `deploy-rules`. Each is a thin wrapper
//! over `riptide_platform` printing a short human summary, or the result as JSON with `--json`.

mod dev;
mod output;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use riptide_platform::{Platform, app, connect, database, migrate, rules, schema, status, sync};
use serde::Serialize;

pub use dev::{DevOptions, demo, dev};
pub use output::Spinner;

/// `riptide sync …`.
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Enable sync on a database: publication, storage database, keys, config, and a managed
    /// `riptide serve` (started, or restarted if it is not running).
    Enable {
        /// Database id or name.
        database: String,
        /// The service's port (default: a free port).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Write a Dockerfile, fly.toml and config for running the database's sync service elsewhere.
    DeployFiles {
        /// Database id or name.
        database: String,
        /// Output folder (default: RIPTIDE_HOME/sync/<id>/deploy).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// A platform subcommand with its arguments.
#[derive(Debug)]
pub enum PlatformCommand {
    CreateDatabase {
        name: String,
        server_url: Option<String>,
    },
    Sync(SyncCommand),
    CreateApp {
        name: String,
        template: String,
        dir: Option<PathBuf>,
    },
    Connect {
        app: String,
        database: String,
    },
    Status,
    Stop {
        id: Option<String>,
        all: bool,
    },
    Schema {
        app: Option<String>,
    },
    Migrate {
        app: Option<String>,
    },
    DeployRules {
        app: Option<String>,
    },
}

/// Runs a platform subcommand, printing its result (JSON on stdout with `json`).
pub async fn run(command: PlatformCommand, json: bool) -> Result<()> {
    let platform = Platform::from_env()?;
    let spinner = Spinner::new(!json);
    let p = &platform;
    match command {
        PlatformCommand::CreateDatabase { name, server_url } => {
            // Passwords are never printed (`connect` writes them to `.env`).
            let info = database::create_database(p, &name, server_url.as_deref(), &spinner)
                .await?
                .redacted();
            emit(json, &info, || output::database_text(&info))
        }
        PlatformCommand::Sync(SyncCommand::Enable { database, port }) => {
            let info = sync::sync_enable(p, &database, port, &spinner).await?;
            emit(json, &info, || output::sync_text(&info))
        }
        PlatformCommand::Sync(SyncCommand::DeployFiles { database, out }) => {
            let info = sync::deploy_files(p, &database, out.as_deref()).await?;
            emit(json, &info, || output::deploy_files_text(&info))
        }
        PlatformCommand::CreateApp {
            name,
            template,
            dir,
        } => {
            let info = app::create_app(p, &name, &template, dir.as_deref()).await?;
            emit(json, &info, || output::app_text(&info))
        }
        PlatformCommand::Connect { app, database } => {
            let info = connect::connect(p, &app, &database).await?;
            emit(json, &info, || output::connect_text(&info))
        }
        PlatformCommand::Status => {
            let info = status::status(p).await?;
            emit(json, &info, || output::status_text(&info))
        }
        PlatformCommand::Stop { id, all } => {
            let info = status::stop(p, id.as_deref(), all).await?;
            emit(json, &info, || output::stop_text(&info))
        }
        PlatformCommand::Schema { app } => {
            let info = schema::generate_schema(p, &app_key(app)?).await?;
            emit(json, &info, || output::schema_text(&info))
        }
        PlatformCommand::Migrate { app } => {
            let info = migrate::run_migrations(p, &app_key(app)?).await?;
            emit(json, &info, || output::migrations_text(&info))
        }
        PlatformCommand::DeployRules { app } => {
            let info = rules::deploy_sync_rules(p, &app_key(app)?).await?;
            emit(json, &info, || output::rules_text(&info))
        }
    }
}

/// The app given, or the app whose folder holds the current directory.
pub fn app_key(app: Option<String>) -> Result<String> {
    if let Some(a) = app {
        return Ok(a);
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    app_root(&cwd)
        .map(|p| p.display().to_string())
        .with_context(|| {
            format!(
                "{} is not inside an app folder (one with sync-rules.yaml); give the app id or name",
                cwd.display()
            )
        })
}

/// The nearest ancestor of `dir` holding `sync-rules.yaml`.
pub fn app_root(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join("sync-rules.yaml").is_file())
        .map(Path::to_path_buf)
}

fn emit<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", text());
    }
    Ok(())
}
