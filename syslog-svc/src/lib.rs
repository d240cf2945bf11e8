//! `syslog-svc` — the syslog receiver for booting machines.
//!
//! When a boot fails, what iPXE and the installer logged is the operator's only window.
//! This service receives all of it (UDP and TCP, RFC 5424 with structured data, RFC 3164
//! with or without timestamp and hostname, and the loose forms iPXE and busybox send;
//! datagrams up to 64 KiB whole), says which registered machine sent each message (by
//! source IP, from the watch-backed hardware cache — no registry call per message),
//! writes one JSON line per message and keeps each machine's recent lines for
//! `GET /machines/<mac>/logs`.
//!
//! The path of a message, one module per step:
//! - [`transport::udp`] / [`transport::tcp`] (with [`framing`]) take bytes off the sockets;
//! - [`queue`]: a fixed-capacity queue (messages and bytes) to the writer; UDP overflow is
//!   dropped and counted, TCP waits (flow control);
//! - [`writer`]: one thread that [`parse`]s (RFC 5424 headers in [`rfc5424`]), attributes, renders the [`record`] (with the
//!   [`traceparent`] if any), writes it to the [`output`] and keeps it in the [`store`];
//! - [`api`]: the HTTP query API, with `/metrics` and `/healthz`; counters in [`stats`].
//!
//! Bad input never stops anything: empty messages are dropped and counted, invalid
//! UTF-8 is kept (replacement characters, `invalid_utf8: true`), unreadable headers are
//! kept raw with `parse_error`, oversized TCP frames are cut at `--max-message`
//! (`truncated: true`).

pub mod api;
pub mod config;
pub mod framing;
pub mod output;
pub mod parse;
pub mod queue;
pub mod record;
pub mod rfc5424;
pub mod stats;
pub mod store;
pub mod traceparent;
pub mod transport;
pub mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ironboot_proto::cache::{CacheConfig, HardwareCache};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::Config;
pub use stats::Stats;
pub use store::Store;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open output {path}: {source}")]
    Output {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error("registry client: {0}")]
    Registry(#[from] ironboot_proto::client::ClientError),
}

/// A started service: its bound addresses, its counters, and how to stop it.
pub struct Running {
    pub udp_addr: Option<SocketAddr>,
    pub tcp_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub stats: Arc<Stats>,
    pub store: Arc<Mutex<Store>>,
    stop_flag: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    udp_threads: Vec<std::thread::JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    writer: std::thread::JoinHandle<()>,
}

/// Binds every socket, opens the output and starts receiving, attributing with `cache`.
pub async fn start(config: &Config, cache: HardwareCache) -> Result<Running, Error> {
    config.validate()?;
    // The recorder must exist before the counters are registered, or they would be
    // registered with the no-op recorder and never show on /metrics.
    let metrics_handle = ironboot_telemetry::metrics::init_metrics();
    stats::describe();
    let stats = Arc::new(Stats::new());
    let (tx, rx) = queue::bounded(
        config.queue_capacity,
        usize::try_from(config.queue_bytes).unwrap_or(usize::MAX),
        stats.clone(),
    );
    let output = match config.output_file() {
        None => output::Output::stdout(),
        Some(path) => output::Output::file(path, config.rotate_size, config.rotate_keep).map_err(
            |source| Error::Output {
                path: path.display().to_string(),
                source,
            },
        )?,
    };
    let store = Arc::new(Mutex::new(Store::new(config.store_limits())));
    let (stop, stop_rx) = watch::channel(false);
    let stop_flag = Arc::new(AtomicBool::new(false));

    // Bind everything before starting anything, so a bad address fails cleanly.
    let udp = match config.udp_listen.0 {
        Some(addr) => Some(
            transport::udp::bind(
                addr,
                usize::try_from(config.udp_recv_buffer).unwrap_or(usize::MAX),
            )
            .map_err(|source| Error::Bind {
                what: "UDP",
                addr,
                source,
            })?,
        ),
        None => None,
    };
    let tcp = match config.tcp_listen.0 {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind {
                    what: "TCP",
                    addr,
                    source,
                })?,
        ),
        None => None,
    };
    let http = match config.http_listen.0 {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind {
                    what: "HTTP",
                    addr,
                    source,
                })?,
        ),
        None => None,
    };
    let udp_addr = udp.as_ref().and_then(|s| s.local_addr().ok());
    let tcp_addr = tcp.as_ref().and_then(|s| s.local_addr().ok());
    let http_addr = http.as_ref().and_then(|s| s.local_addr().ok());

    let w = writer::Writer {
        rx,
        cache: cache.clone(),
        output,
        store: store.clone(),
        stats: stats.clone(),
        rfc3164_offset: config.rfc3164_offset,
    };
    let writer = std::thread::Builder::new()
        .name("syslog-writer".into())
        .spawn(move || w.run())
        .map_err(Error::Thread)?;

    let udp_threads = match udp {
        Some(socket) => transport::udp::spawn(
            socket,
            config.udp_threads,
            tx.clone(),
            stats.clone(),
            config.max_message as usize,
            stop_flag.clone(),
        )
        .map_err(Error::Thread)?,
        None => Vec::new(),
    };
    let mut tasks = Vec::new();
    if let Some(listener) = tcp {
        tasks.push(tokio::spawn(transport::tcp::serve(
            listener,
            tx.clone(),
            stats.clone(),
            config.tcp_limits(),
            stop_rx.clone(),
        )));
    }
    drop(tx);
    if let Some(listener) = http {
        let handle = metrics_handle;
        let ready_cache = cache.clone();
        let app = api::router(api::ApiState {
            store: store.clone(),
            cache,
        })
        .merge(ironboot_telemetry::metrics::admin_router(
            handle,
            Arc::new(move || ready_cache.is_synced()),
        ));
        let mut stop_http = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_http.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "syslog HTTP listener failed");
            }
        }));
    }
    Ok(Running {
        udp_addr,
        tcp_addr,
        http_addr,
        stats,
        store,
        stop_flag,
        stop,
        udp_threads,
        tasks,
        writer,
    })
}

impl Running {
    /// Stops receiving, writes out everything already queued, and returns.
    pub async fn shutdown(self) {
        self.stop_flag.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let threads = self.udp_threads;
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
            // TCP connection tasks drop their queue handles as they see the stop signal;
            // the writer ends when the last is gone and the queue is drained.
            let _ = writer.join();
        })
        .await;
    }
}

/// Runs with an injected cache until `shutdown` resolves.
pub async fn serve(
    config: Config,
    cache: HardwareCache,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let running = start(&config, cache).await?;
    tracing::info!(udp = ?running.udp_addr, tcp = ?running.tcp_addr, http = ?running.http_addr, "syslog-svc receiving");
    shutdown.await;
    tracing::info!("syslog-svc stopping: writing out queued messages");
    running.shutdown().await;
    Ok(())
}

/// The binary's entry: connects to the registry (lazily — the service starts and
/// receives even while the registry is down) and serves until `shutdown`.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let client = config.registry.connect_lazy()?;
    let cache = HardwareCache::start(client, CacheConfig::default());
    let result = serve(config, cache.clone(), shutdown).await;
    cache.stop();
    result
}
