//! A small TFTP read client for the tests and the benchmark.
//!
//! The packaged clients (tftp-hpa, curl, busybox) cannot ask for `windowsize`, cannot
//! play OVMF's "OACK then ERROR 8" probe, and do not report which address answered. This
//! one does all three, receives windows the RFC 7440 way (ACK at the end of a window,
//! ACK the last in-order block at once on a gap), and handles rollover.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::packet::{self, ErrorCode, OP_RRQ, Packet};

/// What to ask for.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub blksize: Option<u16>,
    pub windowsize: Option<u16>,
    /// Send `tsize 0`.
    pub tsize: bool,
    /// `timeout` option, seconds.
    pub timeout_opt: Option<u8>,
    pub mode: String,
    /// Our own retransmit timeout.
    pub rto: Duration,
    pub retries: u32,
    /// Abort with ERROR 8 after the OACK, as OVMF's size probe does.
    pub probe_only: bool,
    /// Local address to bind (default: unspecified of the server's family, port 0).
    pub bind: Option<SocketAddr>,
    /// Adds every in-order data byte received (benchmarks measure throughput over a fixed
    /// time, including transfers still running).
    pub progress: Option<Arc<AtomicU64>>,
    /// Poll the socket (non-blocking receives in a loop) for up to this long before
    /// sleeping in the runtime: how firmware TFTP stacks (UEFI, iPXE) wait — they poll the
    /// NIC and never sleep. Blocks the runtime's thread while it polls, so it is meant for
    /// one download at a time on a CPU of its own (the benchmark's single transfer).
    pub spin: Option<Duration>,
    /// Count the data without keeping it (`Download::data` stays empty), as `curl -o
    /// /dev/null` does: a benchmark comparing the two then times the protocols, not one
    /// client's writes into fresh memory.
    pub discard: bool,
    /// Let the kernel coalesce the server's datagrams (Linux `UDP_GRO`): one receive
    /// returns a run of same-sized DATA packets, split here by the segment size the
    /// kernel reports. What a TCP client gets for free (curl on loopback receives up to
    /// 100 KB at a time), asked for the way QUIC stacks do; each DATA packet is still
    /// checked one by one.
    pub gro: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            blksize: None,
            windowsize: None,
            tsize: false,
            timeout_opt: None,
            mode: "octet".into(),
            rto: Duration::from_millis(500),
            retries: 10,
            probe_only: false,
            bind: None,
            progress: None,
            spin: None,
            discard: false,
            gro: false,
        }
    }
}

/// A finished download.
#[derive(Clone, Debug)]
pub struct Download {
    /// The file (empty with `discard`).
    pub data: Vec<u8>,
    /// Bytes received, kept or not.
    pub size: u64,
    /// Options the server acknowledged (empty without an OACK).
    pub oack: Vec<(String, String)>,
    /// The address and port the server answered from.
    pub server: SocketAddr,
    /// ACKs (or the RRQ) we had to send again.
    pub retransmits: u64,
    /// Receives that returned something: one per datagram, fewer with `gro`.
    pub receives: u64,
    pub elapsed: Duration,
}

impl Download {
    pub fn oack_value(&self, name: &str) -> Option<&str> {
        self.oack
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("server error {code}: {message}")]
    Tftp { code: u16, message: String },
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
}

