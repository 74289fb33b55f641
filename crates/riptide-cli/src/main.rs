//! The `riptide` binary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use riptide_cli::platform_cmd::{self, PlatformCommand};
use riptide_server::config::ServeConfig;
use riptide_server::{embedded, serve};

/// Riptide: realtime, local-first apps on Postgres.
#[derive(Debug, Parser)]
#[command(
    name = "riptide",
    version,
    about = "Riptide: realtime, local-first apps on Postgres"
)]
struct Cli {
    /// Print results as JSON on stdout (platform subcommands).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sync service. Without --config: on an embedded Postgres with a demo schema.
    Serve {
        /// A PowerSync-style config file (powersync.yaml keys).
        #[arg(long, short, env = "POWERSYNC_CONFIG_PATH")]
        config: Option<PathBuf>,
        /// HTTP port (overrides the config's `port`; default 8080; 0: any free port, which the
        /// log names).
        #[arg(long, short)]
        port: Option<u16>,
        /// Address to listen on (overrides the config's `host`; default 0.0.0.0 with a
        /// config, 127.0.0.1 for the embedded demo).
        #[arg(long, visible_alias = "listen")]
        host: Option<std::net::IpAddr>,
        /// What this process does: `all` (replicates while it holds the replication lease,
        /// and serves), `replicator` (competes for the lease; a standby until it holds it) or
        /// `api` (serves streams and write checkpoints from storage, never replicates).
        #[arg(long, default_value = "all")]
        role: riptide_server::roles::Role,
    },
    /// Print a token for the embedded demo service.
    Token {
        /// The user id (`sub`).
        #[arg(long, default_value = "demo")]
        user: String,
        /// Lifetime in seconds (at most one day).
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        ttl: u64,
    },
    /// Tools for sync rules authors: check a rules file, explain what a user gets.
    Rules {
        #[command(subcommand)]
        command: riptide_cli::rules_cmd::RulesCommand,
    },
    /// Create a database: on Riptide's local Postgres cluster, or with --server-url on a server.
    CreateDatabase {
        /// A lowercase slug (a-z, 0-9, - and _).
        name: String,
        /// An existing server (postgres://user:password@host:port/postgres) to create it on.
        #[arg(long)]
        server_url: Option<String>,
    },
    /// Enable sync on a database, or write deploy files for its sync service.
    Sync {
        #[command(subcommand)]
        command: platform_cmd::SyncCommand,
    },
    /// Create an app from a template built into riptide.
    CreateApp {
        /// A lowercase slug: the folder and package names.
        name: String,
        #[arg(long, default_value = "realtime")]
        template: String,
        /// The parent folder (default: the current directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Connect an app to a database with sync: writes the app's .env (mode 0600).
    Connect {
        /// App id, name or folder.
        app: String,
        /// Database id or name.
        database: String,
    },
    /// Show databases, sync services and apps, and what runs; with --config, the `riptide
    /// serve` processes of that config's storage and who holds the replication lease.
    Status {
        /// A config file: list the nodes of its storage.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Stop a sync service (by its id or its database's), or with --all every service and the
    /// local cluster.
    Stop {
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Generate web/src/lib/schema.ts from the database and the app's sync rules.
    Schema {
        /// App id, name or folder (default: the app around the current directory).
        app: Option<String>,
    },
    /// Run the app around the current directory: database, sync service, the app's process and
    /// the Vite dev server, with one labelled log; re-applies migrations and rules on change.
    Dev {
        #[command(flatten)]
        options: platform_cmd::DevOptions,
    },
    /// The quickest start: database, sync, app `demo` (in RIPTIDE_HOME/apps/demo), connect, dev.
    Demo {
        #[command(flatten)]
        options: platform_cmd::DevOptions,
    },
    /// Serve the platform tools over MCP on stdio (for AI agents; see docs/mcp.md).
    Mcp,
    /// Apply the app's migrations/ to its database.
    Migrate {
        /// App id, name or folder (default: the app around the current directory).
        app: Option<String>,
    },
    /// Deploy the app's sync-rules.yaml to its sync service.
    DeployRules {
        /// App id, name or folder (default: the app around the current directory).
        app: Option<String>,
    },
    /// Compact bucket storage now (superseded ops become MOVE, leading runs CLEAR); `serve`
    /// also does it in the background.
    Compact {
        /// The service's config file (names the storage).
        #[arg(long, short, env = "POWERSYNC_CONFIG_PATH")]
        config: PathBuf,
        /// Only this bucket (full name); repeat for more.
        #[arg(long = "bucket")]
        buckets: Vec<String>,
        /// Every bucket, also those without a superseded op since their last compaction.
        #[arg(long)]
        all: bool,
    },
}

fn main() -> ExitCode {
    // Before any HTTP client: reqwest's HTTPS uses rustls' process default provider.
    riptide_pg::install_default_crypto_provider();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Rules { command } = cli.command {
        return match runtime.block_on(riptide_cli::rules_cmd::run(command)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let json = cli.json;
    let platform = |c| platform_cmd::run(c, json);
    match cli.command {
        Command::CreateDatabase { name, server_url } => {
            platform(PlatformCommand::CreateDatabase { name, server_url }).await
        }
        Command::Sync { command } => platform(PlatformCommand::Sync(command)).await,
        Command::CreateApp {
            name,
            template,
            dir,
        } => {
            platform(PlatformCommand::CreateApp {
                name,
                template,
                dir,
            })
            .await
        }
        Command::Connect { app, database } => {
            platform(PlatformCommand::Connect { app, database }).await
        }
        Command::Status { config: None } => platform(PlatformCommand::Status).await,
        Command::Status {
            config: Some(config),
        } => riptide_cli::nodes_cmd::main(&config, json).await,
        Command::Dev { options } => platform_cmd::dev(options).await,
        Command::Demo { options } => platform_cmd::demo(options).await,
        Command::Mcp => {
            riptide_server::logging::init(&riptide_server::config::Logging {
                level: "info".into(),
                json: false,
            });
            riptide_cli::mcp::serve().await
        }
        Command::Stop { id, all } => platform(PlatformCommand::Stop { id, all }).await,
        Command::Schema { app } => platform(PlatformCommand::Schema { app }).await,
        Command::Migrate { app } => platform(PlatformCommand::Migrate { app }).await,
        Command::DeployRules { app } => platform(PlatformCommand::DeployRules { app }).await,
        Command::Compact {
            config,
            buckets,
            all,
        } => riptide_cli::compact_cmd::main(&config, buckets, all, json).await,
        Command::Serve {
            config,
            port,
            host,
            role,
        } => {
            // Failpoints from `FAILPOINTS` (only in builds with the `failpoints` feature).
            riptide_server::failpoints::setup();
            run_serve(config, port, host, role).await
        }
        Command::Token { user, ttl } => {
            let home = riptide_platform::home::riptide_home();
            let key = embedded::DemoKey::load_or_create(&home.join("demo-signing-key"))?;
            println!("{}", key.token(&user, ttl)?);
            Ok(())
        }
        Command::Rules { .. } => Ok(()), // handled in `main`
    }
}

async fn run_serve(
    config: Option<PathBuf>,
    port: Option<u16>,
    host: Option<std::net::IpAddr>,
    role: riptide_server::roles::Role,
) -> Result<()> {
    let (mut config, demo) = match config {
        Some(path) => {
            let mut config = ServeConfig::load(&path)?;
            if let Some(port) = port {
                config.port = port;
            }
            riptide_server::logging::init(&config.logging);
            (config, None)
        }
        None => {
            let logging = riptide_server::config::Logging {
                level: "info".into(),
                json: false,
            };
            riptide_server::logging::init(&logging);
            let env = embedded::Embedded::start(&riptide_platform::home::riptide_home()).await?;
            let config = env.serve_config(port.unwrap_or(8080));
            (config, Some(env))
        }
    };
    if let Some(host) = host {
        config.host = host;
    }
    config.role = role;
    let running = serve::start(config).await?;
    if let Some(env) = &demo {
        let token = env
            .key
            .token("demo", 3600)
            .context("cannot sign a demo token")?;
        println!(
            "\nRiptide sync service: http://localhost:{port}\n\
             Dashboard:            http://localhost:{port}/dashboard\n\
             Embedded Postgres:    {db}{password}\n\
             Demo token (user \"demo\", 1 h; `riptide token --user NAME` for others):\n  {token}\n\n\
             Try it:\n  curl -N http://localhost:{port}/sync/stream -H \"Authorization: Token {token}\" \\\n    -H 'Content-Type: application/json' -d '{{}}'\n",
            port = running.port,
            // The password is not printed: it is in its 0600 file.
            db = riptide_pg::uri::redact(&env.demo_url()),
            password = match &env.password {
                Some(_) => format!(
                    "\n                      (password in {})",
                    env.home.join(embedded::PASSWORD_FILE).display()
                ),
                None => String::new(),
            },
        );
    }
    let cancel = running.cancel.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        cancel.cancel();
    });
    let result = running.task.await.context("service task panicked")?;
    if let Some(env) = demo
        && let Err(e) = env.cluster.stop(true)
    {
        tracing::warn!(error = %e, "could not stop the embedded Postgres");
    }
    Ok(result?)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
