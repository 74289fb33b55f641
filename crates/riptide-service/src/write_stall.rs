//! A connection whose peer stops reading is closed after [`crate::Limits::write_stall_timeout`].
//!
//! A client that keeps its TCP connection open but never reads (a hung app, a hostile one)
//! fills the socket's send buffer; every write then waits. The peer's kernel keeps acknowledging
//! with a zero window, so neither TCP keepalives nor `TCP_USER_TIMEOUT` end it, and the
//! connection would hold its slot, its session and the bytes buffered for it for ever.
//! [`WriteStallGuard`] wraps the connection's socket (under hyper, so HTTP streams and upgraded
//! WebSockets alike): when writes have made no progress at all for the limit, the pending write
//! fails with `TimedOut`, which ends the connection. Any progress restarts the clock, so a slow
//! reader is never cut, only one that reads nothing.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Called once when a guard gives up on its connection (a metric).
pub(crate) type OnStall = Box<dyn FnOnce() + Send + Sync>;

/// `inner` with writes that fail after `limit` without progress.
pub(crate) struct WriteStallGuard<T> {
    inner: T,
    limit: Duration,
    /// Running while the current write (or flush) has been pending since the last progress.
    stalled: Option<Pin<Box<Sleep>>>,
    on_stall: Option<OnStall>,
}

impl<T> WriteStallGuard<T> {
    pub(crate) fn new(inner: T, limit: Duration, on_stall: OnStall) -> WriteStallGuard<T> {
        WriteStallGuard {
            inner,
            limit,
            stalled: None,
            on_stall: Some(on_stall),
        }
    }

    /// After the inner write was `Pending`: still waiting, or the limit has passed.
    fn pending<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                if let Some(on_stall) = self.on_stall.take() {
                    on_stall();
                }
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer has read nothing within the write stall timeout",
                )))
            }
        }
    }

    /// Passes a write's outcome on, restarting the clock when it made progress.
    fn track<R>(
        &mut self,
        polled: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Pending => self.pending(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteStallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteStallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(polled, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(polled, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.track(polled, cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const LIMIT: Duration = Duration::from_secs(30);

    fn guard(
        inner: tokio::io::DuplexStream,
    ) -> (WriteStallGuard<tokio::io::DuplexStream>, Arc<AtomicUsize>) {
        let stalls = Arc::new(AtomicUsize::new(0));
        let counted = stalls.clone();
        let on_stall = Box::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        (WriteStallGuard::new(inner, LIMIT, on_stall), stalls)
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_reads_nothing_fails_the_write_after_the_limit() {
        let (ours, _theirs) = tokio::io::duplex(1024);
        let (mut guarded, stalls) = guard(ours);
        let started = tokio::time::Instant::now();
        let err = guarded.write_all(&[7u8; 64 * 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), LIMIT);
        assert_eq!(stalls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_is_never_cut() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let (mut guarded, stalls) = guard(ours);
        // Reads 1 KiB every two thirds of the limit: 64 KiB take 42 limits' worth of time.
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 1024];
            while got < 64 * 1024 {
                tokio::time::sleep(LIMIT * 2 / 3).await;
                got += theirs.read(&mut buf).await.unwrap();
            }
            got
        });
        guarded.write_all(&[7u8; 64 * 1024]).await.unwrap();
        guarded.flush().await.unwrap();
        assert_eq!(reader.await.unwrap(), 64 * 1024);
        assert_eq!(stalls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_between_writes_does_not_count() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let (mut guarded, stalls) = guard(ours);
        guarded.write_all(&[1u8; 1024]).await.unwrap();
        // Nothing to write for far longer than the limit, then the peer reads and we write.
        tokio::time::sleep(LIMIT * 10).await;
        let mut buf = [0u8; 1024];
        theirs.read_exact(&mut buf).await.unwrap();
        guarded.write_all(&[2u8; 1024]).await.unwrap();
        assert_eq!(stalls.load(Ordering::SeqCst), 0);
    }
}
