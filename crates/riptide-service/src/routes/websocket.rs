//! RSocket over WebSocket on every path (docs/protocol.md §2): the official service accepts the
//! upgrade anywhere; the JS SDK connects to `ws(s)://host/sync/stream` and routes with RSocket
//! metadata.
//!
//! One task per socket drives a sans-IO [`ServerConnection`]. The socket keeps the TCP
//! connection's slot ([`crate::server::ConnectionSlot`]) from the upgrade on, and must send a
//! SETUP within [`Limits::setup_timeout`](crate::Limits) (else a connection ERROR and close).
//! SETUP is authenticated with the [`KeyStore`](crate::KeyStore) (failure: a connection ERROR
//! carrying `[PSYNC_S21xx] …`, then close) and takes a stream slot of the process and of the
//! user (`PSYNC_S2304` when none is free). From then on the server sends a KEEPALIVE (respond)
//! every `keepalive_ms` of the SETUP, and closes a connection that sent nothing for its
//! `lifetime_ms` (capped by `max_keepalive_lifetime`). REQUEST_STREAM with
//! `{"path":"/sync/stream"}` starts the same session as `POST /sync/stream`
//! ([`start_session`]); each line becomes a PAYLOAD(NEXT) holding one BSON document, sent only
//! while the client's REQUEST_N credit lasts. KEEPALIVE frames are answered all along. The
//! stream ends with COMPLETE (token expiry, shutdown) or an APPLICATION_ERROR with the PowerSync
//! code; CANCEL or a closed socket stops the session.

use std::future::pending;
use std::time::Duration;

