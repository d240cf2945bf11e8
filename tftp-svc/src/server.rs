//! Listeners, admission and the transfer tasks' lifecycle.
//!
//! A listener task per listen address receives requests (and, in single-port mode,
//! every client datagram). Admission is cheap and happens in the listener: a request is
//! dropped (counted) when it duplicates one in progress, when the server is at its
//! transfer limit, or when its client IP is at its per-client limit; otherwise a task is
//! spawned and everything slow — path checks, the registry lookup, the transfer —
//! happens there. State lives only as long as its transfer: the guard that holds the
//! permit also removes the dedup/route entry and the per-client count.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bootfiles::Catalogue;
use bytes::Bytes;
use ironboot_proto::cache::HardwareCache;
use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::config::Settings;
use crate::metrics as m;
use crate::net;
use crate::packet::{self, ErrorCode, Packet};
use crate::transfer::{self, Link, LinkRx, LinkTx, Request};
use crate::wire_image::WireImages;

/// Datagrams queued for one single-port transfer before more are dropped.
const ROUTE_QUEUE: usize = 64;

/// State shared by listeners and transfers.
pub struct Shared {
    pub catalogue: Arc<Catalogue>,
    pub cache: Option<HardwareCache>,
    pub settings: Settings,
    /// Wire images for zero-copy windows.
    pub images: Arc<WireImages>,
    permits: Arc<Semaphore>,
    per_client: Mutex<HashMap<IpAddr, u32>>,
    /// Transfers in progress by (listener, client address): dedups retransmitted RRQs and,
    /// in single-port mode, routes the client's datagrams to its transfer.
    active: Mutex<HashMap<RouteKey, Option<mpsc::Sender<Bytes>>>>,
    shards: Shards,
}

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// (listener index, client address): one transfer per client port and listener.
type RouteKey = (usize, SocketAddr);

/// Transfers run on a few single-threaded runtimes, one OS thread each, handed out
/// round-robin. A transfer is a ping-pong of one datagram in, a few out: on a
/// work-stealing runtime every ACK would also wake a second worker to look for work,
/// which costs more than the transfer's own work (measured: README.md). A shard
/// sleeps in its own epoll and is woken only by its own sockets and timers.
struct Shards {
    txs: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
}

impl Shards {
    fn start(n: usize) -> io::Result<Shards> {
        let mut txs = Vec::new();
        for i in 0..n.max(1) {
            let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("tftp-shard-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        let mut tasks = JoinSet::new();
                        loop {
                            tokio::select! {
                                job = rx.recv() => match job {
                                    Some(j) => { tasks.spawn(j); }
                                    None => break,
                                },
                                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                            }
                        }
                        // The server closed the queue: let what runs finish (the server
                        // already bounded that by its grace period and hard stop).
                        while tasks.join_next().await.is_some() {}
                    });
                })?;
            txs.push(tx);
        }
        Ok(Shards {
            txs,
            next: AtomicUsize::new(0),
        })
    }

    fn spawn(&self, job: Job) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.txs.len();
        let _ = self.txs[i].send(job);
    }
}

impl Shared {
    /// Transfers in progress (admitted and not yet finished).
    pub fn active_transfers(&self) -> usize {
        self.settings.max_transfers - self.permits.available_permits()
    }
}

/// A running server: its bound addresses, and a handle to stop it.
pub struct Server {
    pub local_addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    sockets: Vec<Arc<UdpSocket>>,
}

impl Server {
    /// Binds every listen address (fails if any cannot be bound).
    pub fn bind(
        settings: Settings,
        catalogue: Arc<Catalogue>,
        cache: Option<HardwareCache>,
    ) -> io::Result<Server> {
        let mut sockets = Vec::new();
        let mut local_addrs = Vec::new();
        for addr in &settings.listen {
            let s =
                net::bind_listener(*addr, settings.interface.as_deref(), settings.socket_buffer)
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
                    })?;
            local_addrs.push(s.local_addr()?);
            sockets.push(Arc::new(s));
        }
        let shared = Arc::new(Shared {
            catalogue,
            cache,
            images: WireImages::new(settings.zero_copy_max_bytes),
            permits: Arc::new(Semaphore::new(settings.max_transfers)),
            per_client: Mutex::new(HashMap::new()),
            active: Mutex::new(HashMap::new()),
            shards: Shards::start(settings.workers)?,
            settings,
        });
        Ok(Server {
            local_addrs,
            shared,
            sockets,
        })
    }

    /// Transfers in progress.
    pub fn active(&self) -> usize {
        self.shared.settings.max_transfers - self.shared.permits.available_permits()
    }

    /// Serves until `shutdown` resolves, then stops taking requests, gives transfers in
    /// flight the configured grace period, and cancels what is left.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (hard_tx, hard_rx) = watch::channel(false);
        let mut listeners = JoinSet::new();
        for (idx, sock) in self.sockets.iter().enumerate() {
            listeners.spawn(listen(
                idx,
                sock.clone(),
                self.shared.clone(),
                stop_rx.clone(),
                hard_rx.clone(),
            ));
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        while listeners.join_next().await.is_some() {}
        let grace = self.shared.settings.shutdown_grace;
        let all = self.shared.settings.max_transfers as u32;
        let drained = tokio::time::timeout(grace, self.shared.permits.acquire_many(all)).await;
        if drained.is_err() {
            tracing::warn!(
                active = self.active(),
                "shutdown grace elapsed; cancelling transfers in flight"
            );
            let _ = hard_tx.send(true);
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                self.shared.permits.acquire_many(all),
            )
            .await;
        }
    }
}

