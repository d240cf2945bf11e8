//! Sockets: the request listener with `IP_PKTINFO`, and per-transfer sockets.
//!
//! A host with several addresses (one per provisioning VLAN, a VIP) must answer from the
//! address the client spoke to: firmware TFTP stacks drop replies from anywhere else, and
//! a reply routed out of the wrong interface never arrives. The listener therefore
//! learns each request's destination address from `IP_PKTINFO`; per-transfer sockets are
//! bound to exactly that address, and in single-port mode every reply carries it as the
//! source in its own `IP_PKTINFO`. tokio's `UdpSocket` has no control-message API, so
//! `recvmsg`/`sendmsg` run inside its `async_io` readiness hook.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, sockopt};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// One received datagram.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub len: usize,
    pub peer: SocketAddr,
    /// The address the datagram was sent to (from IP_PKTINFO), when known.
    pub local_ip: Option<IpAddr>,
    /// The datagram did not fit the buffer.
    pub truncated: bool,
}

fn new_socket(addr: SocketAddr, interface: Option<&str>) -> io::Result<Socket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if let Some(dev) = interface {
        s.bind_device(Some(dev.as_bytes()))?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Binds a request listener (port 69, or the single-port socket) with IP_PKTINFO and
/// generous buffers: a boot storm's RRQs and, in single-port mode, every ACK arrive here.
pub fn bind_listener(
    addr: SocketAddr,
    interface: Option<&str>,
    buffer_bytes: usize,
) -> io::Result<UdpSocket> {
    let s = new_socket(addr, interface)?;
    let _ = s.set_recv_buffer_size(buffer_bytes);
    let _ = s.set_send_buffer_size(buffer_bytes);
    if addr.is_ipv4() {
        socket::setsockopt(&s, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)?;
    }
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// A socket for one transfer: bound to the address the request arrived on (new port),
/// connected to the client so the kernel drops datagrams from anyone else.
pub fn transfer_socket(
    local_ip: IpAddr,
    peer: SocketAddr,
    interface: Option<&str>,
) -> io::Result<UdpSocket> {
    let s = new_socket(SocketAddr::new(local_ip, 0), interface)?;
    s.bind(&SocketAddr::new(local_ip, 0).into())?;
    s.connect(&peer.into())?;
    UdpSocket::from_std(s.into())
}

/// Receives one datagram with its destination address.
pub async fn recv(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    let is_v4 = sock.local_addr()?.is_ipv4();
    if !is_v4 {
        let (len, peer) = sock.recv_from(buf).await?;
        return Ok(Received {
            len,
            peer,
            local_ip: None,
            truncated: false,
        });
    }
    sock.async_io(Interest::READABLE, || recv_v4(sock, buf))
        .await
}

fn recv_v4(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    let mut cmsg = nix::cmsg_space!(nix::libc::in_pktinfo);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<SockaddrIn>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC,
    )
    .map_err(io::Error::from)?;
    let peer = msg
        .address
        .map(|a| SocketAddr::V4(SocketAddrV4::new(a.ip(), a.port())))
        .ok_or_else(|| io::Error::other("datagram without a source address"))?;
    let mut local_ip = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::Ipv4PacketInfo(info) = c {
                local_ip = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    info.ipi_addr.s_addr,
                ))));
            }
        }
    }
    let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
    Ok(Received {
        len: msg.bytes.min(buf.len()),
        peer,
        local_ip,
        truncated,
    })
}

/// Sends `parts` (gathered) to `peer` from `local_ip` over a shared (unconnected) socket.
pub async fn send_from(
    sock: &UdpSocket,
    parts: &[&[u8]],
    peer: SocketAddr,
    local_ip: Option<IpAddr>,
) -> io::Result<()> {
    sock.async_io(Interest::WRITABLE, || {
        send_from_now(sock, parts, peer, local_ip)
    })
    .await
}