use tokio::time::{Instant, Interval};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use riptide_protocol::rsocket::{
    self, Event, MAX_REQUEST_BYTES, PayloadMime, RouteMetadata, ServerConnection, Setup,
    SetupMetadata, error_code,
};
use riptide_protocol::{ErrorBody, ErrorCode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::sync_stream::check_client_id;
use super::sync_stream::{StartedSession, StreamEnd, StreamStart, start_session, wait_for_rules};
use crate::auth::{AuthError, VerifiedToken, token_from_header};
use crate::error::ApiError;
use crate::metrics::{Rejected, TimedOut};
use crate::server::{ConnectionSlot, HeldSlot};
use crate::session::framing::LineFormat;
use crate::slots::StreamSlot;
use crate::state::AppState;

/// The route of the sync stream in REQUEST_STREAM metadata.
const SYNC_STREAM_PATH: &str = "/sync/stream";
/// The shortest keepalive interval and lifetime honoured from a SETUP (a `0` would mean a
/// busy loop or an instant timeout).
const MIN_KEEPALIVE: Duration = Duration::from_millis(100);
/// WebSocket streams send no periodic `token_expires_in` lines (RSocket KEEPALIVE frames keep
/// the connection alive); only the expiry warning and the final `0`.
const NO_PERIODIC_TOKEN_LINES: Duration = Duration::from_secs(365 * 24 * 3600);

/// Middleware: a WebSocket upgrade on any path becomes an RSocket connection; other requests
/// go on to the routes.
pub async fn upgrade_any_path(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !is_websocket_upgrade(req.headers()) {
        return next.run(req).await;
    }
    let (mut parts, _body) = req.into_parts();
    // The TCP connection's slot goes with the socket (absent when the router is called
    // directly, as in-process tests do).
    let slot = parts
        .extensions
        .get::<ConnectionSlot>()
        .and_then(ConnectionSlot::take);
    let max_message = state.limits().max_request_bytes.min(MAX_REQUEST_BYTES) + 64 * 1024;
    match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(ws) => ws
            .max_message_size(max_message)
            .max_frame_size(max_message)
            .on_upgrade(move |socket| connection(socket, state, slot))
            .into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// `[PSYNC_Sxxxx] description`, the message form rsocket clients receive.
fn error_text(e: &ApiError) -> String {
    let body: ErrorBody = e.body();
    format!("[{}] {}", body.error.code, body.error.description)
}

fn coded_text(code: ErrorCode, description: &str) -> String {
    format!("[{code}] {description}")
}

/// An authenticated connection.
struct Accepted {
    user: VerifiedToken,
    user_agent: String,
    metadata_mime: PayloadMime,
    data_mime: PayloadMime,
    /// Server KEEPALIVE frames, at the SETUP's `keepalive_ms`.
    keepalive: Interval,
    /// Silence after which the peer counts as gone: the SETUP's `lifetime_ms`, capped.
    lifetime: Duration,
    _slot: StreamSlot,
}

/// The counted error text of a payload that could not be decoded.
fn decode_error(state: &AppState, what: &str, e: &rsocket::RequestError) -> String {
    if matches!(e, rsocket::RequestError::TooDeep { .. }) {
        state.metrics().rejected(Rejected::TooDeep);
    }
    coded_text(ErrorCode::S2001, &format!("invalid {what}: {e}"))
}

async fn accept_setup(state: &AppState, setup: &Setup) -> Result<Accepted, String> {
    let unsupported = |mime: &str| {
        coded_text(
            ErrorCode::S2004,
            &format!(
                "Unsupported media type {:?}",
                mime.chars().take(100).collect::<String>()
            ),
        )
    };
    let metadata_mime =
        PayloadMime::parse(&setup.metadata_mime).map_err(|_| unsupported(&setup.metadata_mime))?;
    let data_mime =
        PayloadMime::parse(&setup.data_mime).map_err(|_| unsupported(&setup.data_mime))?;
    let meta: SetupMetadata = rsocket::decode(
        metadata_mime,
        setup.payload.metadata.as_deref().unwrap_or_default(),
    )
    .map_err(|e| decode_error(state, "setup metadata", &e))?;
    let verified = async {
        let value = meta.token.as_deref().unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).map_err(|_| AuthError::MissingToken)?,
        );
        let token = token_from_header(&headers)?;
        state.keystore().verify(token).await
    }
    .await;
    // A token past `exp` (accepted within the clock-skew leeway) would get a stream that ends
    // at once with `token_expires_in: 0`. The SDK may see that stream's COMPLETE before it has
    // processed the line, and then reconnect with the same token again and again; refused here
    // with `PSYNC_S2103`, it fetches a new token instead.
    let verified = verified.and_then(|user| {
        if user.expires_in(std::time::SystemTime::now()) <= 0 {
            Err(AuthError::Expired)
        } else {
            Ok(user)
        }
    });
    let user = match verified {
        Ok(user) => user,
        Err(e) => {
            state.metrics().auth_failure(e.code());
            tracing::debug!(code = %e.code(), error = %e, "websocket setup rejected");
            return Err(error_text(&ApiError::Auth(e)));
        }
    };
    let slot = state
        .take_stream_slot(&user.user_id)
        .map_err(|e| error_text(&e))?;
    let lifetime = Duration::from_millis(u64::from(setup.lifetime_ms)).clamp(
        MIN_KEEPALIVE,
        state.limits().max_keepalive_lifetime.max(MIN_KEEPALIVE),
    );
    // At least twice per lifetime, so a live peer's answer always arrives in time.
    let every = Duration::from_millis(u64::from(setup.keepalive_ms))
        .clamp(MIN_KEEPALIVE, (lifetime / 2).max(MIN_KEEPALIVE));
    let mut keepalive = tokio::time::interval_at(Instant::now() + every, every);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Ok(Accepted {
        user,
        user_agent: meta.user_agent.unwrap_or_default(),
        metadata_mime,
        data_mime,
        keepalive,
        lifetime,
        _slot: slot,
    })
}

