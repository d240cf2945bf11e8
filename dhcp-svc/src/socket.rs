//! UDP sockets that know where a packet came in and can answer out of the same door.
//!
//! tokio's `UdpSocket` has no control-message API, and the fast path does not need a
//! runtime at all: workers are plain threads blocked in `recvmsg`, with `IP_PKTINFO`
//! telling them the ingress interface and address, and the reply's `sendmsg` naming the
//! interface and source address explicitly. That is what lets one instance serve
//! several links (and answer a broadcast out of the right one).
//!
//! A worker takes whatever is queued with one `recvmmsg` (a burst costs one system call
//! and one wake-up) and answers the batch with one `sendmmsg` ([`SendBatch`]: reused
//! buffers and headers). Control messages live in those reused or stack buffers:
//! nothing is allocated per packet here.

use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::libc;
use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};

/// Datagrams taken per `recvmmsg`.
pub const BATCH: usize = 32;
/// Receive buffer per datagram; longer ones are truncated (and then fail to decode).
pub const MAX_DATAGRAM: usize = 4096;

/// Room for one `IP_PKTINFO` control message, aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// What arrived, and where.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub len: usize,
    pub src: SocketAddrV4,
    /// Ingress interface index.
    pub ifindex: u32,
    /// Our address on the ingress interface (the natural reply source).
    pub local: Ipv4Addr,
}

pub struct DhcpSocket {
    sock: Socket,
    /// Interface this socket is bound to, if any.
    pub device: Option<String>,
    pub port: u16,
}

