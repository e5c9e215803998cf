//! Where a connection is between requests, for the header and idle
//! timeouts. hyper's own header timer starts whenever it waits for a
//! request head, so it cannot tell a keep-alive connection at rest (allowed
//! `idle_timeout`) from one that sends a head slowly (allowed
//! `header_timeout`); this does.
//!
//! - A new connection, or one at rest that sends a byte, is **reading a
//!   head**: it has `header_timeout` to complete it.
//! - From the head until the response has been sent it is **busy**: no
//!   timer here (the body has its own, see `body`; long polls are fine).
//! - Then it is **idle** until its next byte, for at most `idle_timeout`.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::caps::Admitted;

#[derive(Debug, Clone, Copy)]
enum Phase {
    Head(Instant),
    Busy(usize),
    Idle(Instant),
}

/// Which timeout closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    Header,
    Idle,
}

impl Expired {
    pub fn label(self) -> &'static str {
        match self {
            Expired::Header => "header",
            Expired::Idle => "idle",
        }
    }
}

/// A connection's phase, shared by its I/O, its requests and its watchdog.
#[derive(Debug)]
pub struct Watch {
    phase: Mutex<Phase>,
    /// Wakes the watchdog when the phase changes: a deadline it sleeps
    /// towards may no longer be the one that applies.
    changed: Notify,
}

impl Watch {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            phase: Mutex::new(Phase::Head(Instant::now())),
            changed: Notify::new(),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Phase) -> T) -> T {
        f(&mut self.phase.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A request's head is complete; the connection is busy until the
    /// returned guard (carried by the response body) is dropped.
    pub fn request(self: &Arc<Self>) -> Busy {
        self.with(|p| {
            *p = match *p {
                Phase::Busy(n) => Phase::Busy(n + 1),
                _ => Phase::Busy(1),
            }
        });
        self.changed.notify_one();
        Busy(self.clone())
    }

    fn bytes_read(&self) {
        let started = self.with(|p| match p {
            Phase::Idle(_) => {
                *p = Phase::Head(Instant::now());
                true
            }
            _ => false,
        });
        if started {
            self.changed.notify_one();
        }
    }

    /// Resolves when the connection has outlived its header or idle
    /// timeout.
    pub async fn expired(&self, header: Duration, idle: Duration) -> Expired {
        loop {
            let now = Instant::now();
            let (at, kind) = match self.with(|p| *p) {
                Phase::Head(since) => (since + header, Some(Expired::Header)),
                Phase::Idle(since) => (since + idle, Some(Expired::Idle)),
                // Check again later: the phase may change meanwhile.
                Phase::Busy(_) => (now + header.min(idle), None),
            };
            if let Some(kind) = kind
                && at <= now
            {
                return kind;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = self.changed.notified() => {}
            }
        }
    }
}

/// A request in progress on a connection.
#[derive(Debug)]
pub struct Busy(Arc<Watch>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.with(|p| {
            *p = match *p {
                Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
                _ => Phase::Idle(Instant::now()),
            }
        });
        self.0.changed.notify_one();
    }
}

/// A connection's byte stream: tells its [`Watch`] when bytes arrive, and
/// holds the connection's place under the caps for as long as the stream
/// lives (through a WebSocket upgrade too).
#[derive(Debug)]
pub struct Watched<IO> {
    io: IO,
    watch: Arc<Watch>,
    _admitted: Admitted,
}

impl<IO> Watched<IO> {
    pub fn new(io: IO, watch: Arc<Watch>, admitted: Admitted) -> Self {
        Self {
            io,
            watch,
            _admitted: admitted,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.watch.bytes_read();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slow_head_gets_the_header_timeout_and_a_rest_the_idle_one() {
        let (h, i) = (Duration::from_secs(2), Duration::from_secs(10));
        let watch = Watch::new();
        let start = Instant::now();
        assert_eq!(watch.expired(h, i).await, Expired::Header);
        assert_eq!(start.elapsed(), h);

        let busy = watch.request();
        drop(busy);
        let start = Instant::now();
        assert_eq!(watch.expired(h, i).await, Expired::Idle);
        assert_eq!(start.elapsed(), i);

        watch.bytes_read();
        let start = Instant::now();
        assert_eq!(watch.expired(h, i).await, Expired::Header);
        assert_eq!(start.elapsed(), h);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_watchdog_follows_the_phase() {
        let (h, i) = (Duration::from_secs(10), Duration::from_secs(1));
        let watch = Watch::new();
        let start = Instant::now();
        let w = watch.clone();
        let change = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(w.request());
        });
        // Waiting towards the 10 s header deadline when the request ends:
        // the 1 s idle deadline applies from then.
        assert_eq!(watch.expired(h, i).await, Expired::Idle);
        assert_eq!(start.elapsed(), Duration::from_millis(1100));
        change.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_never_expires() {
        let watch = Watch::new();
        let _busy = watch.request();
        let waited = tokio::time::timeout(
            Duration::from_secs(3600),
            watch.expired(Duration::from_secs(1), Duration::from_secs(1)),
        )
        .await;
        assert!(waited.is_err());
    }
}