/// The stream being served on this connection.
struct Active {
    stream_id: u32,
    lines: mpsc::Receiver<Bytes>,
    task: Option<JoinHandle<StreamEnd>>,
    end: Option<StreamEnd>,
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// What the active stream did next.
enum Step {
    /// A line (`None`: the session's channel closed and is drained).
    Line(Option<Bytes>),
    /// The session task ended (its last lines may still be queued).
    Ended(StreamEnd),
}

fn internal_error() -> StreamEnd {
    StreamEnd::Failed(ErrorCode::S1001, "Internal server error".to_owned())
}

/// The next step of the active stream; lines are only taken when `want_line`.
async fn stream_step(active: &mut Option<Active>, want_line: bool) -> Step {
    let Some(a) = active.as_mut() else {
        return pending().await;
    };
    let task = &mut a.task;
    let lines = &mut a.lines;
    tokio::select! {
        end = async {
            match task.as_mut() {
                Some(t) => t.await.unwrap_or_else(|_| internal_error()),
                None => pending().await,
            }
        } => Step::Ended(end),
        line = lines.recv(), if want_line => Step::Line(line),
    }
}

/// Starts the sync stream for a REQUEST_STREAM, or explains why not (stream ERROR text).
async fn start_stream(
    state: &AppState,
    accepted: &Accepted,
    payload: &rsocket::Payload,
) -> Result<StartedSession, String> {
    let route: RouteMetadata = rsocket::decode(
        accepted.metadata_mime,
        payload.metadata.as_deref().unwrap_or_default(),
    )
    .map_err(|e| decode_error(state, "request metadata", &e))?;
    if route.path.as_deref() != Some(SYNC_STREAM_PATH) {
        return Err(error_text(&ApiError::NotFound));
    }
    let request = rsocket::decode_sync_request(accepted.data_mime, &payload.data)
        .map_err(|e| decode_error(state, "sync request", &e))?;
    check_client_id(state, request.client_id.as_deref()).map_err(|e| error_text(&e))?;
    wait_for_rules(state).await.map_err(|e| error_text(&e))?;
    Ok(start_session(StreamStart {
        state: state.clone(),
        user: accepted.user.clone(),
        request,
        format: LineFormat::Bson,
        user_agent: accepted.user_agent.clone(),
        keepalive_interval: NO_PERIODIC_TOKEN_LINES,
        slot: None,
        transport: "websocket",
    }))
}

/// What the connection's loop keeps between frames.
struct Conn {
    state: AppState,
    conn: ServerConnection,
    accepted: Option<Accepted>,
    active: Option<Active>,
    /// When the last message arrived (for the keepalive lifetime).
    last_received: Instant,
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => pending().await,
    }
}

async fn connection(mut socket: WebSocket, state: AppState, slot: Option<HeldSlot>) {
    // Held until the socket closes: the TCP connection counts against `max_open_connections`.
    let _slot = slot;
    let setup_deadline = Instant::now() + state.limits().setup_timeout;
    let mut c = Conn {
        conn: ServerConnection::new(state.limits().max_request_bytes.min(MAX_REQUEST_BYTES)),
        state,
        accepted: None,
        active: None,
        last_received: Instant::now(),
    };
    loop {
        while let Some(frame) = c.conn.poll_transmit() {
            if socket.send(Message::Binary(frame)).await.is_err() {
                return;
            }
        }
        if c.conn.is_closed() {
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        let stream_id = c.active.as_ref().map_or(0, |a| a.stream_id);
        let credit = c.conn.credit(stream_id);
        // Lines need credit; the end of a drained stream (COMPLETE/ERROR) does not.
        let want_line = c
            .active
            .as_ref()
            .is_some_and(|a| credit > 0 || (a.end.is_some() && a.lines.is_empty()));
        // Before SETUP: the SETUP deadline; after: the peer's lifetime since its last message.
        let silence_deadline = match &c.accepted {
            None => setup_deadline,
            Some(a) => c.last_received + a.lifetime,
        };
        let accepted = &mut c.accepted;
        let keepalive = async {
            match accepted.as_mut() {
                Some(a) => {
                    a.keepalive.tick().await;
                }
                None => pending().await,
            }
        };
        tokio::select! {
            msg = socket.recv() => {
                let bytes = match msg {
                    Some(Ok(Message::Binary(bytes))) => bytes,
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Err(e)) => {
                        // tungstenite's capacity error, behind axum's opaque error type.
                        if e.to_string().contains("Message too long") {
                            c.state.metrics().rejected(Rejected::MessageTooLarge);
                        }
                        tracing::debug!(error = %e, "websocket read failed");
                        return;
                    }
                    // Text frames are not RSocket; pings are answered by the WebSocket layer.
                    Some(Ok(_)) => {
                        c.last_received = Instant::now();
                        continue;
                    }
                };
                c.last_received = Instant::now();
                c.on_message(bytes).await;
            }
            step = stream_step(&mut c.active, want_line), if c.active.is_some() => {
                c.on_step(step, stream_id).await;
            }
            () = keepalive => c.conn.keepalive(),
            () = sleep_until(Some(silence_deadline)) => {
                let (why, text) = if c.accepted.is_none() {
                    (TimedOut::Setup, "no SETUP within the setup timeout")
                } else {
                    (TimedOut::Keepalive, "no frame received within the keepalive lifetime")
                };
                c.state.metrics().timed_out(why);
                tracing::debug!(reason = text, "rsocket connection timed out");
                c.active = None;
                c.conn.close_with(error_code::CONNECTION_ERROR, text.to_owned());
            }
            () = c.state.shutdown.cancelled(), if c.active.is_none() => {
                c.conn.close_with(error_code::CONNECTION_CLOSE, "service shutting down".to_owned());
            }
        }
    }
}

