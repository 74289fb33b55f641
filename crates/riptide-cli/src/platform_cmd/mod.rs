//! The platform subcommands: `create-database`, `sync enable|deploy-files`, `create-app`,
//! `connect`, `status`, `stop`, `schema`, `migrate`, `deploy-rules`. Each is a thin wrapper
//! over `riptide_platform` printing a short human summary, or the result as JSON with `--json`.

mod dev;
mod output;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use riptide_platform::Platform;
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
    match command {
        PlatformCommand::CreateDatabase { name, server_url } => {
            let info = riptide_platform::database::create_database(
                &platform,
                &name,
                server_url.as_deref(),
                &spinner,
            )
            .await?;
            emit(json, &info, || {
                let head = if info.already {
                    format!("database {} already exists ({})", info.name, info.id)
                } else {
                    format!("created database {} ({})", info.name, info.id)
                };
                format!(
                    "{head}\n  pooled URI: {}\n  direct URI: {}\n  note: {}",
                    info.pooled_uri, info.direct_uri, info.note
                )
            })
        }
        PlatformCommand::Sync(SyncCommand::Enable { database, port }) => {
            let info =
                riptide_platform::sync::sync_enable(&platform, &database, port, &spinner).await?;
            emit(json, &info, || {
                let head = match (info.already, info.started) {
                    (false, _) => format!("sync enabled ({})", info.id),
                    (true, true) => {
                        format!("sync was already enabled ({}); service restarted", info.id)
                    }
                    (true, false) => format!("sync already enabled ({}); service running", info.id),
                };
                format!(
                    "{head}\n  service:     {}\n  publication: {}\n  config:      {}\n  log:         {}",
                    info.url,
                    info.publication,
                    info.config_path.display(),
                    info.log_path.display()
                )
            })
        }
        PlatformCommand::Sync(SyncCommand::DeployFiles { database, out }) => {
            let info =
                riptide_platform::sync::deploy_files(&platform, &database, out.as_deref()).await?;
            emit(json, &info, || {
                let verb = if info.already {
                    "already up to date"
                } else {
                    "wrote"
                };
                let files: Vec<String> = info
                    .files
                    .iter()
                    .map(|f| format!("  {}", f.display()))
                    .collect();
                format!(
                    "{verb}: deploy files in {}\n{}",
                    info.dir.display(),
                    files.join("\n")
                )
            })
        }
        PlatformCommand::CreateApp {
            name,
            template,
            dir,
        } => {
            let info =
                riptide_platform::app::create_app(&platform, &name, &template, dir.as_deref())
                    .await?;
            emit(json, &info, || {
                if info.already {
                    format!(
                        "app {} already exists ({}) in {}",
                        info.name,
                        info.id,
                        info.path.display()
                    )
                } else {
                    format!(
                        "created app {} ({}) in {}\n  next: riptide connect {} DATABASE",
                        info.name,
                        info.id,
                        info.path.display(),
                        info.name
                    )
                }
            })
        }
        PlatformCommand::Connect { app, database } => {
            let info = riptide_platform::connect::connect(&platform, &app, &database).await?;
            emit(json, &info, || {
                let head = if info.already {
                    "already connected".to_owned()
                } else {
                    format!("connected {} to {}", info.app_id, info.database_id)
                };
                let files: Vec<String> = info
                    .env_files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect();
                format!(
                    "{head}\n  wrote {} (mode 0600)\n  sync service: {}",
                    files.join(", "),
                    info.powersync_url
                )
            })
        }
        PlatformCommand::Status => {
            let info = riptide_platform::status::status(&platform).await?;
            emit(json, &info, || output::status_text(&info))
        }
        PlatformCommand::Stop { id, all } => {
            let info = riptide_platform::status::stop(&platform, id.as_deref(), all).await?;
            emit(json, &info, || {
                let mut lines = Vec::new();
                if !info.stopped.is_empty() {
                    lines.push(format!("stopped: {}", info.stopped.join(", ")));
                }
                if !info.not_running.is_empty() {
                    lines.push(format!("already stopped: {}", info.not_running.join(", ")));
                }
                if lines.is_empty() {
                    lines.push("nothing to stop".into());
                }
                lines.join("\n")
            })
        }
        PlatformCommand::Schema { app } => {
            let app = app_key(app)?;
            let info = riptide_platform::schema::generate_schema(&platform, &app).await?;
            emit(json, &info, || {
                let verb = if info.already {
                    "already up to date"
                } else {
                    "wrote"
                };
                format!(
                    "{verb}: {} ({})",
                    info.path.display(),
                    info.tables.join(", ")
                )
            })
        }
        PlatformCommand::Migrate { app } => {
            let app = app_key(app)?;
            let info = riptide_platform::migrate::run_migrations(&platform, &app).await?;
            emit(json, &info, || {
                if info.applied.is_empty() {
                    format!(
                        "migrations already applied ({})",
                        info.already_applied.len()
                    )
                } else {
                    format!("applied: {}", info.applied.join(", "))
                }
            })
        }
        PlatformCommand::DeployRules { app } => {
            let app = app_key(app)?;
            let info = riptide_platform::rules::deploy_sync_rules(&platform, &app).await?;
            emit(json, &info, || {
                if info.already {
                    format!(
                        "sync rules already deployed (deployment {})",
                        info.deployment["id"]
                    )
                } else {
                    format!("deployed sync rules (deployment {})", info.deployment["id"])
                }
            })
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
