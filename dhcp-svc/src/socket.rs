//! UDP sockets that know where a packet came in and can answer out of the same door.
//!
//! tokio's `UdpSocket` has no control-message API, and the fast path does not need a
//! runtime at all: workers are plain threads blocked in `recvmsg`, with `IP_PKTINFO`
//! telling them the ingress interface and address, and the reply's `sendmsg` naming the
//! interface and source address explicitly. That is what lets one instance serve
//! several links (and answer a broadcast out of the right one).

use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, sendmsg, setsockopt, sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};

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
            sock.bind_device(Some(dev.as_bytes()))
                .map_err(|e| std::io::Error::new(e.kind(), format!("binding to interface {dev}: {e}")))?;
        }
        setsockopt(&sock, sockopt::Ipv4PacketInfo, &true).map_err(std::io::Error::from)?;
        sock.set_read_timeout(Some(read_timeout))?;
        // Absorb bursts (a rack powering on) instead of dropping in the kernel.
        let _ = sock.set_recv_buffer_size(4 << 20);
        let _ = sock.set_send_buffer_size(4 << 20);
        sock.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())
            .map_err(|e| std::io::Error::new(e.kind(), format!("binding UDP port {port}: {e}")))?;
        let port = sock.local_addr()?.as_socket_ipv4().map(|a| a.port()).unwrap_or(port);
        Ok(DhcpSocket { sock, device: device.map(str::to_string), port })
    }

    /// Blocks until a datagram arrives or the read timeout passes
    /// (`ErrorKind::WouldBlock`/`TimedOut`).
    pub fn recv(&self, buf: &mut [u8]) -> std::io::Result<Received> {
        let mut cmsg = nix::cmsg_space!(nix::libc::in_pktinfo);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrIn>(self.sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
            .map_err(std::io::Error::from)?;
        let src = msg.address.map(|a| SocketAddrV4::new(a.ip(), a.port())).unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        let mut ifindex = 0;
        let mut local = Ipv4Addr::UNSPECIFIED;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::Ipv4PacketInfo(info) = c {
                    ifindex = info.ipi_ifindex as u32;
                    local = Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr));
                }
            }
        }
        Ok(Received { len: msg.bytes, src, ifindex, local })
    }

    /// Sends `data` to `to`, out of interface `ifindex` (0: let routing choose) from
    /// source address `src` (unspecified: the interface's primary address).
    pub fn send(&self, data: &[u8], to: SocketAddrV4, ifindex: u32, src: Ipv4Addr) -> std::io::Result<()> {
        let info = nix::libc::in_pktinfo {
            ipi_ifindex: ifindex as i32,
            ipi_spec_dst: nix::libc::in_addr { s_addr: u32::from(src).to_be() },
            ipi_addr: nix::libc::in_addr { s_addr: 0 },
        };
        let cmsgs = [ControlMessage::Ipv4PacketInfo(&info)];
        let dest = SockaddrIn::from(to);
        sendmsg(self.sock.as_raw_fd(), &[IoSlice::new(data)], &cmsgs, MsgFlags::empty(), Some(&dest)).map_err(std::io::Error::from)?;
        Ok(())
    }
}

/// The IPv4 addresses (with netmask) of every interface, by interface index.
pub fn interface_addresses() -> std::collections::HashMap<u32, Vec<(Ipv4Addr, Ipv4Addr)>> {
    let mut out: std::collections::HashMap<u32, Vec<(Ipv4Addr, Ipv4Addr)>> = std::collections::HashMap::new();
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return out };
    for ifa in addrs {
        let (Some(addr), Some(mask)) = (ifa.address, ifa.netmask) else { continue };
        let (Some(a), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) else { continue };
        let Ok(idx) = nix::net::if_::if_nametoindex(ifa.interface_name.as_str()) else { continue };
        out.entry(idx).or_default().push((a.ip(), m.ip()));
    }
    out
}