fn send_from_now(
    sock: &UdpSocket,
    parts: &[&[u8]],
    peer: SocketAddr,
    local_ip: Option<IpAddr>,
) -> io::Result<()> {
    let iov: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    match (peer, local_ip) {
        (SocketAddr::V4(p), Some(IpAddr::V4(src))) => {
            let info = nix::libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: nix::libc::in_addr {
                    s_addr: u32::from(src).to_be(),
                },
                ipi_addr: nix::libc::in_addr { s_addr: 0 },
            };
            let dst = SockaddrIn::from(p);
            socket::sendmsg(
                sock.as_raw_fd(),
                &iov,
                &[ControlMessage::Ipv4PacketInfo(&info)],
                MsgFlags::MSG_DONTWAIT,
                Some(&dst),
            )
            .map_err(io::Error::from)?;
        }
        (SocketAddr::V4(p), _) => {
            let dst = SockaddrIn::from(p);
            socket::sendmsg(
                sock.as_raw_fd(),
                &iov,
                &[],
                MsgFlags::MSG_DONTWAIT,
                Some(&dst),
            )
            .map_err(io::Error::from)?;
        }
        (SocketAddr::V6(p), _) => {
            let dst = socket::SockaddrIn6::from(p);
            socket::sendmsg(
                sock.as_raw_fd(),
                &iov,
                &[],
                MsgFlags::MSG_DONTWAIT,
                Some(&dst),
            )
            .map_err(io::Error::from)?;
        }
    }
    Ok(())
}

/// Whether UDP GSO worked so far; cleared for good on the first refusal (old kernels,
/// devices that cannot segment), after which windows go out one packet per syscall.
static GSO_OK: AtomicBool = AtomicBool::new(true);

/// Most segments handed to the kernel in one GSO send (UDP_MAX_SEGMENTS is 64).
const GSO_MAX_SEGMENTS: usize = 64;

/// Sends equal-sized datagrams (the last may be shorter), each given as header + body,
/// with as few syscalls as possible: one `sendmsg` with `UDP_SEGMENT` per batch. On a
/// shared socket `dst`/`local_ip` address each batch like [`send_from`].
pub async fn send_segments(
    sock: &UdpSocket,
    segments: &[([u8; 4], &[u8])],
    dst: Option<(SocketAddr, Option<IpAddr>)>,
) -> io::Result<()> {
    if segments.is_empty() {
        return Ok(());
    }
    let seg_size = 4 + segments[0].1.len();
    let per_batch = GSO_MAX_SEGMENTS.min(65_000 / seg_size.max(1)).max(1);
    if segments.len() == 1
        || per_batch == 1
        || seg_size > u16::MAX as usize
        || !GSO_OK.load(AtomicOrdering::Relaxed)
    {
        return send_each(sock, segments, dst).await;
    }
    for batch in segments.chunks(per_batch) {
        let r = sock
            .async_io(Interest::WRITABLE, || {
                let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(batch.len() * 2);
                for (h, b) in batch {
                    iov.push(IoSlice::new(h));
                    iov.push(IoSlice::new(b));
                }
                let gso = seg_size as u16;
                let mut cmsgs = vec![ControlMessage::UdpGsoSegments(&gso)];
                let pktinfo;
                match dst {
                    None => {
                        socket::sendmsg::<SockaddrIn>(
                            sock.as_raw_fd(),
                            &iov,
                            &cmsgs,
                            MsgFlags::MSG_DONTWAIT,
                            None,
                        )
                        .map_err(io::Error::from)?;
                    }
                    Some((SocketAddr::V4(p), local)) => {
                        if let Some(IpAddr::V4(src)) = local {
                            pktinfo = nix::libc::in_pktinfo {
                                ipi_ifindex: 0,
                                ipi_spec_dst: nix::libc::in_addr {
                                    s_addr: u32::from(src).to_be(),
                                },
                                ipi_addr: nix::libc::in_addr { s_addr: 0 },
                            };
                            cmsgs.push(ControlMessage::Ipv4PacketInfo(&pktinfo));
                        }
                        let d = SockaddrIn::from(p);
                        socket::sendmsg(
                            sock.as_raw_fd(),
                            &iov,
                            &cmsgs,
                            MsgFlags::MSG_DONTWAIT,
                            Some(&d),
                        )
                        .map_err(io::Error::from)?;
                    }
                    Some((SocketAddr::V6(p), _)) => {
                        let d = socket::SockaddrIn6::from(p);
                        socket::sendmsg(
                            sock.as_raw_fd(),
                            &iov,
                            &cmsgs,
                            MsgFlags::MSG_DONTWAIT,
                            Some(&d),
                        )
                        .map_err(io::Error::from)?;
                    }
                }
                Ok(())
            })
            .await;
        if let Err(e) = r {
            match e.raw_os_error() {
                Some(nix::libc::EIO)
                | Some(nix::libc::EINVAL)
                | Some(nix::libc::ENOPROTOOPT)
                | Some(nix::libc::EOPNOTSUPP) => {
                    tracing::info!(error = %e, "UDP GSO refused by the kernel; sending one datagram per syscall");
                    GSO_OK.store(false, AtomicOrdering::Relaxed);
                    send_each(sock, batch, dst).await?;
                }
                _ => return Err(e),
            }
        }
    }
    Ok(())
}

