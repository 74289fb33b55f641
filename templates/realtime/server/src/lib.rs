//! The process component of a Riptide realtime app.
//!
//! It is the app's own backend, next to the sync service:
//!
//! - accounts and sessions (`auth`): sign up, sign in, sign out, argon2 password hashes, an
//!   HttpOnly session cookie, CSRF checks, and sign-in and sign-up rate limits per client
//!   address (within the bounds of [`limits`]);
//! - PowerSync tokens (`token`): a short-lived EdDSA JWT for the signed-in user, which the sync
//!   service verifies with the matching public key;
//! - uploads (`upload`): the client's queued writes (`POST /api/sync`), checked against the
//!   database schema and the app's authorisation rules and applied in one transaction, with the
//!   conflict policy in [`merge_policy`] — the module to edit to customise conflict handling;
//! - at start-up, the app's `migrations/` ([`migrations`]) and its `sync-rules.yaml`
//!   ([`rules_deploy`]);
//! - the built UI from `web/dist` ([`static_files`]).
//!
//! [`run`] does all of it (the library is `app_server` whatever the app is called) from a [`Config`] read from the environment ([`Config::from_env`]);
//! [`prepare`] and [`router`] let tests drive the same app in-process.

pub mod auth;
pub mod config;
pub mod error;
pub mod limits;
pub mod merge_policy;
pub mod migrations;
pub mod rules_deploy;
pub mod state;
pub mod static_files;
pub mod token;
pub mod upload;

mod request_body;
mod routes;

use std::net::SocketAddr;

pub use config::{Config, ConfigError};
pub use routes::router;
pub use state::AppState;

/// Why the process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot connect to the database (DIRECT_DATABASE_URL)")]
    Connect(#[source] tokio_postgres::Error),
    #[error("cannot start the password hashing threads")]
    Threads(#[source] std::io::Error),
    #[error("cannot create the database pool")]
    Pool(#[source] deadpool_postgres::BuildError),
    #[error(transparent)]
    Migrations(#[from] migrations::MigrationError),
    #[error(transparent)]
    Catalog(#[from] upload::catalog::CatalogError),
    #[error(transparent)]
    Rules(#[from] rules_deploy::DeployError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// Runs the migrations, deploys the sync rules when they changed, reads the schema catalog and
/// returns the state the router serves.
pub async fn prepare(config: Config) -> Result<AppState, StartError> {
    migrations::run_from_url(&config.database_url, &config.app_root.join("migrations")).await?;
    rules_deploy::deploy_if_changed(&rules_deploy::Target::from_config(&config)).await?;
    AppState::connect(config).await
}

/// Starts the whole process and serves until Ctrl-C or SIGTERM.
pub async fn run(config: Config) -> Result<(), StartError> {
    let addr = format!("{}:{}", config.host, config.port);
    let state = prepare(config).await?;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(StartError::Serve)?;
    tracing::info!(addr = %local, "listening");
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .map_err(StartError::Serve)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