/// Downloads `name` from `server`.
pub async fn get(
    server: SocketAddr,
    name: &str,
    o: &ClientOptions,
) -> Result<Download, ClientError> {
    let started = Instant::now();
    let bind = o.bind.unwrap_or_else(|| {
        if server.is_ipv4() {
            "0.0.0.0:0".parse().unwrap_or(server)
        } else {
            "[::]:0".parse().unwrap_or(server)
        }
    });
    let sock = UdpSocket::bind(bind).await?;
    if o.gro {
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::UdpGroSegment, &true)
            .map_err(std::io::Error::from)?;
    }
    let mut opts: Vec<(&str, String)> = Vec::new();
    if let Some(b) = o.blksize {
        opts.push(("blksize", b.to_string()));
    }
    if o.tsize {
        opts.push(("tsize", "0".into()));
    }
    if let Some(t) = o.timeout_opt {
        opts.push(("timeout", t.to_string()));
    }
    if let Some(w) = o.windowsize {
        opts.push(("windowsize", w.to_string()));
    }
    let rrq = packet::encode_request(OP_RRQ, name, &o.mode, &opts);
    sock.send_to(&rrq, server).await?;

    let mut buf = vec![0u8; 65536 + 4];
    let mut peer: Option<SocketAddr> = None;
    let mut data = Vec::new();
    let mut size = 0u64;
    let mut oack = Vec::new();
    let mut blksize = 512usize;
    let mut window = 1u64;
    // Last block received in order (absolute), and blocks received since our last ACK.
    let mut got: u64 = 0;
    let mut in_window = 0u64;
    let mut last_sent: Vec<u8> = rrq.clone();
    let mut retransmits = 0u64;
    let mut receives = 0u64;
    let mut tries = 0u32;
    let mut gap_acked_at: Option<u64> = None;

    // The datagrams of the last receive not handled yet (several only with `gro`).
    let mut pending = Segments::none();
    loop {
        if pending.is_empty() {
            let polled = match o.spin {
                Some(budget) => poll_recv(&sock, &mut buf, budget, o.gro)?,
                None => None,
            };
            let r = match polled {
                Some(x) => Ok(Ok(x)),
                None => tokio::time::timeout(o.rto, recv(&sock, &mut buf, o.gro)).await,
            };
            pending = match r {
                Err(_) => {
                    tries += 1;
                    if tries > o.retries {
                        return Err(ClientError::Timeout);
                    }
                    retransmits += 1;
                    let to = peer.unwrap_or(server);
                    sock.send_to(&last_sent, to).await?;
                    in_window = 0;
                    continue;
                }
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(x)) => {
                    receives += 1;
                    x
                }
            };
        }
        let (range, from) = pending.next();
        match peer {
            // The transfer's port is whoever answers first, so only an answer can set it:
            // a stray packet (a server still sending to an earlier socket of this port
            // number) would otherwise capture the transfer, and the real OACK would be
            // refused as an unknown TID.
            None if !is_first_answer(&buf[range.clone()]) => continue,
            None => peer = Some(from),
            Some(p) if p != from => {
                let e = packet::encode_error(ErrorCode::UnknownTid, "unknown transfer id");
                let _ = sock.send_to(&e, from).await;
                pending = Segments::none();
                continue;
            }
            Some(_) => {}
        }
        let to = from;
        match packet::decode(&buf[range]) {
            Ok(Packet::Oack(opts)) if got == 0 && oack.is_empty() => {
                tries = 0;
                for (k, v) in opts {
                    let k = String::from_utf8_lossy(k).to_string();
                    let v = String::from_utf8_lossy(v).to_string();
                    match k.to_ascii_lowercase().as_str() {
                        "blksize" => {
                            blksize = v
                                .parse()
                                .map_err(|_| ClientError::Protocol(format!("blksize {v}")))?
                        }
                        "windowsize" => {
                            window = v
                                .parse()
                                .map_err(|_| ClientError::Protocol(format!("windowsize {v}")))?
                        }
                        _ => {}
                    }
                    oack.push((k, v));
                }
                if o.probe_only {
                    let e = packet::encode_error(ErrorCode::OptionRefused, "size probe done");
                    sock.send_to(&e, to).await?;
                    return Ok(Download {
                        data,
                        size,
                        oack,
                        server: to,
                        retransmits,
                        receives,
                        elapsed: started.elapsed(),
                    });
                }
                last_sent = packet::encode_ack(0).to_vec();
                sock.send_to(&last_sent, to).await?;
            }
            Ok(Packet::Oack(_)) => {
                // Our ACK 0 was lost: the server resent the OACK.
                sock.send_to(&packet::encode_ack(0), to).await?;
            }
            Ok(Packet::Data { block, data: d }) => {
                let expected = ((got + 1) & 0xffff) as u16;
                if block == expected {
                    tries = 0;
                    if d.len() > blksize {
                        return Err(ClientError::Protocol(format!(
                            "block of {} bytes with blksize {blksize}",
                            d.len()
                        )));
                    }
                    if !o.discard {
                        data.extend_from_slice(d);
                    }
                    size += d.len() as u64;
                    if let Some(p) = &o.progress {
                        p.fetch_add(d.len() as u64, Ordering::Relaxed);
                    }
                    got += 1;
                    in_window += 1;
                    gap_acked_at = None;
                    let last = d.len() < blksize;
                    if last || in_window >= window {
                        last_sent = packet::encode_ack(block).to_vec();
                        sock.send_to(&last_sent, to).await?;
                        in_window = 0;
                    }
                    if last {
                        return Ok(Download {
                            data,
                            size,
                            oack,
                            server: to,
                            retransmits,
                            receives,
                            elapsed: started.elapsed(),
                        });
                    }
                } else if gap_acked_at != Some(got) && block.wrapping_sub(expected) < 0x8000 {
                    // A gap: ask the sender to continue after the last block we have.
                    gap_acked_at = Some(got);
                    last_sent = packet::encode_ack((got & 0xffff) as u16).to_vec();
                    sock.send_to(&last_sent, to).await?;
                    in_window = 0;
                }
                // Older duplicates are ignored.
            }
            Ok(Packet::Error { code, message }) => {
                return Err(ClientError::Tftp {
                    code,
                    message: String::from_utf8_lossy(message).into_owned(),
                });
            }
            Ok(_) | Err(_) => {}
        }
    }
}