impl DhcpSocket {
    /// Binds `0.0.0.0:port`, optionally only on `device` (SO_BINDTODEVICE), with
    /// broadcast and packet info enabled. `read_timeout` bounds how long a worker waits
    /// before it checks for shutdown.
    pub fn bind(port: u16, device: Option<&str>, read_timeout: Duration) -> std::io::Result<Self> {
        let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        sock.set_reuse_address(true)?;
        sock.set_broadcast(true)?;
        if let Some(dev) = device {
            sock.bind_device(Some(dev.as_bytes())).map_err(|e| {
                std::io::Error::new(e.kind(), format!("binding to interface {dev}: {e}"))
            })?;
        }
        setsockopt(&sock, sockopt::Ipv4PacketInfo, &true).map_err(std::io::Error::from)?;
        sock.set_read_timeout(Some(read_timeout))?;
        // Absorb bursts (a rack powering on) instead of dropping in the kernel.
        let _ = sock.set_recv_buffer_size(4 << 20);
        let _ = sock.set_send_buffer_size(4 << 20);
        sock.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())
            .map_err(|e| std::io::Error::new(e.kind(), format!("binding UDP port {port}: {e}")))?;
        let port = sock
            .local_addr()?
            .as_socket_ipv4()
            .map(|a| a.port())
            .unwrap_or(port);
        Ok(DhcpSocket {
            sock,
            device: device.map(str::to_string),
            port,
        })
    }

    /// Blocks until at least one datagram arrives or the read timeout passes
    /// (`ErrorKind::WouldBlock`/`TimedOut`), then takes up to [`BATCH`] that are
    /// queued without waiting for more.
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> std::io::Result<usize> {
        let b = &mut *batch.inner;
        // The kernel rewrote the name and control lengths of the headers it filled.
        for h in &mut b.hdrs[..b.len] {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_hdr.msg_controllen = size_of::<CmsgBuf>() as _;
        }
        b.len = 0;
        // SAFETY: the headers point into the same boxed `Inner` (see `RecvBatch::default`),
        // with the lengths given; the kernel writes at most those lengths.
        let n = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                b.hdrs.as_mut_ptr(),
                BATCH as _,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            let h = &b.hdrs[i].msg_hdr;
            let name = &b.names[i];
            let src = if h.msg_namelen as usize >= size_of::<libc::sockaddr_in>()
                && name.sin_family == libc::AF_INET as libc::sa_family_t
            {
                SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr)),
                    u16::from_be(name.sin_port),
                )
            } else {
                SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)
            };
            // SAFETY: the kernel filled this header.
            let (ifindex, local) = unsafe { packet_info(h) };
            b.meta[i] = Received {
                len: b.hdrs[i].msg_len as usize,
                src,
                ifindex,
                local,
            };
        }
        b.len = n;
        Ok(n)
    }

    /// Sends `data` to `to`, out of interface `ifindex` (0: let routing choose) from
    /// source address `src` (unspecified: the interface's primary address).
    pub fn send(
        &self,
        data: &[u8],
        to: SocketAddrV4,
        ifindex: u32,
        src: Ipv4Addr,
    ) -> std::io::Result<()> {
        let mut dest = sockaddr(to);
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut _,
            iov_len: data.len(),
        };
        let mut cmsg = CmsgBuf([0; 64]);
        // SAFETY: all-zero is a valid msghdr.
        let mut h: libc::msghdr = unsafe { zeroed() };
        // SAFETY: the header points at locals that outlive the call, with their sizes.
        unsafe {
            fill_send_header(&mut h, &mut dest, &mut iov, &mut cmsg, ifindex, src);
            if libc::sendmsg(self.sock.as_raw_fd(), &h, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Sends every reply queued in `batch` with as few `sendmmsg` calls as possible (one
    /// when all succeed), and calls `done(i, result)` once per reply, in order. A reply
    /// the kernel refuses gets its own error and the ones after it are still sent.
    pub fn send_batch(
        &self,
        batch: &mut SendBatch,
        mut done: impl FnMut(usize, std::io::Result<()>),
    ) {
        let b = &mut *batch.inner;
        let n = b.len;
        for i in 0..n {
            let d = b.dests[i];
            b.names[i] = sockaddr(d.to);
            b.iovs[i] = libc::iovec {
                iov_base: b.bufs[i].as_ptr() as *mut _,
                iov_len: b.bufs[i].len(),
            };
            // SAFETY: the header points into the same boxed `SendInner`, which is not
            // touched again until the sends below are done.
            unsafe {
                fill_send_header(
                    &mut b.hdrs[i].msg_hdr,
                    &mut b.names[i],
                    &mut b.iovs[i],
                    &mut b.cmsgs[i],
                    d.ifindex,
                    d.src,
                )
            };
            b.hdrs[i].msg_len = 0;
        }
        let mut start = 0;
        while start < n {
            // SAFETY: headers start..n were filled above and point at live buffers.
            let r = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    b.hdrs[start..n].as_mut_ptr(),
                    (n - start) as _,
                    0,
                )
            };
            if r > 0 {
                for i in start..start + r as usize {
                    done(i, Ok(()));
                }
                start += r as usize;
            } else {
                // The first message was refused (sendmmsg reports an error only when
                // nothing was sent); the rest are tried again after it.
                let e = if r < 0 {
                    std::io::Error::last_os_error()
                } else {
                    std::io::Error::other("sendmmsg sent nothing")
                };
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                done(start, Err(e));
                start += 1;
            }
        }
        b.len = 0;
    }
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut s: libc::sockaddr_in = unsafe { zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

/// Points `h` at one datagram: destination, data, and an `IP_PKTINFO` control message
/// naming the outgoing interface and source address.
///
/// # Safety
/// The pointed-to values must outlive every use of `h`.
unsafe fn fill_send_header(
    h: &mut libc::msghdr,
    dest: &mut libc::sockaddr_in,
    iov: &mut libc::iovec,
    cmsg: &mut CmsgBuf,
    ifindex: u32,
    src: Ipv4Addr,
) {
    h.msg_name = (dest as *mut libc::sockaddr_in).cast();
    h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    h.msg_iov = iov;
    h.msg_iovlen = 1;
    h.msg_control = cmsg.0.as_mut_ptr().cast();
    // SAFETY: the control message is written within `cmsg` (CMSG_SPACE of in_pktinfo
    // is well under its 64 bytes).
    unsafe {
        h.msg_controllen = libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as _;
        let c = libc::CMSG_FIRSTHDR(h);
        (*c).cmsg_level = libc::IPPROTO_IP;
        (*c).cmsg_type = libc::IP_PKTINFO;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
        let info = libc::in_pktinfo {
            ipi_ifindex: ifindex as i32,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(src).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>(), info);
    }
}

/// Ingress interface and local address from a received header's `IP_PKTINFO`.
///
/// # Safety
/// `h` must be a header filled in by `recvmsg`/`recvmmsg`.
unsafe fn packet_info(h: &libc::msghdr) -> (u32, Ipv4Addr) {
    let mut out = (0, Ipv4Addr::UNSPECIFIED);
    // SAFETY: the CMSG_* walk stays within msg_control/msg_controllen, as the caller
    // guarantees the kernel set them.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_PKTINFO {
                let info = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>());
                out = (
                    info.ipi_ifindex as u32,
                    Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr)),
                );
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    out
}

/// A worker's receive buffers: up to [`BATCH`] datagrams and where each came from,
/// with the `recvmmsg` headers pointing at them set up once.
pub struct RecvBatch {
    inner: Box<Inner>,
}

struct Inner {
    bufs: [[u8; MAX_DATAGRAM]; BATCH],
    iovs: [libc::iovec; BATCH],
    names: [libc::sockaddr_in; BATCH],
    cmsgs: [CmsgBuf; BATCH],
    hdrs: [libc::mmsghdr; BATCH],
    meta: [Received; BATCH],
    len: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        // SAFETY: all-zero is a valid value of each field (plain bytes, C structs with
        // null pointers, Ipv4Addr/SocketAddrV4 of zeros); allocated zeroed on the heap
        // directly, as 130 KiB would not fit every thread's stack.
        let mut inner: Box<Inner> = unsafe {
            let layout = std::alloc::Layout::new::<Inner>();
            let p = std::alloc::alloc_zeroed(layout).cast::<Inner>();
            if p.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            Box::from_raw(p)
        };
        let b = &mut *inner;
        for i in 0..BATCH {
            b.iovs[i] = libc::iovec {
                iov_base: b.bufs[i].as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            };
            let h = &mut b.hdrs[i].msg_hdr;
            h.msg_name = (&mut b.names[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut b.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = b.cmsgs[i].0.as_mut_ptr().cast();
            h.msg_controllen = size_of::<CmsgBuf>() as _;
        }
        RecvBatch { inner }
    }
}

impl RecvBatch {
    /// The datagrams of the last [`DhcpSocket::recv_batch`].
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Received)> {
        let b = &*self.inner;
        b.meta[..b.len]
            .iter()
            .zip(&b.bufs)
            .map(|(m, buf)| (&buf[..m.len.min(MAX_DATAGRAM)], m))
    }
}

