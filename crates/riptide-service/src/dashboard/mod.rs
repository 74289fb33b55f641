//! `GET /metrics` (Prometheus text, no auth), `GET /dashboard` (one self-contained HTML page
//! drawing live SVG charts) and `GET /dashboard/data.json` (what the page polls), all computed
//! from [`ServiceMetrics`](crate::metrics::ServiceMetrics), the replicator's progress and the
//! deployments in storage.
//!
//! Access: with `api.dashboard_tokens` configured, `data.json` needs one of them
//! (`Authorization: Bearer <token>` or `?token=`), and the page asks for it. These are
//! read-only credentials apart from the admin tokens (`api.tokens`), which the dashboard never
//! accepts: a token that may travel in a URL must not deploy rules. Without dashboard tokens,
//! `data.json` answers loopback clients only (peer address from axum's `ConnectInfo`; without
//! it, nobody) — or nobody when admin tokens are configured, so that a service with credentials
//! is not opened by a default (behind a proxy on the same machine every client is loopback).
//! Neither shows secrets or row values: counters, LSNs, op ids, the slot and table names.

use std::net::SocketAddr;

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use riptide_protocol::OpId;
use riptide_storage::{Deployment, DeploymentState};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::token_from_header;
use crate::metrics::{names, parse_exposition, seconds_since};
use crate::state::AppState;

/// The page, with its CSS and JS inline (works offline, no external resources).
pub const PAGE: &str = include_str!("page.html");

/// `api.tokens` or `api.dashboard_tokens` of the config. Never printed.
#[derive(Clone, Default)]
pub struct ApiTokens(Vec<String>);

impl ApiTokens {
    /// Empty strings are ignored.
    pub fn new(tokens: impl IntoIterator<Item = String>) -> ApiTokens {
        ApiTokens(tokens.into_iter().filter(|t| !t.is_empty()).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `candidate` is one of the tokens (comparison time does not depend on where
    /// the bytes differ).
    pub fn accepts(&self, candidate: &str) -> bool {
        self.0
            .iter()
            .fold(false, |found, t| found | constant_time_eq(t, candidate))
    }
}

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiTokens({} configured)", self.0.len())
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a dashboard request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DashboardError {
    /// Dashboard tokens are configured and none (or a wrong one) came with the request.
    #[error(
        "a dashboard token from api.dashboard_tokens is required (admin tokens are not accepted)"
    )]
    Unauthorized,
    /// Admin tokens are configured but no dashboard tokens.
    #[error(
        "the dashboard is closed: this service has api.tokens but no api.dashboard_tokens \
         (read-only tokens for the dashboard; admin tokens are not accepted)"
    )]
    NoDashboardTokens,
    /// No tokens are configured and the client is not on this machine.
    #[error(
        "the dashboard is served to loopback clients only; configure api.dashboard_tokens to open it to others"
    )]
    NotLoopback,
}

impl IntoResponse for DashboardError {
    fn into_response(self) -> Response {
        let (status, code) = match self {
            DashboardError::Unauthorized => (StatusCode::UNAUTHORIZED, "PSYNC_S2106"),
            DashboardError::NoDashboardTokens => {
                (StatusCode::FORBIDDEN, "RIPTIDE_DASHBOARD_CLOSED")
            }
            DashboardError::NotLoopback => (StatusCode::FORBIDDEN, "RIPTIDE_DASHBOARD_FORBIDDEN"),
        };
        let body = json!({ "error": {
            "name": status.canonical_reason().unwrap_or("Error"),
            "code": code,
            "status": status.as_u16(),
            "description": self.to_string(),
        }});
        let mut response = (status, Json(body)).into_response();
        if self == DashboardError::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: Option<String>,
}

fn is_loopback(peer: Option<&ConnectInfo<SocketAddr>>) -> bool {
    peer.is_some_and(|ConnectInfo(addr)| match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        std::net::IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    })
}