/// Whether a datagram can be the server's first answer to our RRQ: an OACK, an ERROR,
/// or DATA block 1 of at most the default 512 bytes (a server that ignores options).
/// The address it came from is not checked here: the tests assert it.
fn is_first_answer(datagram: &[u8]) -> bool {
    match packet::decode(datagram) {
        Ok(Packet::Oack(_) | Packet::Error { .. }) => true,
        Ok(Packet::Data { block, data }) => block == 1 && data.len() <= 512,
        _ => false,
    }
}

/// Where the datagrams of one receive lie in the buffer: `len` bytes from `from`, cut
/// every `seg` bytes (a single datagram when the kernel did not coalesce). An empty
/// datagram has nothing in it to handle.
struct Segments {
    len: usize,
    seg: usize,
    at: usize,
    from: SocketAddr,
}

impl Segments {
    fn one(len: usize, from: SocketAddr) -> Segments {
        Segments {
            len,
            seg: len,
            at: 0,
            from,
        }
    }

    fn none() -> Segments {
        Segments::one(0, ([0, 0, 0, 0], 0).into())
    }

    fn is_empty(&self) -> bool {
        self.at >= self.len
    }

    /// The next datagram's bytes and sender (after `is_empty` said no).
    fn next(&mut self) -> (std::ops::Range<usize>, SocketAddr) {
        let start = self.at;
        self.at = (start + self.seg.max(1)).min(self.len);
        (start..self.at, self.from)
    }
}

