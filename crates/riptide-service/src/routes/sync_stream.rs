//! `POST /sync/stream`: authenticates, parses the request, waits briefly for active sync rules,
//! takes a connection slot and answers a stream of sync lines fed by a session task. Dropping
//! the response body (client gone) ends the task. The body is compressed per
//! `Accept-Encoding` ([`crate::compression`]), flushed after every line.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use riptide_protocol::{ErrorCode, StreamingSyncRequest};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument;

use crate::auth::{AuthenticatedUser, VerifiedToken};
use crate::compression::{CompressedLines, Encoding, LineEncoder};
use crate::error::{ApiError, error_chain};
use crate::metrics::Rejected;
use crate::session::driver::{Session, SessionError, elapsed_ms};
use crate::session::framing::{LineFormat, LineSender};
use crate::session::keepalive;
use crate::slots::StreamSlot;
use crate::state::AppState;

pub async fn sync_stream(
    State(state): State<AppState>,
    AuthenticatedUser(user): AuthenticatedUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: StreamingSyncRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StreamingSyncRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            // serde_json's recursion limit (docs/security.md): counted like RSocket payloads.
            if e.to_string().starts_with("recursion limit exceeded") {
                state.metrics().rejected(Rejected::TooDeep);
            }
            ApiError::Validation(format!("invalid sync request: {e}"))
        })?
    };
    check_client_id(&state, request.client_id.as_deref())?;
    wait_for_rules(&state).await?;
    let slot = state.take_stream_slot(&user.user_id)?;

    let format = LineFormat::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let user_agent = headers
        .get("x-user-agent")
        .or_else(|| headers.get(header::USER_AGENT))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let keepalive_interval = state.inner.options.keepalive_interval;
    let StartedSession { lines: rx, .. } = start_session(StreamStart {
        state,
        user,
        request,
        format,
        user_agent,
        keepalive_interval,
        slot: Some(slot),
        transport: "http",
    });

    let mut encoding = Encoding::negotiate(
        headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let encoder = match encoding {
        Encoding::Identity => None,
        _ => LineEncoder::new(encoding)
            .inspect_err(|e| {
                // Only a failed zstd context allocation gets here: answer uncompressed.
                tracing::warn!(error = %e, "could not start compression");
                encoding = Encoding::Identity;
            })
            .ok(),
    };
    let lines = ReceiverStream::new(rx);
    let mut response = match encoder {
        Some(encoder) => Body::from_stream(CompressedLines::new(lines, encoder)).into_response(),
        None => Body::from_stream(lines.map(Ok::<_, Infallible>)).into_response(),
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(value) = encoding.content_encoding() {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(value));
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    Ok(response)
}

/// Refuses a `client_id` longer than `max_client_id_bytes` (`PSYNC_S2001`): it is stored with
/// write checkpoints and kept in every session.
pub(crate) fn check_client_id(state: &AppState, client_id: Option<&str>) -> Result<(), ApiError> {
    let limit = state.limits().max_client_id_bytes;
    match client_id {
        Some(id) if id.len() > limit => {
            state.metrics().rejected(Rejected::ClientIdTooLong);
            Err(ApiError::Validation(format!(
                "client_id is longer than {limit} bytes"
            )))
        }
        _ => Ok(()),
    }
}

/// Waits up to `no_rules_wait` for an active deployment (a freshly started service may still be
/// activating its first one), then answers `PSYNC_S2302`.
pub(crate) async fn wait_for_rules(state: &AppState) -> Result<(), ApiError> {
    let mut rx = state.inner.rules.clone();
    let wait = state.inner.options.no_rules_wait;
    let found = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await;
    match found {
        Ok(Ok(_)) => Ok(()),
        _ => Err(ApiError::NoSyncRules),
    }
}

/// What a transport needs to start a sync stream session.
pub(crate) struct StreamStart {
    pub state: AppState,
    pub user: VerifiedToken,
    pub request: StreamingSyncRequest,
    pub format: LineFormat,
    pub user_agent: String,
    /// Mean interval of `token_expires_in` lines; the expiry warning and the final `0` line
    /// are sent regardless.
    pub keepalive_interval: Duration,
    /// The stream's slots, released when the session ends (`None`: held by the transport).
    pub slot: Option<StreamSlot>,
    /// For logs: `http` or `websocket`.
    pub transport: &'static str,
}

/// A running session: its encoded lines, and how it ended once `lines` is exhausted.
pub(crate) struct StartedSession {
    pub lines: mpsc::Receiver<Bytes>,
    pub task: JoinHandle<StreamEnd>,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    /// The token expired (`{"token_expires_in":0}` was the last line) or the service shuts
    /// down: the stream ends normally and the client reconnects.
    Completed,
    /// The reader went away.
    Disconnected,
    /// The stream failed with this PowerSync error (code, client-facing description).
    Failed(ErrorCode, String),
}

/// Spawns the session task of one sync stream (the same for every transport): the
/// [`Session`] loop, the `token_expires_in` lines, and the end when the reader goes away or
/// the service shuts down.
pub(crate) fn start_session(start: StreamStart) -> StartedSession {
    let StreamStart {
        state,
        user,
        request,
        format,
        user_agent,
        keepalive_interval,
        slot,
        transport,
    } = start;
    let (tx, rx) = LineSender::channel(format);
    let tx = tx.with_metrics(state.metrics().clone());
    // The HTTP body is a byte stream: lines sent together may share a chunk. RSocket sends one
    // payload per line.
    let tx = if transport == "http" {
        tx.batched()
    } else {
        tx
    };
    let open_stream = state.metrics().stream_opened();
    let client_id = request.client_id.clone().unwrap_or_default();
    let span = tracing::info_span!("sync_stream", user_id = %user.user_id, client_id = %client_id, transport);
    let shutdown = state.shutdown.clone();
    let ops_sent = Arc::new(AtomicU64::new(0));
    let session = Session {
        state,
        user: user.clone(),
        request,
        tx: tx.clone(),
        ops_sent: ops_sent.clone(),
    };

    let task = tokio::spawn(
        async move {
            let _slot = slot;
            let _open_stream = open_stream;
            let started = Instant::now();
            tracing::info!(user_agent = %user_agent, "sync stream connected");
            let (outcome, end): (&str, StreamEnd) = tokio::select! {
                result = session.run() => match result {
                    Ok(()) => ("ended", StreamEnd::Completed),
                    Err(SessionError::Disconnected(_)) => ("client disconnected", StreamEnd::Disconnected),
                    Err(SessionError::Limit(e)) => {
                        tracing::warn!(code = %e.code(), error = %e, "sync stream limit exceeded");
                        ("limit exceeded", StreamEnd::Failed(e.code(), e.to_string()))
                    }
                    Err(SessionError::NoRules) => (
                        "no rules",
                        StreamEnd::Failed(ErrorCode::S2302, ApiError::NoSyncRules.to_string()),
                    ),
                    Err(e) => {
                        tracing::error!(error = %error_chain(&e), "sync stream failed");
                        ("error", StreamEnd::Failed(ErrorCode::S1001, "Internal server error".to_owned()))
                    }
                },
                result = keepalive::run(&user, keepalive_interval, &tx) => match result {
                    Ok(()) => ("token expired", StreamEnd::Completed),
                    Err(_) => ("client disconnected", StreamEnd::Disconnected),
                },
                () = tx.closed() => ("client disconnected", StreamEnd::Disconnected),
                () = shutdown.cancelled() => ("shutdown", StreamEnd::Completed),
            };
            tracing::info!(
                reason = outcome,
                duration_ms = elapsed_ms(started),
                ops_sent = ops_sent.load(Ordering::Relaxed),
                "sync stream disconnected"
            );
            end
        }
        .instrument(span),
    );
    StartedSession { lines: rx, task }
}
