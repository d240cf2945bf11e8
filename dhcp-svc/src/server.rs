//! Running the service: sockets, worker threads, the registry cache, the miss path,
//! metrics and the admin endpoint.
//!
//! The fast path is a worker thread: `recvmmsg` → per datagram decode → cache lookup
//! (a hash-map read of the MAC's [`Known`], worked out when its record arrived) → decide
//! → encode into the batch's reply slot; then one `sendmmsg`
//! for the batch's replies and, per reply, its counter, boot trace record and log line
//! ([`Service::prepare`] before the send, [`Service::after_send`] after it). No async
//! runtime, no allocation beyond the reply. Only a cache miss leaves it: the request is queued (bounded) for one
//! registry lookup on the tokio runtime, so a machine registered a moment ago is still
//! answered on its first DISCOVER, and a flood of unknown MACs costs counted drops.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use axum::routing::get;
use ironboot_proto::MacAddr;
use ironboot_proto::cache::{CacheConfig, Derive, Derived, HardwareCache};
use ironboot_proto::pb::Hardware;
use ironboot_telemetry::TraceParent;
use ironboot_telemetry::trace::continue_trace;
use metrics::{Counter, Histogram, counter, histogram};
use tokio::sync::{Semaphore, mpsc};

use crate::boot_trace::BootTraces;
use crate::config::Config;
use crate::decide::{Arrival, Decision, Known, Route, Settings, Silence, decide_with, route};
use crate::netboot::{BootAnswer, Client, classify, client_arch};
use crate::packet::{Request, SERVER_PORT};
use crate::seen::Seen;
use crate::socket::{Dest, DhcpSocket, Received, RecvBatch, SendBatch, interface_addresses};

/// A request whose MAC was not cached, waiting for one registry lookup.
struct Miss {
    data: Vec<u8>,
    rx: Received,
    socket: usize,
}

/// A reply queued in the worker's send batch: what to count, remember and log once it
/// has been sent.
struct Pending {
    ty: &'static str,
    answer: &'static str,
    chaddr: [u8; 6],
    xid: u32,
    to: SocketAddrV4,
    /// The trace context the reply hands on (registered netboot clients only).
    trace: Option<TraceParent>,
    /// The packet's span, entered again for the log line after the send.
    span: Option<tracing::Span>,
    client: Client,
    boot: Option<BootAnswer>,
    yiaddr: Ipv4Addr,
    known: Option<Arc<Known>>,
}

struct Service {
    settings: Settings,
    mode: &'static str,
    counters: PacketCounters,
    decision_seconds: Histogram,
    server_id: Option<Ipv4Addr>,
    tftp_server: Option<Ipv4Addr>,
    cache: HardwareCache,
    seen: Seen,
    sockets: Vec<(Arc<DhcpSocket>, bool)>,
    ifaddrs: RwLock<HashMap<u32, Vec<(Ipv4Addr, Ipv4Addr)>>>,
    miss_tx: mpsc::Sender<Miss>,
    stop: AtomicBool,
    boot_traces: BootTraces,
}

/// `dhcp_packets_total` handles, registered once: a labelled `counter!` looks the
/// series up in the registry on every call, which showed up in the per-packet profile.
/// Indexed by position in `TYPES` and `OUTCOMES` (comparing a few short strings is
/// cheaper than hashing two of them).
struct PacketCounters {
    mode: &'static str,
    handles: Vec<Counter>,
}

const TYPES: &[&str] = &[
    "discover", "request", "decline", "release", "inform", "offer", "ack", "nak", "invalid",
];
const OUTCOMES: &[&str] = &[
    "offer",
    "ack",
    "nak",
    "reply",
    "unknown_mac",
    "no_reservation",
    "wrong_subnet",
    "not_netboot",
    "netboot_denied",
    "other_server",
    "released",
    "declined",
    "unsupported",
    "malformed",
    "encode_error",
    "send_error",
    "no_server_address",
];