/// Releases a transfer's slot, dedup/route entry and per-client count when dropped.
struct Slot {
    shared: Arc<Shared>,
    key: (usize, SocketAddr),
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut a) = self.shared.active.lock() {
            a.remove(&self.key);
        }
        if let Ok(mut pc) = self.shared.per_client.lock() {
            let ip = self.key.1.ip();
            if let Some(n) = pc.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    pc.remove(&ip);
                }
            }
        }
    }
}

async fn listen(
    idx: usize,
    sock: Arc<UdpSocket>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    hard: watch::Receiver<bool>,
) {
    let bound = sock.local_addr().ok();
    let mut buf = vec![0u8; 65536];
    loop {
        let r = tokio::select! {
            _ = stop.changed() => return,
            r = net::recv(&sock, &mut buf) => r,
        };
        let rx = match r {
            Ok(rx) => rx,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some kernels; never fatal.
                tracing::debug!(error = %e, "receive error on listener");
                continue;
            }
        };
        if rx.truncated {
            m::packet_dropped("truncated");
            continue;
        }
        let data = &buf[..rx.len];
        let key = (idx, rx.peer);
        // Single-port mode: a datagram from a client with a transfer goes to that transfer.
        if shared.settings.single_port {
            let route = shared
                .active
                .lock()
                .ok()
                .and_then(|a| a.get(&key).cloned().flatten());
            if let Some(tx) = route {
                if tx.try_send(Bytes::copy_from_slice(data)).is_err() {
                    m::packet_dropped("queue_full");
                }
                continue;
            }
        }
        let local_ip = rx
            .local_ip
            .or_else(|| bound.map(|b| b.ip()).filter(|ip| !ip.is_unspecified()));
        match packet::decode(data) {
            Ok(Packet::Rrq(_)) => admit(
                &shared,
                &sock,
                key,
                Bytes::copy_from_slice(data),
                local_ip,
                &hard,
            ),
            Ok(Packet::Wrq(_)) => {
                m::refused("write_request");
                tracing::info!(client = %rx.peer, "write request refused (read-only server)");
                let e = packet::encode_error(
                    ErrorCode::AccessViolation,
                    "access violation: this server is read-only",
                );
                let _ = net::send_from(&sock, &[&e], rx.peer, local_ip).await;
            }
            Ok(_) => m::packet_dropped("unexpected"),
            Err(e) => {
                tracing::debug!(client = %rx.peer, error = %e, "malformed datagram");
                m::packet_dropped(e.label());
            }
        }
    }
}

/// Cheap checks in the listener; the transfer task does the rest.
fn admit(
    shared: &Arc<Shared>,
    sock: &Arc<UdpSocket>,
    key: (usize, SocketAddr),
    datagram: Bytes,
    local_ip: Option<IpAddr>,
    hard: &watch::Receiver<bool>,
) {
    let peer = key.1;
    let (permit, route) = {
        let Ok(mut active) = shared.active.lock() else {
            return;
        };
        if active.contains_key(&key) {
            m::request_dropped("duplicate");
            return;
        }
        let Ok(mut pc) = shared.per_client.lock() else {
            return;
        };
        let n = pc.entry(peer.ip()).or_insert(0);
        if *n >= shared.settings.max_per_client {
            m::request_dropped("client_limit");
            return;
        }
        let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
            if *n == 0 {
                pc.remove(&peer.ip());
            }
            m::request_dropped("busy");
            return;
        };
        *n += 1;
        let (tx, rx) = if shared.settings.single_port {
            let (tx, rx) = mpsc::channel(ROUTE_QUEUE);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        active.insert(key, tx);
        (permit, rx)
    };
    let slot = Slot {
        shared: shared.clone(),
        key,
        _permit: permit,
    };
    match route {
        Some(rx) => {
            let link = Link {
                tx: LinkTx::Shared {
                    sock: sock.clone(),
                    peer,
                    local_ip,
                },
                rx: LinkRx::Shared(rx),
            };
            let req = Request {
                datagram,
                peer,
                local_ip,
            };
            let shared2 = shared.clone();
            let hard = hard.clone();
            shared.shards.spawn(Box::pin(async move {
                transfer::run(shared2, req, link, hard).await;
                drop(slot);
            }));
        }
        None => spawn_own(shared.clone(), slot, datagram, peer, local_ip, hard.clone()),
    }
}

fn spawn_own(
    shared: Arc<Shared>,
    slot: Slot,
    datagram: Bytes,
    peer: SocketAddr,
    local_ip: Option<IpAddr>,
    hard: watch::Receiver<bool>,
) {
    let interface = shared.settings.interface.clone();
    let shards = shared.clone();
    shards.shards.spawn(Box::pin(async move {
        let unspecified: IpAddr = if peer.is_ipv4() {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        };
        let sock =
            match net::transfer_socket(local_ip.unwrap_or(unspecified), peer, interface.as_deref())
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(client = %peer, error = %e, "cannot open a transfer socket");
                    m::request_dropped("socket_error");
                    drop(slot);
                    return;
                }
            };
        let req = Request {
            datagram,
            peer,
            local_ip,
        };
        transfer::run(shared, req, Link::own(sock), hard).await;
        drop(slot);
    }));
}
