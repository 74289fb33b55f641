//! The HTTP server under the routes: an accept loop over hyper's HTTP/1 connection builder with
//! a timer, so that a client that trickles its headers is closed after
//! [`Limits::header_read_timeout`](crate::Limits) (axum's own `serve` runs hyper without a
//! timer, where no header timeout applies).
//!
//! Each accepted TCP connection takes a slot of [`Limits::max_open_connections`](crate::Limits)
//! until it closes; beyond the cap a connection is closed at once. A connection upgraded to a
//! WebSocket keeps its slot: the upgrade takes it from the request's [`ConnectionSlot`] into the
//! socket's task ([`crate::routes::websocket`]), so connections that never send their SETUP
//! count too. Keeps what `axum::serve` gave: keep-alive, upgrades, `ConnectInfo<SocketAddr>`,
//! `TCP_NODELAY`, and a graceful shutdown that waits for in-flight requests. Each socket is
//! wrapped in a [`WriteStallGuard`]: a peer that reads nothing for
//! [`Limits::write_stall_timeout`](crate::Limits) loses its connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use crate::limits::Limits;
use crate::metrics::{ConnectionRefusal, OpenConnection, ServiceMetrics, TimedOut};
use crate::write_stall::WriteStallGuard;

/// The TCP connection's slot, in every request's extensions. Taken (once) by a WebSocket
/// upgrade so the socket keeps it after hyper hands the connection over.
#[derive(Clone, Default)]
pub struct ConnectionSlot(Arc<Mutex<Option<HeldSlot>>>);

impl std::fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSlot").finish_non_exhaustive()
    }
}

/// A connection's place under `max_open_connections` and in the open-connections gauge.
pub(crate) struct HeldSlot {
    _permit: OwnedSemaphorePermit,
    _open: OpenConnection,
}

impl ConnectionSlot {
    fn new(slot: HeldSlot) -> ConnectionSlot {
        ConnectionSlot(Arc::new(Mutex::new(Some(slot))))
    }

    /// The slot, if still here (`None` for a second upgrade attempt, or in-process tests that
    /// call the router directly).
    pub(crate) fn take(&self) -> Option<HeldSlot> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// Serves `app` on `listener` until `cancel` fires; then stops accepting, lets open
/// connections finish their requests, and returns when they have.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<ServiceMetrics>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(
        limits.max_open_connections.min(Semaphore::MAX_PERMITS),
    ));
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Per-connection errors (reset before accept) and descriptor exhaustion
                    // both leave the listener usable: log and go on after a pause.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = cancel.cancelled() => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics.connection_refused(ConnectionRefusal::Total);
            tracing::debug!(%peer, "connection refused: open connection limit reached");
            drop(tcp);
            continue;
        };
        // Sync lines are small writes that must go out at once: with Nagle's algorithm a line
        // written while the previous one is unacknowledged waits for the peer's delayed ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let slot = ConnectionSlot::new(HeldSlot {
            _permit: permit,
            _open: metrics.connection_opened(),
        });
        let app = app.clone();
        let cancel = cancel.clone();
        let metrics = metrics.clone();
        connections.spawn(async move {
            let stalled = metrics.clone();
            let tcp = WriteStallGuard::new(
                tcp,
                limits.write_stall_timeout,
                Box::new(move || {
                    tracing::debug!(%peer, "connection closed: the peer read nothing within the write stall timeout");
                    stalled.timed_out(TimedOut::WriteStall);
                }),
            );
            if let Err(e) = serve_connection(tcp, peer, app, slot, limits, cancel).await {
                // hyper's own timer: the header-read timeout (or an idle keep-alive one).
                let timed_out = e
                    .downcast_ref::<hyper::Error>()
                    .is_some_and(hyper::Error::is_timeout);
                if timed_out {
                    metrics.timed_out(TimedOut::Header);
                }
                tracing::trace!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

async fn serve_connection(
    tcp: WriteStallGuard<tokio::net::TcpStream>,
    peer: SocketAddr,
    app: Router,
    slot: ConnectionSlot,
    limits: Limits,
    cancel: CancellationToken,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // The slot drops with the last request's clone unless a WebSocket upgrade took it.
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        // The peer address lets the dashboard tell loopback clients apart.
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(slot.clone());
        let mut app = app.clone();
        async move { Ok::<_, Infallible>(app.call(req).await.unwrap_or_else(|e| match e {})) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => result,
        () = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}