impl PacketCounters {
    fn new(mode: &'static str) -> Self {
        let mut handles = Vec::with_capacity(TYPES.len() * OUTCOMES.len());
        for t in TYPES {
            for o in OUTCOMES {
                handles.push(
                    counter!("dhcp_packets_total", "type" => *t, "mode" => mode, "outcome" => *o),
                );
            }
        }
        PacketCounters { mode, handles }
    }

    fn count(&self, ty: &'static str, outcome: &'static str) {
        let t = TYPES.iter().position(|x| *x == ty);
        let o = OUTCOMES.iter().position(|x| *x == outcome);
        match t.zip(o).and_then(|(t, o)| self.handles.get(t * OUTCOMES.len() + o)) {
            Some(c) => c.increment(1),
            None => counter!("dhcp_packets_total", "type" => ty, "mode" => self.mode, "outcome" => outcome).increment(1),
        }
    }
}

/// Registers every description (`# HELP`); call once the recorder is installed.
fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        "dhcp_packets_total",
        "DHCP packets received, by message type, mode (reservation, proxy) and outcome (the reply sent, or why none was)."
    );
    describe_counter!(
        "dhcp_unknown_mac_total",
        "DHCP requests from MACs the registry does not know (not answered; listed at /unregistered)."
    );
    describe_counter!(
        "dhcp_decline_total",
        "DHCPDECLINEs: a client found its reserved address in use."
    );
    describe_counter!(
        "dhcp_miss_queue_full_total",
        "Cache misses decided without a registry lookup because the lookup queue was full."
    );
    describe_histogram!(
        "dhcp_decision_seconds",
        Unit::Seconds,
        "Time to decide the answer to one request (after the lookup)."
    );
}

impl Service {
    /// Server identity on the ingress link: configured, else the interface address the
    /// packet arrived on. None when the link has no address and none is configured.
    fn arrival(&self, rx: &Received, pxe_port: bool) -> Option<Arrival> {
        let link = self.ifaddrs.read().ok().and_then(|m| {
            let addrs = m.get(&rx.ifindex)?;
            addrs
                .iter()
                .find(|(a, _)| *a == rx.local)
                .or_else(|| addrs.first())
                .copied()
        });
        let local = link
            .map(|l| l.0)
            .or((!rx.local.is_unspecified()).then_some(rx.local));
        let server_id = self.server_id.or(local)?;
        Some(Arrival {
            server_id,
            next_server: self.tftp_server.unwrap_or(server_id),
            ingress_net: link,
            pxe_port,
            trace: None,
        })
    }

    /// Decides and encodes the answer to one received datagram into `replies`; what is
    /// to be counted and logged once it is sent goes into `pending`, in the same order.
    fn on_packet(
        &self,
        socket: usize,
        data: &[u8],
        rx: &Received,
        replies: &mut SendBatch,
        pending: &mut Vec<Pending>,
    ) {
        let req = match Request::decode(data) {
            Ok(r) => r,
            Err(e) => {
                self.counters.count("invalid", "malformed");
                tracing::debug!(src = %rx.src, error = %e, "malformed DHCP packet dropped");
                return;
            }
        };
        let mac = MacAddr(req.chaddr);
        let known = match self
            .cache
            .derived_by_mac(&mac)
            .and_then(|d| d.downcast::<Known>().ok())
        {
            Some(k) => Some(k),
            None => {
                let miss = Miss {
                    data: data.to_vec(),
                    rx: *rx,
                    socket,
                };
                if self.miss_tx.try_send(miss).is_ok() {
                    return;
                }
                counter!("dhcp_miss_queue_full_total").increment(1);
                None
            }
        };
        let Some(out) = replies.next_buf() else {
            return;
        };
        if let Some((p, dest)) = self.prepare(socket, &req, rx, known, out) {
            replies.push(dest);
            pending.push(p);
        }
    }

