//! The Riptide sync service: the axum app the official PowerSync SDKs talk to.
//!
//! - `POST /sync/stream`: NDJSON (or BSON when the client prefers it) sync lines. Each stream
//!   is a [`session::state::SessionState`] (sans-IO) driven by [`session::driver`] from storage
//!   and the checkpoint bus.
//! - RSocket over WebSocket on any path ([`routes::websocket`]): the same sessions, one BSON
//!   document per PAYLOAD frame, REQUEST_N credit honoured.
//! - `GET /write-checkpoint2.json`, `POST /sync/checkpoint-request`: write checkpoints.
//! - `GET /probes/{startup,liveness,readiness}`, `GET /`.
//! - `POST /api/sync-rules/v1/{deploy,validate}`, `GET /api/sync-rules/v1/current`: the
//!   admin API ([`routes::admin`], behind `api.tokens`, backed by a [`RulesAdmin`]);
//!   `POST /api/compact/v1/run` compacts now ([`compactor`], which also runs it in the
//!   background).
//! - `GET /metrics` (Prometheus text, no auth) and `GET /dashboard` (+ `/dashboard/data.json`):
//!   see [`metrics`] and [`dashboard`].
//!
//! Auth is JWT per docs/protocol.md §6 ([`auth::KeyStore`]); every route answers CORS preflights.
//!
//! When no sync rules are active, `/sync/stream` waits up to
//! [`ServiceOptions::no_rules_wait`] (default 5 s: a starting service may be activating its
//! first deployment) and then answers 500 `PSYNC_S2302`.

pub mod auth;
pub mod bucket_rules;
pub mod compactor;
pub mod compression;
pub mod dashboard;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod routes;
pub mod rules_admin;
pub mod session;
pub mod source;
pub mod state;
pub mod write_checkpoints;

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, Method, header};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use auth::{AuthConfig, KeyStore};
pub use bucket_rules::BucketRules;
pub use compactor::CompactorConfig;
pub use dashboard::ApiTokens;
pub use error::ApiError;
pub use limits::Limits;
pub use metrics::{ReplicationProgress, ReplicationSnapshot, ServiceMetrics};
pub use rules_admin::{CurrentRules, RuleProblem, RulesAdmin, RulesAdminError};
pub use source::{PgSourceDatabase, SourceDatabase, SourceError};
pub use state::{ActiveRules, AppState, ServiceOptions};

/// The service's routes with CORS, ready to serve.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(routes::probes::root))
        .route("/sync/stream", post(routes::sync_stream::sync_stream))
        .route(
            "/write-checkpoint2.json",
            get(routes::write_checkpoint::write_checkpoint2),
        )
        .route(
            "/sync/checkpoint-request",
            post(routes::write_checkpoint::checkpoint_request),
        )
        .route("/probes/startup", get(routes::probes::startup))
        .route("/probes/liveness", get(routes::probes::liveness))
        .route("/probes/readiness", get(routes::probes::readiness))
        .route("/metrics", get(dashboard::prometheus))
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/data.json", get(dashboard::data))
        .route("/api/sync-rules/v1/deploy", post(routes::admin::deploy))
        .route("/api/sync-rules/v1/validate", post(routes::admin::validate))
        .route("/api/sync-rules/v1/current", get(routes::admin::current))
        .route("/api/compact/v1/run", post(routes::admin::compact))
        .fallback(|| async { ApiError::NotFound })
        // RSocket over WebSocket is accepted on every path, like the official service.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::websocket::upgrade_any_path,
        ))
        .layer(cors())
        .with_state(state)
}

/// CORS as the official service configures it: any origin; allowed headers Content-Type,
/// Authorization, User-Agent, X-User-Agent; exposed Content-Type; preflight max-age 3600 s.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::USER_AGENT,
            HeaderName::from_static("x-user-agent"),
        ])
        .expose_headers([header::CONTENT_TYPE])
        .max_age(Duration::from_secs(3600))
}

/// Serves until `cancel` fires, then stops accepting, ends open sync streams and waits for
/// in-flight requests. Also samples the source's WAL position for the replication lag metric.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let state = state.with_shutdown(cancel.clone());
    tokio::spawn(metrics::sample_source_lsn(
        state.metrics().clone(),
        state.inner.source.clone(),
        cancel.clone(),
    ));
    let app = router(state);
    // The peer address lets the dashboard tell loopback clients apart.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Sync lines are small writes that must go out at once: with Nagle's algorithm a line
    // written while the previous one is unacknowledged waits for the peer's delayed ACK
    // (~40 ms on Linux).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}
