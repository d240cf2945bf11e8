//! One read transfer, from request to outcome: resolve the path, gate the client,
//! negotiate options, then drive the [`Sender`] over the transfer's link.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use bootfiles::{Decision, Lookup};
use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::metrics as m;
use crate::net;
use crate::options::negotiate;
use crate::packet::{self, ErrorCode, Lossy, Packet};
use crate::sender::{Action, Sender};
use crate::server::Shared;
use crate::wire_image::{self, WireImage};

/// How a transfer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every block acknowledged.
    Completed,
    /// ERROR 8 right after our OACK: a size probe (OVMF asks for tsize, then aborts and
    /// asks again). Normal, not a failure.
    SizeProbe,
    /// The client sent an ERROR mid-transfer.
    ClientAborted,
    /// The client stopped answering.
    TimedOut,
    /// The service shut down before the transfer finished.
    Shutdown,
    /// The socket failed (e.g. ICMP port unreachable: the client went away).
    IoError,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::SizeProbe => "size_probe",
            Outcome::ClientAborted => "client_aborted",
            Outcome::TimedOut => "timeout",
            Outcome::Shutdown => "shutdown",
            Outcome::IoError => "io_error",
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Completed | Outcome::SizeProbe)
    }
}

/// Where the transfer's packets go and come from.
pub struct Link {
    pub tx: LinkTx,
    pub rx: LinkRx,
}

/// The sending half.
pub enum LinkTx {
    /// Per-transfer port: a socket bound to the request's local address, connected to the client.
    Own(Arc<UdpSocket>),
    /// Single-port mode: replies through the listener, source address set per packet.
    Shared {
        sock: Arc<UdpSocket>,
        peer: SocketAddr,
        local_ip: Option<IpAddr>,
    },
}

/// The receiving half.
pub enum LinkRx {
    Own(Arc<UdpSocket>),
    /// Single-port mode: the listener routes the client's datagrams here.
    Shared(mpsc::Receiver<Bytes>),
}

impl Link {
    /// A per-transfer socket.
    pub fn own(sock: UdpSocket) -> Link {
        let s = Arc::new(sock);
        Link {
            tx: LinkTx::Own(s.clone()),
            rx: LinkRx::Own(s),
        }
    }
}

impl LinkTx {
    async fn send(&self, parts: &[&[u8]]) -> io::Result<()> {
        match self {
            LinkTx::Own(s) => net::send_connected(s, parts).await,
            LinkTx::Shared {
                sock,
                peer,
                local_ip,
            } => net::send_from(sock, parts, *peer, *local_ip).await,
        }
    }

    /// A window of DATA packets, batched into as few syscalls as the kernel allows.
    async fn send_window(&self, segments: &[([u8; 4], &[u8])]) -> io::Result<()> {
        match self {
            LinkTx::Own(s) => net::send_segments(s, segments, None).await,
            LinkTx::Shared {
                sock,
                peer,
                local_ip,
            } => net::send_segments(sock, segments, Some((*peer, *local_ip))).await,
        }
    }

    /// Whether windows of `blksize` can go out from a wire image: only from a
    /// per-transfer socket (`sendfile` cannot address a reply from the shared one), and
    /// only for packets that fit one `sendfile` batch (jumbo blksizes copy).
    fn can_send_images(&self, blksize: u16) -> bool {
        matches!(self, LinkTx::Own(_)) && 4 + u64::from(blksize) <= IMAGE_BATCH_BYTES
    }
}

/// How a transfer's windows go out: from its file's wire image while it has one, copied
/// from the file otherwise.
struct Windows<'a> {
    data: &'a Bytes,
    image: Option<Arc<WireImage>>,
    /// The socket's segment size is the image's packet size. Set with the first window,
    /// not before: every later send on the socket is cut at that size, and the OACK
    /// (longer than a small blksize's packet) must go out whole. Windows start only after
    /// the OACK's ACK, and a transfer sends no other packet after them.
    segment_size_set: bool,
    /// The copying path's (header, body) list, reused.
    scratch: Vec<([u8; 4], &'a [u8])>,
}

