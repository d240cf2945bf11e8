//! The TCP listener: a bound on open connections and an idle timeout per connection.
//!
//! `axum::serve` accepts without limit and keeps a silent connection forever. A boot
//! storm opens thousands of connections at once, and a client that stops reading in
//! the middle of a 1 MB binary (or never finishes its headers) would hold a task and a
//! socket indefinitely. Here a semaphore permit travels with each connection — at the
//! limit the service stops accepting and new clients wait in the kernel's backlog — and
//! a connection that moves no bytes for the idle timeout is failed, which closes it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::metrics as m;
use crate::zero_copy::{self, ZeroCopy};

/// A listener that hands out [`Conn`]s.
pub struct BoundedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    idle: Duration,
    zero_copy: Arc<ZeroCopy>,
}

impl BoundedListener {
    pub fn new(
        inner: TcpListener,
        max_connections: usize,
        idle: Duration,
        zero_copy: Arc<ZeroCopy>,
    ) -> Self {
        BoundedListener {
            inner,
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
            idle,
            zero_copy,
        }
    }
}

impl Listener for BoundedListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                m::connection_limit_reached();
                match self.permits.clone().acquire_owned().await {
                    Ok(p) => p,
                    // The semaphore is never closed; wait forever rather than spin.
                    Err(_) => std::future::pending().await,
                }
            }
        };
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().unwrap_or(peer);
                    m::connection_opened();
                    let conn = Conn {
                        io: stream,
                        idle: self.idle,
                        last_active: Instant::now(),
                        timer: Box::pin(tokio::time::sleep(self.idle)),
                        local,
                        peer,
                        zero_copy: self.zero_copy.clone(),
                        _permit: permit,
                    };
                    return (conn, peer);
                }
                Err(e) => {
                    // EMFILE/ENFILE and friends: back off instead of spinning.
                    m::accept_error();
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// One client connection.
pub struct Conn {
    io: TcpStream,
    idle: Duration,
    last_active: Instant,
    timer: Pin<Box<Sleep>>,
    local: SocketAddr,
    peer: SocketAddr,
    zero_copy: Arc<ZeroCopy>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Conn {
    fn drop(&mut self) {
        m::connection_closed();
    }
}

impl Conn {
    fn touch(&mut self) {
        // Lazy: the timer is only re-armed when it fires (see `expired`), so busy
        // connections do not pay a timer-wheel update per read and write.
        self.last_active = Instant::now();
    }

    /// Polls the idle timer. True when the connection has been idle for too long.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let deadline = self.last_active + self.idle;
            if Instant::now() >= deadline {
                m::idle_timeout();
                return true;
            }
            self.timer.as_mut().reset(deadline);
        }
    }

    fn timed_out() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, "connection idle for too long")
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(Self::timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Conn {
    /// One non-blocking socket operation, retried on readiness.
    fn poll_op(
        &mut self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(std::os::fd::RawFd) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        use std::os::fd::AsRawFd;
        loop {
            match self.io.poll_write_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let fd = self.io.as_raw_fd();
            match self.io.try_io(tokio::io::Interest::WRITABLE, || op(fd)) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// `sendfile` of a registered buffer's slice.
    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        backing: &zero_copy::Backing,
        offset: u64,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let r = self.poll_op(cx, |fd| zero_copy::sendfile(fd, backing, offset, len));
        if let Poll::Ready(Ok(n)) = r {
            m::sendfile_bytes(n as u64);
        }
        r
    }

    /// Writes a prefix of `bufs` (as `AsyncWrite` allows), sending slices of registered
    /// binaries with `sendfile`: the head before such a slice goes out with `MSG_MORE`
    /// and the slice right after it.
    fn write_some(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let backed = bufs
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .find_map(|(i, b)| self.zero_copy.find(b.as_ptr(), b.len()).map(|hit| (i, hit)));
        let Some((i, (backing, offset))) = backed else {
            return Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        };
        let body_len = bufs[i].len();
        let head = &bufs[..i];
        let head_len: usize = head.iter().map(|b| b.len()).sum();
        if head_len == 0 {
            return self.poll_sendfile(cx, &backing, offset, body_len);
        }
        let sent = match self.poll_op(cx, |fd| zero_copy::send_more(fd, head)) {
            Poll::Ready(Ok(n)) => n,
            other => return other,
        };
        if sent < head_len {
            return Poll::Ready(Ok(sent));
        }
        match self.poll_sendfile(cx, &backing, offset, body_len) {
            Poll::Ready(Ok(n)) => Poll::Ready(Ok(sent + n)),
            // The head is out either way; the body follows on the next call.
            _ => Poll::Ready(Ok(sent)),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.write_some(cx, &[io::IoSlice::new(buf)]) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(Self::timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.write_some(cx, bufs) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(Self::timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Both ends of a connection, for handlers (`ConnectInfo<ConnAddrs>`): the peer for
/// identification, the local address as the fallback authority for script URLs.
#[derive(Clone, Copy, Debug)]
pub struct ConnAddrs {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

impl Connected<IncomingStream<'_, BoundedListener>> for ConnAddrs {
    fn connect_info(stream: IncomingStream<'_, BoundedListener>) -> Self {
        let io = stream.io();
        ConnAddrs {
            peer: io.peer,
            local: io.local,
        }
    }
}