    /// One request, start to end: decide, encode, send, account (the miss path).
    fn handle(
        &self,
        socket: usize,
        req: &Request<'_>,
        rx: &Received,
        hw: Option<Arc<Hardware>>,
        out: &mut Vec<u8>,
    ) {
        let known = hw.map(|hw| Arc::new(Known::of(hw, &MacAddr(req.chaddr), &self.settings)));
        if let Some((p, d)) = self.prepare(socket, req, rx, known, out) {
            let sent = self.sockets[socket].0.send(out, d.to, d.ifindex, d.src);
            self.after_send(p, sent);
        }
    }

    /// Decides the answer to `req` and encodes it into `out`. Silence and encoding
    /// failures are counted and logged here; a reply to send comes back with where it
    /// goes and what [`Service::after_send`] needs. `known`: the MAC's record and worked-out
    /// reservation ([`known_macs`]), None for an unregistered MAC.
    fn prepare(
        &self,
        socket: usize,
        req: &Request<'_>,
        rx: &Received,
        known: Option<Arc<Known>>,
        out: &mut Vec<u8>,
    ) -> Option<(Pending, Dest)> {
        let pxe_port = self.sockets[socket].1;
        let ty = req.message_type.name();
        let started = Instant::now();
        let Some(mut at) = self.arrival(rx, pxe_port) else {
            self.counters.count(ty, "no_server_address");
            tracing::warn!(
                ifindex = rx.ifindex,
                "request on an interface without an IPv4 address and no --server-id: not answered"
            );
            return None;
        };
        let hw = known.as_ref().map(|k| &*k.hw);
        let boot_span = self.boot_span(req, hw);
        at.trace = boot_span.as_ref().map(|(_, tp)| *tp);
        let span = boot_span.map(|(span, _)| span);
        let in_span = span.as_ref().map(|span| span.enter());
        let reservation = known.as_ref().map(|k| k.reservation.as_ref());
        let decision = decide_with(req, hw, reservation, &at, &self.settings);
        self.decision_seconds
            .record(started.elapsed().as_secs_f64());
        let mac = MacAddr(req.chaddr);
        let (reply, client, boot) = match decision {
            Decision::Silent(why) => {
                self.counters.count(ty, why.label());
                self.silent(req, rx, why, hw);
                return None;
            }
            Decision::Reply {
                reply,
                client,
                boot,
            } => (reply, client, boot),
        };
        let dropped = match reply.encode_into(req.max_reply_len(), out) {
            Ok(x) => x,
            Err(e) => {
                self.counters.count(ty, "encode_error");
                tracing::error!(%mac, error = %e, "reply does not fit the client's maximum message size; not sent");
                return None;
            }
        };
        if !dropped.is_empty() {
            tracing::warn!(%mac, ?dropped, max = req.max_reply_len(), "options left out to fit the client's maximum message size");
        }
        drop(in_span);
        let (to, ifindex) = match route(req, &reply, rx.src, pxe_port) {
            Route::Relay(giaddr) => (SocketAddrV4::new(giaddr, SERVER_PORT), 0),
            Route::Unicast(a) => (a, 0),
            Route::Broadcast => (
                SocketAddrV4::new(Ipv4Addr::BROADCAST, crate::packet::CLIENT_PORT),
                rx.ifindex,
            ),
        };
        let src = if rx.local.is_unspecified() {
            at.server_id
        } else {
            rx.local
        };
        let pending = Pending {
            ty,
            answer: reply.message_type().map(|m| m.name()).unwrap_or("reply"),
            chaddr: req.chaddr,
            xid: req.xid,
            to,
            trace: at.trace,
            span,
            client,
            boot,
            yiaddr: reply.yiaddr,
            known,
        };
        Some((pending, Dest { to, ifindex, src }))
    }