/// Dashboard tokens configured: one must come in the header or the query. None configured:
/// loopback only, or nobody when admin tokens are configured.
fn authorize(
    state: &AppState,
    peer: Option<&ConnectInfo<SocketAddr>>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(), DashboardError> {
    let options = &state.inner.options;
    let tokens = &options.dashboard_tokens;
    if tokens.is_empty() {
        return if !options.api_tokens.is_empty() {
            Err(DashboardError::NoDashboardTokens)
        } else if is_loopback(peer) {
            Ok(())
        } else {
            Err(DashboardError::NotLoopback)
        };
    }
    let given = token_from_header(headers).ok().or(query);
    match given {
        Some(t) if tokens.accepts(t) => Ok(()),
        _ => Err(DashboardError::Unauthorized),
    }
}

/// `GET /metrics`: every series in the Prometheus text format. No auth, like the official
/// service's Prometheus port: it holds counters only.
pub async fn prometheus(State(state): State<AppState>) -> Response {
    let text = state.metrics().render(state.open_streams());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// `GET /dashboard`: the page. With tokens configured it is served to anyone (it holds no
/// data and asks for a token); otherwise to loopback clients only.
pub async fn page(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Response {
    let peer = peer.map(|Extension(p)| p);
    let options = &state.inner.options;
    let no_tokens = options.api_tokens.is_empty() && options.dashboard_tokens.is_empty();
    if no_tokens && !is_loopback(peer.as_ref()) {
        return DashboardError::NotLoopback.into_response();
    }
    let mut response = PAGE.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Nothing but the page's own inline code and requests to this origin.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /dashboard/data.json`.
pub async fn data(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Response, DashboardError> {
    let peer = peer.map(|Extension(p)| p);
    let query = query.map(|Query(q)| q).unwrap_or_default();
    authorize(&state, peer.as_ref(), &headers, query.token.as_deref())?;
    let body = snapshot(&state).await;
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// What `data.json` answers.
#[derive(Debug, Serialize)]
pub struct DashboardData {
    pub service: ServiceInfo,
    pub connections: Connections,
    pub sync: SyncCounters,
    /// `null` when replication does not run in this process.
    pub replication: Option<Replication>,
    /// The deployment serving clients; `null` before the first snapshot completes.
    pub deployment: Option<DeploymentInfo>,
    /// A deployment replicating its initial snapshot, if any.
    pub processing_deployment: Option<DeploymentInfo>,
    /// Set when storage could not be read (generic text; the cause is logged).
    pub storage_error: Option<&'static str>,
    /// The `riptide serve` processes of the storage; `null` when not known here.
    pub nodes: Option<Vec<crate::ClusterNode>>,
}

#[derive(Debug, Serialize)]
pub struct ServiceInfo {
    pub name: &'static str,
    pub version: &'static str,
    pub uptime_seconds: f64,
    /// Server time, milliseconds since the Unix epoch.
    pub now_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct Connections {
    pub open: u64,
    pub max: usize,
    pub opened_total: u64,
    pub closed_total: u64,
    pub auth_failures_total: u64,
}

#[derive(Debug, Serialize)]
pub struct SyncCounters {
    pub lines_sent_total: u64,
    pub ops_sent_total: u64,
    pub bytes_sent_total: u64,
    pub checkpoints_sent_total: u64,
    pub write_checkpoints_total: u64,
}

#[derive(Debug, Serialize)]
pub struct Replication {
    pub transactions_total: u64,
    pub rows_total: u64,
    /// `null` until the source's WAL position was sampled.
    pub lag_bytes: Option<u64>,
    /// `null` before the first commit.
    pub seconds_since_commit: Option<f64>,
    pub source_wal_lsn: Option<String>,
    pub last_received_lsn: String,
    pub last_committed_lsn: String,
    pub snapshot: SnapshotProgress,
    /// `false` while replication keeps failing (then `error` says on what).
    pub healthy: bool,
    pub error: Option<String>,
    /// Seconds since the failures in a row began.
    pub failing_for_seconds: Option<f64>,
    pub failures_total: u64,
    pub slot_invalidations_total: u64,
}

#[derive(Debug, Serialize)]
pub struct SnapshotProgress {
    pub running: bool,
    /// Table being copied (schema-qualified).
    pub table: Option<String>,
    /// Rows copied of that table.
    pub rows: u64,
}

#[derive(Debug, Serialize)]
pub struct DeploymentInfo {
    pub id: i64,
    pub state: &'static str,
    pub slot_name: String,
    pub snapshot_done: bool,
    /// `null`: waiting for the first checkpoint.
    pub checkpoint: Option<CheckpointInfo>,
}

#[derive(Debug, Serialize)]
pub struct CheckpointInfo {
    pub op_id: OpId,
    pub lsn: String,
}

impl From<Deployment> for DeploymentInfo {
    fn from(d: Deployment) -> Self {
        DeploymentInfo {
            id: d.id,
            state: match d.state {
                DeploymentState::Processing => "processing",
                DeploymentState::Active => "active",
                DeploymentState::Stop => "stopping",
                DeploymentState::Terminated => "terminated",
            },
            slot_name: d.slot_name,
            snapshot_done: d.snapshot_done,
            checkpoint: d.checkpoint.map(|c| CheckpointInfo {
                op_id: c.op_id,
                lsn: c.lsn.to_string(),
            }),
        }
    }
}

/// Reads everything the dashboard shows: the rendered metrics (one source with `/metrics`),
/// the replicator's LSNs and the deployments.
pub async fn snapshot(state: &AppState) -> DashboardData {
    let metrics = state.metrics();
    let text = metrics.render(state.open_streams());
    let values = parse_exposition(&text);
    let get = |name: &str| -> u64 {
        // Counters are whole numbers; saturating float → int.
        values.get(name).copied().unwrap_or(0.0).max(0.0) as u64
    };
    let replication = metrics.replication().map(|r| Replication {
        transactions_total: get(names::REPLICATION_TRANSACTIONS),
        rows_total: get(names::REPLICATION_ROWS),
        lag_bytes: metrics.lag_bytes(&r),
        seconds_since_commit: seconds_since(r.last_commit),
        source_wal_lsn: metrics.source_lsn().map(|l| l.to_string()),
        last_received_lsn: r.last_received_lsn.to_string(),
        last_committed_lsn: r.last_committed_lsn.to_string(),
        snapshot: SnapshotProgress {
            running: r.snapshot_table.is_some(),
            table: r.snapshot_table,
            rows: r.snapshot_rows,
        },
        healthy: r.error.is_none(),
        error: r.error,
        failing_for_seconds: seconds_since(r.failing_since),
        failures_total: r.failures,
        slot_invalidations_total: r.slot_invalidations,
    });
    let storage = &state.inner.storage;
    let mut storage_error = None;
    let active = storage.active_deployment().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "dashboard cannot read the active deployment");
        storage_error = Some("cannot read deployments from storage");
        None
    });
    let processing = storage.processing_deployment().await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "dashboard cannot read the processing deployment");
        storage_error = Some("cannot read deployments from storage");
        None
    });
    let nodes = match &state.cluster {
        Some(view) => view.nodes().await.map(Some).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "dashboard cannot read the nodes");
            storage_error = Some("cannot read the nodes from storage");
            None
        }),
        None => None,
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    DashboardData {
        service: ServiceInfo {
            name: "riptide",
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: metrics.uptime().as_secs_f64(),
            now_ms,
        },
        connections: Connections {
            open: get(names::SYNC_STREAMS_OPEN),
            max: state.limits().max_concurrent_connections,
            opened_total: get(names::SYNC_STREAMS_OPENED),
            closed_total: get(names::SYNC_STREAMS_CLOSED),
            auth_failures_total: get(names::AUTH_FAILURES),
        },
        sync: SyncCounters {
            lines_sent_total: get(names::SYNC_LINES_SENT),
            ops_sent_total: get(names::SYNC_OPS_SENT),
            bytes_sent_total: get(names::SYNC_BYTES_SENT),
            checkpoints_sent_total: get(names::SYNC_CHECKPOINTS_SENT),
            write_checkpoints_total: get(names::WRITE_CHECKPOINTS_CREATED),
        },
        replication,
        deployment: active.map(DeploymentInfo::from),
        processing_deployment: processing.map(DeploymentInfo::from),
        storage_error,
        nodes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = ApiTokens::new(["a1".to_owned(), String::new(), "b2".to_owned()]);
        assert!(t.accepts("a1") && t.accepts("b2"));
        assert!(!t.accepts("") && !t.accepts("a") && !t.accepts("a12"));
        assert!(ApiTokens::new([String::new()]).is_empty());
        assert_eq!(format!("{t:?}"), "ApiTokens(2 configured)");
    }

    #[test]
    fn loopback() {
        let peer = |s: &str| Some(ConnectInfo(s.parse::<SocketAddr>().unwrap()));
        assert!(is_loopback(peer("127.0.0.1:1").as_ref()));
        assert!(is_loopback(peer("[::1]:1").as_ref()));
        assert!(is_loopback(peer("[::ffff:127.0.0.1]:1").as_ref()));
        assert!(!is_loopback(peer("10.0.0.1:1").as_ref()));
        assert!(!is_loopback(peer("[2001:db8::1]:1").as_ref()));
        assert!(!is_loopback(None));
    }
}
