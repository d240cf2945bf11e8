//! UDP receiver: one blocking thread per `--udp-threads` on a shared socket.
//!
//! Blocking `recvmmsg` on dedicated threads is the cheapest way to drain a busy socket:
//! no readiness round trip, and one system call takes up to [`BATCH`] datagrams
//! (`MSG_WAITFORONE`: it waits for the first, then takes what is already there). The
//! batch goes to the queue as one hand-off, its data copied into one allocation. The 100
//! ms read timeout only serves to notice shutdown. Each of the [`BATCH`] buffers holds
//! the largest possible datagram, so nothing up to 64 KiB is truncated (4 MiB of address
//! space per thread; only the pages datagrams touch become resident). The kernel
//! receive buffer is raised (forced past `rmem_max` when running as root) so bursts
//! queue in the kernel instead of being dropped there, where we could not count them.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use std::io::IoSliceMut;
use std::net::{SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use bytes::BytesMut;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use socket2::{Domain, Protocol, Socket, Type};

use crate::queue::{Entry, Sender};
use crate::record::Transport;
use crate::stats::Stats;

/// Largest UDP payload (65,535 minus the 8-byte UDP header), rounded up.
const DATAGRAM_MAX: usize = 65_536;

/// Datagrams taken per `recvmmsg` (rsyslog's imudp takes 32).
pub const BATCH: usize = 64;

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
            let (socket, tx, stats, stop) =
                (socket.clone(), tx.clone(), stats.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("syslog-udp-{n}"))
                .spawn(move || receive(&socket, &tx, &stats, max_message, &stop))
        })
        .collect()
}

/// `SockaddrStorage` (what `recvmmsg` fills in) as a std address.
fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

fn receive(socket: &UdpSocket, tx: &Sender, stats: &Stats, max_message: usize, stop: &AtomicBool) {
    // One zeroed allocation: large enough to be mapped fresh, so its pages become
    // resident only as datagrams are written into them.
    let mut space = vec![0u8; BATCH * DATAGRAM_MAX];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    // (length, source) of each datagram of the current batch.
    let mut got: Vec<(usize, Option<SocketAddr>)> = Vec::with_capacity(BATCH);
    let fd = socket.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        got.clear();
        {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = space
                .chunks_mut(DATAGRAM_MAX)
                .map(|b| [IoSliceMut::new(b)])
                .collect();
            match recvmmsg(
                fd,
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => {
                    got.extend(results.map(|r| (r.bytes, r.address.as_ref().and_then(socket_addr))))
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => {
                    // ICMP errors surfacing on the socket and the like: count, never exit.
                    stats.udp_errors.inc();
                    tracing::debug!(error = %e, "UDP receive error");
                }
            }
        }
        if got.is_empty() {
            continue;
        }
        stats.received_udp.add(got.len() as u64);
        let received = SystemTime::now();
        // One allocation for the batch's data; each entry is a slice of it.
        let total: usize = got.iter().map(|&(n, _)| n.min(max_message)).sum();
        let mut data = BytesMut::with_capacity(total);
        let mut batch = Vec::with_capacity(got.len());
        let mut empty = 0;
        for (&(n, source), buf) in got.iter().zip(space.chunks(DATAGRAM_MAX)) {
            let Some(source) = source.filter(|_| n > 0) else {
                empty += 1;
                continue;
            };
            let keep = n.min(max_message);
            data.extend_from_slice(&buf[..keep]);
            batch.push(Entry {
                received,
                source,
                transport: Transport::Udp,
                data: data.split().freeze(),
                truncated: keep < n,
            });
        }
        stats.dropped_empty.add(empty);
        tx.try_push_batch(batch);
    }
}
