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
//! - `POST /api/admin/v1/{diagnostics,validate,schema,execute-sql,reprocess}` and
//!   `POST /api/sync-rules/v1/reprocess`: PowerSync's admin API v1 ([`routes::admin_v1`], behind
//!   `api.tokens`, backed by an [`InstanceAdmin`]).
//! - `GET /write-checkpoint.json`: the legacy write checkpoint ([`routes::legacy_checkpoint`]).
//! - `GET /metrics` (Prometheus text, no auth) and `GET /dashboard` (+ `/dashboard/data.json`):
//!   see [`metrics`] and [`dashboard`].
//!
//! Across processes on one storage, [`node_notifications`] hands what the others committed
//! (from a `riptide_storage::CheckpointListener`) to this node's checkpoint bus, write
//! checkpoint notices and rules.
//!
//! Auth is JWT per docs/protocol.md §6 ([`auth::KeyStore`]). The sync routes and probes answer
//! CORS preflights (any origin, as the official service); the admin API, the dashboard and
//! `/metrics` do not. What each endpoint trusts and every limit on what the network can make the
//! service hold ([`Limits`]) are in docs/security.md.
//!
//! When no sync rules are active, `/sync/stream` waits up to
//! [`ServiceOptions::no_rules_wait`] (default 5 s: a starting service may be activating its
//! first deployment) and then answers 500 `PSYNC_S2302`.

pub mod auth;
pub mod bucket_rules;
pub mod cluster_view;
pub mod compactor;
pub mod compression;
pub mod dashboard;
pub mod error;
pub mod instance_admin;
pub mod limits;
pub mod metrics;
pub mod node_metrics;
pub mod node_notifications;
pub mod routes;
pub mod rules_admin;
pub mod server;
pub mod session;
mod slots;
pub mod source;
pub mod state;
pub mod write_checkpoints;
mod write_stall;

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, Method, header};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use auth::{AuthConfig, KeyStore, SupabaseAuth};
pub use bucket_rules::BucketRules;
pub use cluster_view::{ClusterNode, ClusterView};
pub use compactor::CompactorConfig;
pub use dashboard::ApiTokens;
pub use error::ApiError;
pub use instance_admin::{InstanceAdmin, InstanceAdminError};
pub use limits::Limits;
pub use metrics::{ReplicationProgress, ReplicationSnapshot, ServiceMetrics};
pub use node_metrics::{NodeSnapshot, NodeStatus};
pub use rules_admin::{CurrentRules, RuleProblem, RulesAdmin, RulesAdminError};
pub use source::{PgSourceDatabase, SourceDatabase, SourceError};
pub use state::{ActiveRules, AppState, ServiceOptions};

/// The service's routes, ready to serve. CORS only on what the SDKs call from browsers (the
/// sync routes and the probes): the admin API, the dashboard and `/metrics` answer no
/// preflight, so no web page can read them from a visitor's browser.
pub fn router(state: AppState) -> Router {
    let sdk = Router::new()
        .route("/", get(routes::probes::root))
        .route("/sync/stream", post(routes::sync_stream::sync_stream))
        .route(
            "/write-checkpoint2.json",
            get(routes::write_checkpoint::write_checkpoint2),
        )
        .route(
            "/write-checkpoint.json",
            get(routes::legacy_checkpoint::write_checkpoint),
        )
        .route(
            "/sync/checkpoint-request",
            post(routes::write_checkpoint::checkpoint_request),
        )
        .route("/probes/startup", get(routes::probes::startup))
        .route("/probes/liveness", get(routes::probes::liveness))
        .route("/probes/readiness", get(routes::probes::readiness))
        .layer(cors());
    Router::new()
        .merge(sdk)
        .route("/metrics", get(dashboard::prometheus))
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/data.json", get(dashboard::data))
        .route("/api/sync-rules/v1/deploy", post(routes::admin::deploy))
        .route("/api/sync-rules/v1/validate", post(routes::admin::validate))
        .route("/api/sync-rules/v1/current", get(routes::admin::current))
        .route("/api/compact/v1/run", post(routes::admin::compact))
        .route(
            "/api/sync-rules/v1/reprocess",
            post(routes::admin_v1::reprocess_sync_rules),
        )
        .route(
            "/api/admin/v1/diagnostics",
            post(routes::admin_v1::diagnostics),
        )
        .route("/api/admin/v1/validate", post(routes::admin_v1::validate))
        .route("/api/admin/v1/schema", post(routes::admin_v1::schema))
        .route(
            "/api/admin/v1/execute-sql",
            post(routes::admin_v1::execute_sql),
        )
        .route("/api/admin/v1/reprocess", post(routes::admin_v1::reprocess))
        .fallback(|| async { ApiError::NotFound })
        // Bodies beyond `max_request_bytes` fail to buffer; the 413 gets the PowerSync body.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::body_limit::powersync_413,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.limits().max_request_bytes,
        ))
        // RSocket over WebSocket is accepted on every path, like the official service.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::websocket::upgrade_any_path,
        ))
        .with_state(state)
}

/// CORS as the official service configures it (on the SDK routes): any origin; allowed headers Content-Type,
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
/// Connections are served by [`server`]: header-read timeout, open-connection cap.
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
    let limits = *state.limits();
    let metrics = state.metrics().clone();
    server::serve(listener, router(state), limits, metrics, cancel).await
}