impl<'a> Windows<'a> {
    fn new(data: &'a Bytes, image: Option<Arc<WireImage>>) -> Windows<'a> {
        Windows {
            data,
            image,
            segment_size_set: false,
            scratch: Vec::new(),
        }
    }

    /// Sends blocks `first..=last` (`bytes` of file data). Returns whether they went out
    /// zero-copy. A kernel refusal other than the client's closed port (which the caller
    /// ends the transfer on) makes this and every later window of the transfer copy.
    async fn send(
        &mut self,
        link: &LinkTx,
        sender: &Sender,
        first: u64,
        last: u64,
        bytes: u64,
    ) -> io::Result<bool> {
        if let (Some(img), LinkTx::Own(sock)) = (&self.image, link) {
            let mut r = Ok(());
            if !self.segment_size_set {
                r = net::set_segment_size(sock, 4 + img.blksize);
                self.segment_size_set = r.is_ok();
            }
            if r.is_ok() {
                r = send_from_image(sock, img, first, (last - first + 1) * 4 + bytes).await;
            }
            match r {
                Ok(()) => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(e),
                Err(e) => {
                    tracing::info!(error = %e, "zero-copy send refused by the kernel; this transfer copies");
                    self.image = None;
                }
            }
        }
        self.scratch.clear();
        for n in first..=last {
            self.scratch.push((
                packet::data_header(Sender::wire_block(n)),
                &self.data[sender.block_range(n)],
            ));
        }
        link.send_window(&self.scratch).await.map(|()| false)
    }
}

/// Blocks from `first` on (`len` bytes of packets) from the wire image, a `sendfile` per
/// batch of segments.
async fn send_from_image(
    sock: &UdpSocket,
    image: &WireImage,
    first: u64,
    len: u64,
) -> io::Result<()> {
    let seg = 4 + u64::from(image.blksize);
    // At most 64 segments (UDP_MAX_SEGMENTS) and 14 pages per call, so that the range
    // fits sendfile's 16-page pipe and goes out as one sendmsg.
    let batch = (IMAGE_BATCH_BYTES / seg).clamp(1, 64) * seg;
    let start = wire_image::block_offset(first, image.blksize);
    let mut off = 0;
    while off < len {
        let n = batch.min(len - off) as usize;
        let sent = net::send_file_range(sock, image.fd(), start + off, n).await?;
        if sent < n {
            // Not seen on Linux (a UDP send is whole or fails); the missing blocks are a
            // loss the client's ACK and our timer recover from.
            m::packet_dropped("short_send");
            return Ok(());
        }
        off += n as u64;
    }
    Ok(())
}

/// Bytes of packets one zero-copy `sendfile` sends at most.
const IMAGE_BATCH_BYTES: u64 = 14 * 4096;

impl LinkRx {
    /// Busy-polls for up to `budget` ([`net::spin`]): `None` when nothing arrived (or the
    /// link cannot be polled: single-port transfers get their datagrams from the
    /// listener's thread).
    fn poll(
        &mut self,
        buf: &mut [u8],
        budget: std::time::Duration,
    ) -> Option<io::Result<Option<usize>>> {
        let LinkRx::Own(s) = self else { return None };
        let fd = s.as_raw_fd();
        net::spin(budget, || {
            nix::sys::socket::recv(fd, buf, nix::sys::socket::MsgFlags::MSG_DONTWAIT)
        })
        .map(|r| r.map(Some).map_err(io::Error::from))
    }

    /// Next datagram from the client. `Ok(None)` when the link closed.
    async fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self {
            LinkRx::Own(s) => s.recv(buf).await.map(Some),
            LinkRx::Shared(rx) => Ok(rx.recv().await.map(|b| {
                let n = b.len().min(buf.len());
                buf[..n].copy_from_slice(&b[..n]);
                n
            })),
        }
    }
}

/// Everything a transfer task needs about its request.
pub struct Request {
    pub datagram: Bytes,
    pub peer: SocketAddr,
    pub local_ip: Option<IpAddr>,
}