/// One receive: a datagram, or with `gro` a run of coalesced ones and their segment size
/// from the `UDP_GRO` control message. Non-blocking (tokio set `O_NONBLOCK`).
fn recv_now(fd: std::os::fd::RawFd, buf: &mut [u8], gro: bool) -> nix::Result<Option<Segments>> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvfrom, recvmsg};
    let to_addr = |a: &SockaddrStorage| {
        if let Some(v4) = a.as_sockaddr_in() {
            Some(SocketAddr::V4((*v4).into()))
        } else {
            a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
        }
    };
    if !gro {
        let (n, a) = recvfrom::<SockaddrStorage>(fd, buf)?;
        return Ok(a
            .as_ref()
            .and_then(to_addr)
            .map(|from| Segments::one(n, from)));
    }
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(i32);
    let m = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
    let Some(from) = m.address.as_ref().and_then(to_addr) else {
        return Ok(None);
    };
    let mut s = Segments::one(m.bytes, from);
    for c in m.cmsgs()? {
        if let ControlMessageOwned::UdpGroSegments(seg) = c
            && seg > 0
        {
            s.seg = seg as usize;
        }
    }
    if m.flags.contains(MsgFlags::MSG_TRUNC) {
        // A cut datagram would read as a short, final block: keep the whole ones only
        // (the sender sends the rest again).
        s.len = if s.seg < m.bytes {
            m.bytes - m.bytes % s.seg
        } else {
            0
        };
    }
    Ok(Some(s))
}

/// Waits in the runtime for the next receive.
async fn recv(sock: &UdpSocket, buf: &mut [u8], gro: bool) -> std::io::Result<Segments> {
    use std::os::fd::AsRawFd;
    loop {
        let r = sock.async_io(tokio::io::Interest::READABLE, || {
            match recv_now(sock.as_raw_fd(), buf, gro) {
                Ok(s) => Ok(s),
                Err(e) => Err(std::io::Error::from(e)),
            }
        });
        if let Some(s) = r.await? {
            return Ok(s);
        }
    }
}

/// Busy-polls for up to `budget` ([`crate::net::spin`]). `Ok(None)` when nothing arrived.
fn poll_recv(
    sock: &UdpSocket,
    buf: &mut [u8],
    budget: Duration,
    gro: bool,
) -> std::io::Result<Option<Segments>> {
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    match crate::net::spin(budget, || recv_now(fd, buf, gro)) {
        Some(Ok(s)) => Ok(s),
        Some(Err(e)) => Err(e.into()),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(block: u16, len: usize) -> Vec<u8> {
        let mut p = packet::data_header(block).to_vec();
        p.resize(4 + len, 0x42);
        p
    }

    #[tokio::test]
    async fn a_stray_packet_before_the_answer_does_not_capture_the_transfer() {
        // A scripted server: the RRQ arrives, a stray DATA block 1 of 1,468 bytes (a
        // server still sending to an earlier socket of the client's port) lands first,
        // then the real transfer answers from a port of its own.
        let listener = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let script = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let (_, client) = listener.recv_from(&mut buf).await.unwrap();
            let stray = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            stray.send_to(&data(1, 1468), client).await.unwrap();
            stray.send_to(&data(2, 1468), client).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            let transfer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            transfer
                .send_to(
                    &packet::encode_oack([("blksize", "1468".to_string())]),
                    client,
                )
                .await
                .unwrap();
            let (n, _) = transfer.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], &packet::encode_ack(0));
            transfer.send_to(&data(1, 100), client).await.unwrap();
            let (n, _) = transfer.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], &packet::encode_ack(1));
            transfer.local_addr().unwrap()
        });
        let o = ClientOptions {
            blksize: Some(1468),
            ..ClientOptions::default()
        };
        let d = get(server, "f", &o)
            .await
            .expect("the stray packets are ignored");
        assert_eq!(d.data, vec![0x42; 100]);
        assert_eq!(d.server, script.await.unwrap());
        assert_eq!(d.oack_value("blksize"), Some("1468"));
    }

    #[test]
    fn first_answers() {
        assert!(is_first_answer(&packet::encode_oack([(
            "blksize",
            "1468".to_string()
        )])));
        assert!(is_first_answer(&packet::encode_error(
            ErrorCode::FileNotFound,
            "no"
        )));
        assert!(is_first_answer(&data(1, 512)));
        assert!(
            !is_first_answer(&data(1, 513)),
            "blksize was not granted: no block can be longer"
        );
        assert!(!is_first_answer(&data(2, 10)));
        assert!(!is_first_answer(&packet::encode_ack(0)));
        assert!(!is_first_answer(b"\x00"));
    }
}