impl Conn {
    /// One received RSocket frame.
    async fn on_message(&mut self, bytes: Bytes) {
        let state = &self.state;
        match self.conn.receive(bytes) {
            Ok(Some(Event::Setup(setup))) => match accept_setup(state, &setup).await {
                Ok(a) => self.accepted = Some(a),
                Err(message) => self.conn.reject_setup(message),
            },
            Ok(Some(Event::RequestStream { stream_id, payload })) => {
                let started = match (&self.accepted, &self.active) {
                    (Some(a), None) => start_stream(state, a, &payload).await,
                    (None, _) => Err(error_text(&ApiError::Auth(AuthError::MissingToken))),
                    (Some(_), Some(_)) => Err("one sync stream per connection".to_owned()),
                };
                match started {
                    Ok(StartedSession { lines, task }) => {
                        self.active = Some(Active {
                            stream_id,
                            lines,
                            task: Some(task),
                            end: None,
                        });
                    }
                    Err(message) => {
                        self.conn
                            .fail_stream(stream_id, error_code::APPLICATION_ERROR, message);
                    }
                }
            }
            Ok(Some(Event::Cancel { stream_id })) => {
                if self
                    .active
                    .as_ref()
                    .is_some_and(|a| a.stream_id == stream_id)
                {
                    self.active = None;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "rsocket connection error");
                self.active = None;
            }
        }
    }

    /// What the active stream did next.
    async fn on_step(&mut self, step: Step, stream_id: u32) {
        match step {
            Step::Ended(end) => {
                if let Some(a) = self.active.as_mut() {
                    a.task = None;
                    a.end = Some(end);
                }
            }
            Step::Line(Some(bytes)) => {
                if let Err(e) = self.conn.send_next(stream_id, bytes) {
                    // Unreachable: lines are only taken with credit.
                    tracing::error!(error = %e, "rsocket line without credit dropped");
                }
            }
            Step::Line(None) => {
                let end = match self.active.take() {
                    Some(mut a) => match (a.end.take(), a.task.take()) {
                        (Some(end), _) => Some(end),
                        // The channel closed before the task's end was observed.
                        (None, Some(task)) => Some(task.await.unwrap_or_else(|_| internal_error())),
                        (None, None) => None,
                    },
                    None => None,
                };
                match end {
                    Some(StreamEnd::Failed(code, description)) => self.conn.fail_stream(
                        stream_id,
                        error_code::APPLICATION_ERROR,
                        coded_text(code, &description),
                    ),
                    Some(StreamEnd::Disconnected) => {}
                    Some(StreamEnd::Completed) | None => self.conn.complete(stream_id),
                }
            }
        }
    }
}