/// Runs one request to its end. Errors to the client are sent here; counting and logging
/// happen here too, so every request leaves exactly one log line.
pub async fn run(
    shared: Arc<Shared>,
    req: Request,
    link: Link,
    mut hard_stop: watch::Receiver<bool>,
) {
    let Link { tx, mut rx } = link;
    let started = Instant::now();
    let datagram = req.datagram.clone();
    let Ok(Packet::Rrq(rrq)) = packet::decode(&datagram) else {
        return;
    };
    let raw_name = String::from_utf8_lossy(rrq.filename).into_owned();
    let span = tracing::info_span!("tftp", client = %req.peer, file = %Lossy(rrq.filename));
    // A boot file handed out by dhcp-svc carries the DHCP span's context as a suffix.
    ironboot_telemetry::trace::set_parent(
        &span,
        std::str::from_utf8(rrq.filename)
            .ok()
            .and_then(bootfiles::suffix_traceparent),
    );
    async move {
        if !rrq.is_octet() {
            refuse(&tx, &req, &raw_name, ErrorCode::IllegalOperation, "only octet (binary) mode is served", "mode").await;
            return;
        }
        let Ok(name) = std::str::from_utf8(rrq.filename) else {
            refuse(&tx, &req, &raw_name, ErrorCode::FileNotFound, "file not found", "bad_path").await;
            return;
        };
        let (path, file) = match bootfiles::resolve(&shared.catalogue, name) {
            Ok(x) => x,
            Err(Lookup::BadPath(e)) => {
                refuse(&tx, &req, &raw_name, ErrorCode::AccessViolation, &format!("access violation: {e}"), "bad_path").await;
                return;
            }
            Err(Lookup::NotFound) => {
                refuse(&tx, &req, &raw_name, ErrorCode::FileNotFound, "file not found", "not_found").await;
                return;
            }
        };
        let client_v4 = match req.peer.ip() {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(a) => a.to_ipv4_mapped(),
        };
        let decision = bootfiles::gate::check(
            shared.cache.as_ref(),
            path.mac,
            client_v4,
            shared.settings.unknown_clients,
            shared.settings.lookup_timeout,
        )
        .await;
        let machine = match decision {
            Decision::Allow { machine } => machine,
            Decision::Refuse { reason, machine } => {
                tracing::info!(machine = machine.as_deref().unwrap_or(""), mac = ?path.mac, "netboot refused");
                refuse(&tx, &req, &raw_name, ErrorCode::AccessViolation, "access violation: network boot is not allowed for this machine", reason.as_str()).await;
                return;
            }
        };
        let neg = negotiate(&rrq, file.size(), &shared.settings.limits);
        let mut timing = shared.settings.timing;
        if let Some(t) = neg.timeout {
            timing.max_rto = t.max(timing.min_rto);
        }
        let mut sender = Sender::new(file.size(), neg.blksize, neg.windowsize, neg.needs_oack(), timing);
        let oack = if neg.needs_oack() {
            packet::encode_oack(neg.oack.iter().map(|(k, v)| (k.as_str(), v.clone())))
        } else {
            Vec::new()
        };
        let image = if tx.can_send_images(neg.blksize) { shared.images.get(&shared.catalogue, &file, neg.blksize) } else { None };
        m::transfer_started();
        let outcome = drive(&shared, &mut sender, &tx, &mut rx, Windows::new(&file.data, image), &oack, &mut hard_stop).await;
        let elapsed = started.elapsed();
        m::transfer_finished(outcome, elapsed, &sender.stats);
        let traceparent = path.traceparent.filter(|t| t.is_valid()).map(|t| t.to_string());
        tracing::info!(
            outcome = outcome.as_str(),
            name = %path.name,
            mac = ?path.mac,
            machine = machine.as_deref().unwrap_or(""),
            traceparent = traceparent.as_deref().unwrap_or(""),
            local = ?req.local_ip,
            size = file.size(),
            bytes = sender.bytes_acked(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            blksize = neg.blksize,
            windowsize = neg.windowsize,
            packets = sender.stats.packets,
            retransmits = sender.stats.retransmits,
            duplicate_acks = sender.stats.duplicate_acks,
            "transfer finished"
        );
    }
    .instrument(span)
    .await
}

/// Sends an ERROR (never retransmitted, per RFC 1350) and counts the refusal.
async fn refuse(
    link: &LinkTx,
    req: &Request,
    name: &str,
    code: ErrorCode,
    msg: &str,
    reason: &'static str,
) {
    m::refused(reason);
    tracing::info!(reason, requested = name, local = ?req.local_ip, "request refused");
    let _ = link.send(&[&packet::encode_error(code, msg)]).await;
}

/// A send error that ends the transfer: the client's port is closed (ICMP port
/// unreachable). Anything else (a local firewall's EPERM, ENOBUFS under pressure) is
/// treated like a lost packet: the retransmit timer and retry limit deal with it.
fn fatal(e: &io::Error) -> bool {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        return true;
    }
    m::packet_dropped("send_error");
    tracing::debug!(error = %e, "send failed; retransmit timer will retry");
    false
}