    /// Accounting for one reply once the kernel took it (or refused it): the counter,
    /// the boot's trace context for the client's next exchange, the log line.
    fn after_send(&self, p: Pending, sent: std::io::Result<()>) {
        let mac = MacAddr(p.chaddr);
        let _in_span = p.span.as_ref().map(|span| span.enter());
        if let Err(e) = sent {
            self.counters.count(p.ty, "send_error");
            tracing::warn!(%mac, to = %p.to, error = %e, "sending the reply failed");
            return;
        }
        self.counters.count(p.ty, p.answer);
        if let (
            Some(tp),
            Some(BootAnswer::TftpFile(_) | BootAnswer::HttpBinary(_) | BootAnswer::Script(_)),
        ) = (p.trace, &p.boot)
        {
            self.boot_traces.record(p.chaddr, p.xid, tp, Instant::now());
        }
        // Read only by a log line that is written: an ordinary client's reply then never
        // touches its record (cold memory in a large registry).
        let name = || p.known.as_ref().map(|k| k.hw.name.as_str()).unwrap_or("");
        let answer = p.answer;
        match &p.boot {
            Some(BootAnswer::UnknownArch(a)) => {
                tracing::warn!(%mac, machine = name(), arch = a, "no iPXE binary for this architecture; answered without boot file")
            }
            Some(b) => {
                tracing::info!(%mac, machine = name(), client = p.client.label(), reply = answer, boot = ?b, yiaddr = %p.yiaddr, "netboot reply")
            }
            None => {
                tracing::debug!(%mac, machine = name(), reply = answer, yiaddr = %p.yiaddr, "reply")
            }
        }
    }

    /// The span of a registered netboot client's packet, continuing its boot's trace
    /// (see [`crate::boot_trace`]), and the context its reply hands on. None for every
    /// other packet: ordinary DHCP clients cost no span.
    fn boot_span(
        &self,
        req: &Request<'_>,
        hw: Option<&Hardware>,
    ) -> Option<(tracing::Span, TraceParent)> {
        if !self.settings.trace_context || hw.is_none() {
            return None;
        }
        let client = classify(req, &self.settings.ipxe_user_classes);
        if !client.is_netboot() {
            return None;
        }
        let parent = self.boot_traces.parent(
            req.chaddr,
            req.xid,
            matches!(client, Client::Ipxe { .. }),
            Instant::now(),
        );
        let span = tracing::info_span!(
            "dhcp",
            message = req.message_type.name(),
            mac = %MacAddr(req.chaddr),
            xid = req.xid,
            client = client.label(),
            mode = self.mode,
        );
        let tp = continue_trace(&span, parent);
        Some((span, tp))
    }

    fn silent(&self, req: &Request<'_>, rx: &Received, why: Silence, hw: Option<&Hardware>) {
        let mac = MacAddr(req.chaddr);
        match why {
            Silence::UnknownMac => {
                counter!("dhcp_unknown_mac_total").increment(1);
                let arch = req
                    .has(crate::packet::code::CLIENT_ARCH)
                    .then(|| client_arch(req));
                if self.seen.record(mac, req.vendor_class(), arch, rx.ifindex) {
                    tracing::info!(%mac, vendor_class = %String::from_utf8_lossy(req.vendor_class()), "unregistered MAC asked for DHCP; not answered (see /unregistered)");
                }
            }
            Silence::Declined => {
                counter!("dhcp_decline_total").increment(1);
                tracing::warn!(%mac, machine = hw.map(|h| h.name.as_str()).unwrap_or(""), requested = ?req.requested_ip(), "DHCPDECLINE: the client found its reserved address already in use on the network");
            }
            Silence::Released => tracing::info!(%mac, "DHCPRELEASE"),
            Silence::WrongSubnet | Silence::NoReservation => {
                tracing::debug!(%mac, reason = why.label(), "registered MAC not answered")
            }
            _ => tracing::debug!(%mac, reason = why.label(), "not answered"),
        }
    }
}

/// Receive coalescing: under load, a worker waits a moment after a batch so that its
/// next `recvmmsg` collects what arrived meanwhile, instead of waking up per packet
/// (each wake-up is a context switch, and on a VM an inter-processor interrupt). Below
/// [`Pacer::BUSY_PPS`] every packet is received as soon as it arrives.
struct Pacer {
    delay: Duration,
    window_start: Instant,
    in_window: u32,
    busy: bool,
}

impl Pacer {
    const BUSY_PPS: u32 = 2000;
    const WINDOW: Duration = Duration::from_millis(100);

