//! UDP receiver: one blocking thread per `--udp-threads` on a shared socket.
//!
//! Plain blocking `recv_from` on dedicated threads is the cheapest way to drain a busy
//! socket (no readiness round trip per datagram); the 100 ms read timeout only serves
//! to notice shutdown. The buffer holds the largest possible datagram, so nothing up to
//! 64 KiB is truncated; the kernel receive buffer is raised (forced past `rmem_max` when
//! running as root) so bursts queue in the kernel instead of being dropped there, where
//! we could not count them.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};

use crate::queue::{Entry, Sender};
use crate::record::Transport;
use crate::stats::Stats;

/// Largest UDP payload (65,535 minus the 8-byte UDP header), rounded up.
const DATAGRAM_MAX: usize = 65_536;

/// Binds the UDP socket with a receive buffer of `recv_buffer` bytes (0 = system default).
pub fn bind(addr: SocketAddr, recv_buffer: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // [::] also receives IPv4 (as mapped addresses), like rsyslog's default.
        let _ = socket.set_only_v6(false);
    }
    socket.set_reuse_address(true)?;
    if recv_buffer > 0 {
        set_recv_buffer(&socket, recv_buffer);
    }
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(socket)
}

fn set_recv_buffer(socket: &Socket, bytes: usize) {
    use nix::sys::socket::{setsockopt, sockopt};
    // SO_RCVBUFFORCE ignores net.core.rmem_max but needs CAP_NET_ADMIN; fall back to the
    // capped SO_RCVBUF.
    if setsockopt(socket, sockopt::RcvBufForce, &bytes).is_err()
        && let Err(e) = socket.set_recv_buffer_size(bytes)
    {
        tracing::warn!(error = %e, bytes, "could not set the UDP receive buffer");
    }
}

/// Starts `threads` receiving threads on `socket`. They stop when `stop` is set.
pub fn spawn(
    socket: UdpSocket,
    threads: usize,
    tx: Sender,
    stats: Arc<Stats>,
    max_message: usize,
    stop: Arc<AtomicBool>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let socket = Arc::new(socket);
    (0..threads.max(1))
        .map(|n| {
            let (socket, tx, stats, stop) = (socket.clone(), tx.clone(), stats.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("syslog-udp-{n}"))
                .spawn(move || receive(&socket, &tx, &stats, max_message, &stop))
        })
        .collect()
}

fn receive(socket: &UdpSocket, tx: &Sender, stats: &Stats, max_message: usize, stop: &AtomicBool) {
    let mut buf = vec![0u8; DATAGRAM_MAX];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, source)) => {
                stats.received_udp.inc();
                if n == 0 {
                    stats.dropped_empty.inc();
                    continue;
                }
                let keep = n.min(max_message);
                tx.try_push(Entry {
                    received: SystemTime::now(),
                    source,
                    transport: Transport::Udp,
                    data: Bytes::copy_from_slice(&buf[..keep]),
                    truncated: keep < n,
                });
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => {}
            Err(e) => {
                // ICMP errors surfacing on the socket and the like: count, never exit.
                stats.udp_errors.inc();
                tracing::debug!(error = %e, "UDP receive error");
            }
        }
    }
}