async fn send_each(
    sock: &UdpSocket,
    segments: &[([u8; 4], &[u8])],
    dst: Option<(SocketAddr, Option<IpAddr>)>,
) -> io::Result<()> {
    for (h, b) in segments {
        match dst {
            None => send_connected(sock, &[h, b]).await?,
            Some((peer, local)) => send_from(sock, &[h, b], peer, local).await?,
        }
    }
    Ok(())
}

/// Sends `parts` (gathered) on a connected socket.
pub async fn send_connected(sock: &UdpSocket, parts: &[&[u8]]) -> io::Result<()> {
    sock.async_io(Interest::WRITABLE, || {
        let iov: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        socket::sendmsg::<SockaddrIn>(sock.as_raw_fd(), &iov, &[], MsgFlags::MSG_DONTWAIT, None)
            .map_err(io::Error::from)?;
        Ok(())
    })
    .await
}

/// Sets the socket's UDP segment size (`UDP_SEGMENT`): every later send longer than
/// `size` leaves as datagrams of `size` bytes (the last shorter). What lets one
/// `sendfile` of a wire-image range be a whole window.
pub fn set_segment_size(sock: &UdpSocket, size: u16) -> io::Result<()> {
    socket::setsockopt(sock, sockopt::UdpGsoSegment, &i32::from(size)).map_err(io::Error::from)
}

/// Sends `len` bytes of `fd` from `offset` on a connected socket with `sendfile`: one
/// datagram, or segments of the size [`set_segment_size`] set. Returns the bytes sent.
pub async fn send_file_range(
    sock: &UdpSocket,
    fd: std::os::fd::RawFd,
    offset: u64,
    len: usize,
) -> io::Result<usize> {
    sock.async_io(Interest::WRITABLE, || {
        let mut off = offset as nix::libc::off_t;
        // SAFETY: both descriptors are open for the duration of the call; `off` is ours.
        let n = unsafe { nix::libc::sendfile(sock.as_raw_fd(), fd, &mut off, len) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })
    .await
}

/// Busy-polls a non-blocking receive: calls `attempt` until it returns anything but
/// `EAGAIN`/`EINTR`, or `budget` has passed (`None`). Bypasses the runtime on purpose:
/// tokio's `try_recv` only consults the readiness its reactor last saw, which is stale
/// while this thread does not park.
pub fn spin<T>(
    budget: std::time::Duration,
    mut attempt: impl FnMut() -> nix::Result<T>,
) -> Option<nix::Result<T>> {
    let start = std::time::Instant::now();
    loop {
        match attempt() {
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
            r => return Some(r),
        }
        if start.elapsed() >= budget {
            return None;
        }
        std::hint::spin_loop();
    }
}