    fn new(delay: Duration) -> Self {
        Pacer {
            delay,
            window_start: Instant::now(),
            in_window: 0,
            busy: false,
        }
    }

    /// After serving a batch of `n`: waits when the recent rate says more is coming,
    /// unless the batch was full (then the queue is not empty anyway).
    fn after_batch(&mut self, n: usize) {
        if self.delay.is_zero() {
            return;
        }
        self.in_window += n as u32;
        let now = Instant::now();
        let elapsed = now.duration_since(self.window_start);
        if elapsed >= Self::WINDOW {
            self.busy = self.in_window as f64 >= Self::BUSY_PPS as f64 * elapsed.as_secs_f64();
            self.window_start = now;
            self.in_window = 0;
        }
        if self.busy && n < crate::socket::BATCH {
            std::thread::sleep(self.delay);
        }
    }
}

fn worker(svc: Arc<Service>, socket: usize, mut pacer: Pacer) {
    let sock = svc.sockets[socket].0.clone();
    let mut batch = RecvBatch::default();
    let mut replies = SendBatch::default();
    let mut pending = Vec::with_capacity(crate::socket::BATCH);
    while !svc.stop.load(Ordering::Relaxed) {
        match sock.recv_batch(&mut batch) {
            Ok(n) => {
                // Oversized datagrams are truncated by the kernel; the decoder bounds-
                // checks every access, so at worst they are counted as malformed.
                for (data, rx) in batch.iter() {
                    svc.on_packet(socket, data, rx, &mut replies, &mut pending);
                }
                // One system call for the batch's replies, then each one's accounting.
                let mut done = pending.drain(..);
                sock.send_batch(&mut replies, |_, sent| {
                    if let Some(p) = done.next() {
                        svc.after_send(p, sent);
                    }
                });
                pacer.after_batch(n);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                tracing::warn!(error = %e, "receive failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Each MAC's [`Known`] (its record and, in reservation mode, the parsed addresses and
/// encoded network options), worked out by the cache when a record version arrives: a
/// boot storm's first DISCOVER per machine finds it ready instead of parsing and encoding
/// cold memory, and reads little else (measured with `dhcp-instr.sh`, README).
fn known_macs(settings: &Settings) -> Derive {
    let s = settings.clone();
    Arc::new(move |hw: &Arc<Hardware>, mac: &MacAddr| {
        Arc::new(Known::of(hw.clone(), mac, &s)) as Derived
    })
}

/// `--check-config`: validates the flags and builds the registry client (reading its
/// token file) without binding a socket. Returns the report, or what is wrong.
pub fn check_config(config: &Config) -> Result<String, String> {
    let settings = config.settings()?;
    config.registry.connect_lazy().map_err(|e| e.to_string())?;
    let interfaces = if config.interfaces.is_empty() {
        "all".to_string()
    } else {
        config.interfaces.join(",")
    };
    Ok(format!(
        "mode {}, port {}, interfaces {interfaces}, registry {}\n",
        settings.mode.label(),
        config.port,
        config.registry.endpoint
    ))
}

/// Runs dhcp-svc until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = config.settings().map_err(|e| anyhow!(e))?;
    let client = config.registry.connect_lazy()?;
    let mut sockets = Vec::new();
    let devices: Vec<Option<&str>> = if config.interfaces.is_empty() {
        vec![None]
    } else {
        config.interfaces.iter().map(|s| Some(s.as_str())).collect()
    };
    for dev in &devices {
        let s = DhcpSocket::bind(config.port, *dev, Duration::from_millis(250)).with_context(
            || "opening the DHCP socket (a port below 1024 needs root or CAP_NET_BIND_SERVICE)",
        )?;
        sockets.push((Arc::new(s), false));
        if settings.mode == crate::decide::Mode::Proxy {
            let port = if config.port == SERVER_PORT {
                crate::packet::PXE_PORT
            } else {
                config.port + 1
            };
            let s = DhcpSocket::bind(port, *dev, Duration::from_millis(250))
                .context("opening the PXE boot-server socket")?;
            sockets.push((Arc::new(s), true));
        }
    }
    // The recorder must exist before the counter handles below are registered.
    let handle = ironboot_telemetry::metrics::init_metrics();
    describe_metrics();
    let cache =
        HardwareCache::start_deriving(client, CacheConfig::default(), Some(known_macs(&settings)));
    let (miss_tx, mut miss_rx) = mpsc::channel::<Miss>(config.miss_queue.max(1));
    let svc = Arc::new(Service {
        mode: settings.mode.label(),
        counters: PacketCounters::new(settings.mode.label()),
        decision_seconds: histogram!("dhcp_decision_seconds"),
        settings,
        server_id: config.server_id,
        tftp_server: config.tftp_server,
        cache: cache.clone(),
        seen: Seen::new(
            config.unregistered_capacity,
            config.unregistered_log_interval,
        ),
        sockets,
        ifaddrs: RwLock::new(interface_addresses()),
        miss_tx,
        stop: AtomicBool::new(false),
        boot_traces: BootTraces::default(),
    });

    // Admin: metrics, health (ready once the cache has synced), unregistered MACs.
    let ready_cache = cache.clone();
    let ready: ironboot_telemetry::metrics::Ready = Arc::new(move || ready_cache.is_synced());
    let seen_svc = svc.clone();
    let app = ironboot_telemetry::metrics::admin_router(handle, ready).route(
        "/unregistered",
        get(move || {
            let svc = seen_svc.clone();
            async move {
                // A MAC registered since it was seen is no longer "unregistered".
                let list: Vec<_> = svc
                    .seen
                    .list()
                    .into_iter()
                    .filter(|e| {
                        MacAddr::parse(&e.mac)
                            .ok()
                            .and_then(|m| svc.cache.by_mac(&m))
                            .is_none()
                    })
                    .collect();
                axum::Json(list)
            }
        }),
    );
    let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let admin = ironboot_telemetry::metrics::serve_router(config.admin_listen, app, async move {
        let _ = admin_stop_rx.await;
    })
    .await?;

    // Interfaces come and go (VLANs, bonds): refresh their addresses.
    let refresh = {
        let svc = svc.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let fresh = tokio::task::spawn_blocking(interface_addresses)
                    .await
                    .unwrap_or_default();
                if let Ok(mut m) = svc.ifaddrs.write() {
                    *m = fresh;
                }
            }
        })
    };

    // The miss path: one bounded registry lookup per uncached MAC.
    let misses = {
        let svc = svc.clone();
        tokio::spawn(async move {
            let limit = Arc::new(Semaphore::new(64));
            while let Some(m) = miss_rx.recv().await {
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    break;
                };
                let svc = svc.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let Ok(req) = Request::decode(&m.data) else {
                        return;
                    };
                    let hw = svc
                        .cache
                        .by_mac_or_fetch(MacAddr(req.chaddr))
                        .await
                        .ok()
                        .flatten();
                    svc.handle(m.socket, &req, &m.rx, hw, &mut Vec::with_capacity(576));
                });
            }
        })
    };

    let mut threads = Vec::new();
    for (i, (s, pxe)) in svc.sockets.iter().enumerate() {
        for w in 0..config.workers {
            let svc = svc.clone();
            let name = format!("dhcp-{}-{w}", s.device.as_deref().unwrap_or("any"));
            let pacer = Pacer::new(config.receive_coalesce);
            threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || worker(svc, i, pacer))?,
            );
        }
        tracing::info!(
            port = s.port,
            interface = s.device.as_deref().unwrap_or("all"),
            pxe_port = pxe,
            "listening"
        );
    }
    tracing::info!(mode = svc.mode, admin = %admin, registry = %config.registry.endpoint, workers = config.workers, "dhcp-svc serving");

    shutdown.await;
    tracing::info!("shutting down");
    svc.stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    refresh.abort();
    misses.abort();
    cache.stop();
    let _ = admin_stop_tx.send(());
    tracing::info!("stopped");
    Ok(())
}