/// Consecutive windows whose ACK did not arrive within the busy-poll budget after which a
/// transfer stops polling (a client across a real network, or one that sleeps: polling
/// would only burn the budget per window).
const POLL_MISSES_MAX: u32 = 3;

/// The send/ack loop.
async fn drive(
    shared: &Shared,
    sender: &mut Sender,
    link: &LinkTx,
    link_rx: &mut LinkRx,
    mut windows: Windows<'_>,
    oack: &[u8],
    hard_stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let mut buf = vec![0u8; 2048];
    let mut action = sender.start(Instant::now());
    let mut deadline = tokio::time::Instant::now();
    let budget = shared.settings.busy_poll;
    let mut poll_misses = 0u32;
    let bytes_sent = m::bytes_sent_counter();
    let zero_copy_sent = m::zero_copy_bytes_counter();
    loop {
        let mut sent = false;
        match action {
            Action::Complete => return Outcome::Completed,
            Action::GiveUp => return Outcome::TimedOut,
            Action::Wait => {}
            Action::SendOack => {
                if let Err(e) = link.send(&[oack]).await
                    && fatal(&e)
                {
                    return Outcome::IoError;
                }
                deadline = tokio::time::Instant::now() + sender.rto();
                sent = true;
            }
            Action::SendBlocks { first, last } => {
                let bytes =
                    (sender.block_range(first).start..sender.block_range(last).end).len() as u64;
                match windows.send(link, sender, first, last, bytes).await {
                    Ok(true) => zero_copy_sent.increment(bytes),
                    Ok(false) => {}
                    Err(e) if fatal(&e) => return Outcome::IoError,
                    Err(_) => {}
                }
                bytes_sent.increment(bytes);
                deadline = tokio::time::Instant::now() + sender.rto();
                sent = true;
            }
        }
        // Busy-poll for the answer to what just went out: a fast client answers sooner
        // than this thread could be woken for it. Only while the transfers fit the workers
        // (polling holds the shard's thread) and the ACKs keep arriving within the budget.
        let polled = if sent
            && !budget.is_zero()
            && poll_misses < POLL_MISSES_MAX
            && shared.active_transfers() <= shared.settings.workers
        {
            let r = link_rx.poll(&mut buf, budget);
            if r.is_none() {
                poll_misses += 1;
            } else {
                poll_misses = 0;
            }
            r
        } else {
            None
        };
        let received = match polled {
            Some(r) => r,
            None => tokio::select! {
                _ = hard_stop.changed() => return Outcome::Shutdown,
                _ = tokio::time::sleep_until(deadline) => {
                    action = sender.on_timeout(Instant::now());
                    continue;
                }
                r = link_rx.recv(&mut buf) => r,
            },
        };
        action = match received {
            Ok(Some(n)) => match packet::decode(&buf[..n]) {
                Ok(Packet::Ack(b)) => sender.on_ack(b, Instant::now()),
                Ok(Packet::Error { code, .. }) => {
                    return if code == ErrorCode::OptionRefused as u16
                        && sender.is_waiting_for_oack_ack()
                    {
                        Outcome::SizeProbe
                    } else {
                        Outcome::ClientAborted
                    };
                }
                Ok(_) => Action::Wait,
                Err(e) => {
                    m::packet_dropped(e.label());
                    Action::Wait
                }
            },
            Ok(None) => return Outcome::Shutdown,
            // ICMP port unreachable surfaces as ECONNREFUSED on a connected socket.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Outcome::IoError,
            Err(_) => Action::Wait,
        };
    }
}
