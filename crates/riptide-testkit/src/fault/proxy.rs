//! A loopback TCP proxy between the service and a Postgres server that the test controls: pass
//! bytes through, cut every connection, refuse new ones (a server that is down), blackhole (a
//! partition: connections stay open and nothing moves either way until it heals, as TCP
//! retransmits would), freeze the open connections for good (a peer that stopped answering)
//! or slow every chunk down.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How the proxy treats traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Bytes flow both ways.
    Pass,
    /// Nothing moves on any connection, new ones included (they are accepted, then stall):
    /// the peer looks hung. Bytes already read are kept and delivered once the mode changes.
    Blackhole,
    /// Every chunk waits this long before it is forwarded.
    Slow(Duration),
    /// New connections are closed at once (a server that is down); open ones keep working
    /// until [`TcpProxy::cut`].
    Refuse,
}

struct Shared {
    mode: watch::Sender<ProxyMode>,
    /// Open connections (their pump tasks), so they can be cut.
    connections: Mutex<Vec<Connection>>,
}

struct Connection {
    pumps: [JoinHandle<()>; 2],
    /// Set: this connection hangs for good (see [`TcpProxy::freeze_open`]).
    frozen: watch::Sender<bool>,
}

/// A proxy listening on `127.0.0.1:<port>` and forwarding to `target`. Stops when dropped.
pub struct TcpProxy {
    port: u16,
    target: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for TcpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpProxy")
            .field("port", &self.port)
            .field("target", &self.target)
            .field("mode", &*self.shared.mode.borrow())
            .finish()
    }
}

impl TcpProxy {
    /// Starts a proxy to `target` on a free loopback port.
    pub async fn start(target: SocketAddr) -> std::io::Result<TcpProxy> {
        Self::start_on(0, target).await
    }

    /// Starts a proxy to `target` on `port` (0: a free one), e.g. to come back on the same
    /// port after [`TcpProxy::stop`].
    pub async fn start_on(port: u16, target: SocketAddr) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr()?.port();
        let (mode, _) = watch::channel(ProxyMode::Pass);
        let shared = Arc::new(Shared {
            mode,
            connections: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, target, shared.clone()));
        Ok(TcpProxy {
            port,
            target,
            shared,
            accept,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    pub fn mode(&self) -> ProxyMode {
        *self.shared.mode.borrow()
    }

    /// Sets how traffic is treated from now on (open connections included).
    pub fn set_mode(&self, mode: ProxyMode) {
        self.shared.mode.send_replace(mode);
    }

    /// Closes every open connection at once (both sides see the connection end).
    pub fn cut(&self) {
        let connections = match self.shared.connections.lock() {
            Ok(mut c) => std::mem::take(&mut *c),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for c in connections {
            for pump in c.pumps {
                pump.abort();
            }
        }
    }

    /// Makes every connection open now hang for good (nothing moves, nothing is closed: a
    /// peer that stopped answering), while new connections work.
    pub fn freeze_open(&self) {
        let connections = match self.shared.connections.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        for c in connections.iter() {
            c.frozen.send_replace(true);
        }
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        let mut connections = match self.shared.connections.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        connections.retain(|c| c.pumps.iter().any(|p| !p.is_finished()));
        connections.len()
    }

    /// Stops listening and cuts every connection (the port then refuses connections).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *shared.mode.borrow() == ProxyMode::Refuse {
            let _ = client.set_zero_linger();
            drop(client);
            continue;
        }
        let Ok(server) = TcpStream::connect(target).await else {
            drop(client);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let (frozen, _) = watch::channel(false);
        let gate = || Gate {
            mode: shared.mode.subscribe(),
            frozen: frozen.subscribe(),
        };
        let up = tokio::spawn(pump(client_read, server_write, gate()));
        let down = tokio::spawn(pump(server_read, client_write, gate()));
        if let Ok(mut connections) = shared.connections.lock() {
            connections.retain(|c| c.pumps.iter().any(|p| !p.is_finished()));
            connections.push(Connection {
                pumps: [up, down],
                frozen,
            });
        }
    }
}

/// What one direction of a connection obeys: the proxy's mode and its own freeze.
struct Gate {
    mode: watch::Receiver<ProxyMode>,
    frozen: watch::Receiver<bool>,
}

impl Gate {
    /// Waits while traffic may not flow. Errs when the proxy is gone.
    async fn flowing(&mut self) -> Result<(), ()> {
        loop {
            let blackhole = *self.mode.borrow_and_update() == ProxyMode::Blackhole;
            let frozen = *self.frozen.borrow_and_update();
            if !blackhole && !frozen {
                return Ok(());
            }
            tokio::select! {
                changed = self.mode.changed() => changed.map_err(|_| ())?,
                changed = self.frozen.changed() => changed.map_err(|_| ())?,
            }
        }
    }

    fn delay(&self) -> Option<Duration> {
        match *self.mode.borrow() {
            ProxyMode::Slow(d) => Some(d),
            _ => None,
        }
    }
}

/// Forwards one direction until either side closes, obeying the gate before each chunk.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut gate: Gate,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if gate.flowing().await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        // The mode may have changed while reading: a blackhole holds the chunk back.
        if gate.flowing().await.is_err() {
            return;
        }
        if let Some(d) = gate.delay() {
            tokio::time::sleep(d).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, within: Duration) -> bool {
        if s.write_all(b"ping").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 4];
        matches!(
            tokio::time::timeout(within, s.read_exact(&mut buf)).await,
            Ok(Ok(4))
        )
    }

    #[tokio::test]
    async fn pass_blackhole_heal_cut_refuse() {
        let proxy = TcpProxy::start(echo_server().await).await.expect("proxy");
        let addr = ("127.0.0.1", proxy.port());
        let mut s = TcpStream::connect(addr).await.expect("connect");
        assert!(round_trip(&mut s, Duration::from_secs(5)).await);

        proxy.set_mode(ProxyMode::Blackhole);
        assert!(!round_trip(&mut s, Duration::from_millis(300)).await);
        proxy.set_mode(ProxyMode::Pass);
        // What was held back arrives after the partition heals.
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
            .await
            .expect("held bytes arrive")
            .expect("read");
        assert_eq!(&buf, b"ping");

        proxy.set_mode(ProxyMode::Slow(Duration::from_millis(200)));
        let started = std::time::Instant::now();
        assert!(round_trip(&mut s, Duration::from_secs(5)).await);
        assert!(started.elapsed() >= Duration::from_millis(400));
        proxy.set_mode(ProxyMode::Pass);

        assert_eq!(proxy.open_connections(), 1);
        proxy.freeze_open();
        assert!(!round_trip(&mut s, Duration::from_millis(300)).await);
        let mut fresh = TcpStream::connect(addr).await.expect("connect");
        assert!(round_trip(&mut fresh, Duration::from_secs(5)).await);
        drop(fresh);
        proxy.cut();
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the cut connection ends"
        );

        proxy.set_mode(ProxyMode::Refuse);
        let mut s = TcpStream::connect(addr)
            .await
            .expect("accepted, then closed");
        assert!(!round_trip(&mut s, Duration::from_millis(500)).await);
        proxy.set_mode(ProxyMode::Pass);
        let mut s = TcpStream::connect(addr).await.expect("connect");
        assert!(round_trip(&mut s, Duration::from_secs(5)).await);
    }
}