/// Where one reply goes: destination, outgoing interface (0: routing decides) and
/// source address.
#[derive(Clone, Copy, Debug)]
pub struct Dest {
    pub to: SocketAddrV4,
    pub ifindex: u32,
    pub src: Ipv4Addr,
}

/// A worker's replies to one received batch, encoded into reused buffers and sent
/// together by [`DhcpSocket::send_batch`].
pub struct SendBatch {
    inner: Box<SendInner>,
}

struct SendInner {
    bufs: Vec<Vec<u8>>,
    dests: [Dest; BATCH],
    iovs: [libc::iovec; BATCH],
    names: [libc::sockaddr_in; BATCH],
    cmsgs: [CmsgBuf; BATCH],
    hdrs: [libc::mmsghdr; BATCH],
    len: usize,
}

impl Default for SendBatch {
    fn default() -> Self {
        let unset = Dest {
            to: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            ifindex: 0,
            src: Ipv4Addr::UNSPECIFIED,
        };
        // SAFETY: all-zero is a valid iovec, sockaddr_in, control buffer and mmsghdr
        // (null pointers); every header is filled in before it is used.
        let (iovs, names, cmsgs, hdrs) = unsafe { (zeroed(), zeroed(), zeroed(), zeroed()) };
        SendBatch {
            inner: Box::new(SendInner {
                bufs: (0..BATCH).map(|_| Vec::with_capacity(1500)).collect(),
                dests: [unset; BATCH],
                iovs,
                names,
                cmsgs,
                hdrs,
                len: 0,
            }),
        }
    }
}

impl SendBatch {
    /// The buffer for the next reply (the encoder replaces its content), or None when
    /// the batch is full. The reply is queued only by [`SendBatch::push`].
    pub fn next_buf(&mut self) -> Option<&mut Vec<u8>> {
        let b = &mut *self.inner;
        b.bufs.get_mut(b.len)
    }

    /// Queues the reply just written into [`SendBatch::next_buf`] for `dest`.
    pub fn push(&mut self, dest: Dest) {
        let b = &mut *self.inner;
        if b.len < BATCH {
            b.dests[b.len] = dest;
            b.len += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.inner.len
    }

    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }
}

/// The IPv4 addresses (with netmask) of every interface, by interface index.
pub fn interface_addresses() -> std::collections::HashMap<u32, Vec<(Ipv4Addr, Ipv4Addr)>> {
    let mut out: std::collections::HashMap<u32, Vec<(Ipv4Addr, Ipv4Addr)>> =
        std::collections::HashMap::new();
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return out;
    };
    for ifa in addrs {
        let (Some(addr), Some(mask)) = (ifa.address, ifa.netmask) else {
            continue;
        };
        let (Some(a), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) else {
            continue;
        };
        let Ok(idx) = nix::net::if_::if_nametoindex(ifa.interface_name.as_str()) else {
            continue;
        };
        out.entry(idx).or_default().push((a.ip(), m.ip()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(batch: &mut SendBatch, data: &[u8], dest: Dest) {
        let buf = batch.next_buf().expect("room in the batch");
        buf.clear();
        buf.extend_from_slice(data);
        batch.push(dest);
    }

    #[test]
    fn a_refused_reply_is_reported_alone_and_the_rest_are_sent() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let to = match rx.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let sock = DhcpSocket::bind(0, None, Duration::from_millis(100)).unwrap();
        let lo = Ipv4Addr::LOCALHOST;
        let mut batch = SendBatch::default();
        queue(
            &mut batch,
            b"one",
            Dest {
                to,
                ifindex: 0,
                src: lo,
            },
        );
        // No such interface: the kernel refuses this one.
        queue(
            &mut batch,
            b"bad",
            Dest {
                to,
                ifindex: 999_999,
                src: lo,
            },
        );
        queue(
            &mut batch,
            b"three",
            Dest {
                to,
                ifindex: 0,
                src: lo,
            },
        );
        assert_eq!(batch.len(), 3);
        let mut results = Vec::new();
        sock.send_batch(&mut batch, |i, r| results.push((i, r.is_ok())));
        assert_eq!(results, vec![(0, true), (1, false), (2, true)]);
        assert!(batch.is_empty());
        let mut buf = [0u8; 16];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"three");
    }
}
