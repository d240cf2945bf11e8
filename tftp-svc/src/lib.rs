//! tftp-svc: read-only TFTP for iPXE binaries, built to survive boot storms and lossy links.
//!
//! Firmware fetches its first network bootloader over TFTP, and a slow or fragile TFTP
//! server is what stalls a datacenter-wide boot. This service serves the binaries from
//! memory (the shared [`bootfiles`] catalogue), negotiates blksize/tsize/timeout/windowsize,
//! answers from the address each request was sent to, bounds every kind of state, and
//! gates each request on the hardware registry exactly as the HTTP route does.
//!
//! - [`packet`]: decoding and encoding (fuzzed; never panics).
//! - [`options`]: option negotiation (pure).
//! - [`sender`]: the windowed send state machine: rollover, retransmission, no
//!   Sorcerer's Apprentice (pure).
//! - [`net`]: listener sockets with `IP_PKTINFO`, per-transfer sockets.
//! - [`server`]: listeners, admission limits, single-port routing, shutdown.
//! - [`transfer`]: one request from path check to outcome, with its log line and metrics.
//! - [`wire_image`]: files laid out as DATA packets in sealed memfds, so a window is one
//!   zero-copy `sendfile`.
//! - [`client`]: a small TFTP client for tests and the benchmark (windowsize included,
//!   which none of the packaged clients speak).
//! - [`config`]: flags and validation.
//!
//! Why not async-tftp (the design card's pick): see README.md — it runs every transfer on
//! one executor thread, replies from a socket bound to the listen address, treats OVMF's
//! ERROR 8 as a packet to ignore, and has no hooks for metrics or single-port mode.

pub mod client;
pub mod config;
pub mod metrics;
pub mod net;
pub mod options;
pub mod packet;
pub mod sender;
pub mod server;
pub mod transfer;
pub mod wire_image;

use std::sync::Arc;

use bootfiles::Catalogue;
use ironboot_proto::cache::{CacheConfig, HardwareCache};

pub use config::{Config, ConfigError, Settings};
pub use server::Server;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("registry: {0}")]
    Registry(#[from] ironboot_proto::client::ClientError),
    #[error("{0}")]
    Bind(#[from] std::io::Error),
    #[error("admin listener: {0}")]
    Admin(String),
}

/// Starts everything from a parsed configuration and serves until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let settings = config.settings()?;
    let handle = ironboot_telemetry::metrics::init_metrics();
    crate::metrics::describe();
    let cat_config = config.files.catalogue_config();
    let catalogue = tokio::task::spawn_blocking(move || Catalogue::load(cat_config))
        .await
        .map_err(|e| RunError::Bind(std::io::Error::other(e.to_string())))?;
    let snap = catalogue.snapshot();
    tracing::info!(
        files = snap.files.len(),
        bytes = snap.total_bytes,
        "boot files loaded"
    );
    let cache = if config.no_registry {
        tracing::warn!("--no-registry: requests are not gated by the hardware registry");
        None
    } else {
        Some(HardwareCache::start(
            config.registry.connect_lazy()?,
            CacheConfig::default(),
        ))
    };

    let shutdown = ironboot_telemetry::SharedShutdown::new(shutdown);

    let server = Server::bind(settings, catalogue.clone(), cache.clone())?;
    for a in &server.local_addrs {
        tracing::info!(listen = %a, single_port = config.single_port, "serving TFTP");
    }
    if let Some(addr) = config.admin_addr()? {
        let ready_cat = catalogue.clone();
        let ready_cache = cache.clone();
        let ready: ironboot_telemetry::metrics::Ready = Arc::new(move || {
            !ready_cat.snapshot().files.is_empty()
                && ready_cache.as_ref().is_none_or(|c| c.is_synced())
        });
        let local = ironboot_telemetry::metrics::serve_admin(addr, handle, ready, shutdown.wait())
            .await
            .map_err(|e| RunError::Admin(e.to_string()))?;
        tracing::info!(listen = %local, "admin listener (/metrics, /healthz)");
    }
    let reloader = catalogue.spawn_reloader(config.files.rescan_interval, shutdown.wait());
    server.serve(shutdown.wait()).await;
    let _ = reloader.await;
    if let Some(c) = cache {
        c.stop();
    }
    tracing::info!("stopped");
    Ok(())
}

/// `--check-config`: validates flags, loads the files and builds the registry client
/// without serving. Returns the report to print, or the first fatal problem.
pub fn check_config(config: &Config) -> Result<String, String> {
    let settings = config.settings().map_err(|e| e.to_string())?;
    let mut out = String::new();
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "listen: {}",
        settings
            .listen
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "mode: {}",
        if settings.single_port {
            "single port"
        } else {
            "per-transfer ports"
        }
    );
    let _ = writeln!(
        out,
        "max blksize {} / windowsize {}",
        settings.limits.max_blksize, settings.limits.max_windowsize
    );
    let cat = Catalogue::load(config.files.catalogue_config());
    let snap = cat.snapshot();
    if snap.report(&mut out, "files") == 0 {
        return Err(format!(
            "{out}error: no files to serve (check --ipxe-dir / --ipxe-extra-dir / --assets-dir)"
        ));
    }
    bootfiles::arch::check_defaults(&snap, &mut out).map_err(|e| format!("{out}{e}"))?;
    if config.no_registry {
        let _ = writeln!(out, "registry: not used (--no-registry)");
    } else {
        // Builds the endpoint and reads the token file; connects lazily, so no network.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async { config.registry.connect_lazy().map(|_| ()) })
            .map_err(|e| format!("{out}error: {e}"))?;
        let _ = writeln!(
            out,
            "registry: {} (unknown clients: {:?})",
            config.registry.endpoint, settings.unknown_clients
        );
    }
    Ok(out)
}
