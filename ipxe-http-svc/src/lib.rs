//! ipxe-http-svc: what iPXE fetches over HTTP — binaries, the per-machine `auto.ipxe`
//! script, and the installer's kernel and initrd.
//!
//! After the chainload, iPXE asks this service what to boot. It identifies the machine
//! (MAC in the path, or the request's source address behind trusted proxies), refuses
//! the ones the registry says must not netboot — with the same rule and the same shared
//! code as tftp-svc — and renders a script from an operator-editable template: by
//! default Tinkerbell's Hook installer with its kernel arguments, or the machine's own
//! `ipxe.url`/`ipxe.contents`. Everything is answered from memory (the watch-backed
//! hardware cache, the in-memory binary catalogue); only a cache miss asks the registry.
//!
//! - [`http`]: routes, handlers and the request log/metrics middleware.
//! - [`script`]: which script a machine gets and every value in it (pure).
//! - [`templates`]: built-in templates, per-name overrides, start-up checks.
//! - [`script_cache`]: rendered scripts per record revision, split at the traceparent.
//! - [`range`]: conditional and range requests for in-memory files (pure).
//! - [`assets`]: `/assets/` from disk, confined.
//! - [`client_ip`]: the client address behind trusted proxies (pure).
//! - [`trace`]: the request's W3C `traceparent`.
//! - [`listener`]: connection limit, idle timeout, and the write path that sends binaries
//!   with [`zero_copy`] (`sendfile` from sealed memfds).
//! - [`config`], [`metrics`].

pub mod assets;
pub mod client_ip;
pub mod config;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod range;
pub mod script;
pub mod script_cache;
pub mod templates;
pub mod trace;
pub mod zero_copy;

use std::sync::Arc;

use bootfiles::Catalogue;
use ironboot_proto::cache::{CacheConfig, HardwareCache};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{Config, ConfigError, Settings};
pub use http::Service;
pub use templates::Templates;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Templates(#[from] templates::TemplateError),
    #[error("registry: {0}")]
    Registry(#[from] ironboot_proto::client::ClientError),
    #[error("cannot listen on {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Starts everything from a parsed configuration and serves until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let settings = config.settings()?;
    // The recorder before anything records: the catalogue sets its gauges as it loads.
    ironboot_telemetry::metrics::init_metrics();
    crate::metrics::describe();
    let templates = Templates::load(settings.templates_dir.as_deref())?;
    for p in &templates.ignored {
        tracing::warn!(file = %p.display(), "not a template name (installer.ipxe, chain.ipxe, refused.ipxe); ignored");
    }
    for (name, origin) in templates.origins() {
        tracing::info!(template = name, from = %origin, "template loaded");
    }
    let cat_config = config.catalogue_config();
    let catalogue = tokio::task::spawn_blocking(move || Catalogue::load(cat_config))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let snap = catalogue.snapshot();
    tracing::info!(
        files = snap.files.len(),
        bytes = snap.total_bytes,
        "iPXE binaries loaded"
    );
    let assets = match &settings.assets_dir {
        Some(d) => Some(
            assets::AssetRoot::new(d, &settings.link_roots)
                .map_err(|e| ConfigError::Assets(d.clone(), e.to_string()))?,
        ),
        None => None,
    };
    let cache = HardwareCache::start(config.registry.connect_lazy()?, CacheConfig::default());
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| RunError::Bind(settings.listen, e))?;
    tracing::info!(listen = %listener.local_addr()?, assets = ?assets.as_ref().map(|a| a.path().to_path_buf()), "serving HTTP");

    let shutdown = ironboot_telemetry::SharedShutdown::new(shutdown);
    let reloader = catalogue.spawn_reloader(config.files.rescan_interval, shutdown.wait());
    let scripts = script_cache::ScriptCache::new(settings.script_cache_entries);
    let zero_copy = Arc::new(zero_copy::ZeroCopy::new(
        settings.zero_copy_max_bytes,
        settings.zero_copy_dir.clone(),
    ));
    let svc = Arc::new(Service {
        settings,
        catalogue,
        cache: cache.clone(),
        templates,
        assets,
        scripts,
        zero_copy,
    });
    serve(listener, svc, shutdown.wait()).await?;
    let _ = reloader.await;
    cache.stop();
    tracing::info!("stopped");
    Ok(())
}

/// Serves `svc` on a bound listener until `shutdown` resolves; in-flight requests then
/// get `shutdown_grace` to finish. Tests call this with their own cache and catalogue.
pub async fn serve(
    listener: TcpListener,
    svc: Arc<Service>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let s = &svc.settings;
    let listener = listener::BoundedListener::new(
        listener,
        s.max_connections,
        s.idle_timeout,
        svc.zero_copy.clone(),
    );
    let grace = s.shutdown_grace;
    let metrics = ironboot_telemetry::metrics::init_metrics();
    crate::metrics::describe();
    let app = http::router(svc.clone(), metrics.clone());
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    // The Prometheus recorder keeps every histogram sample until it is drained: without
    // a scraper, per-request durations would grow memory without bound.
    let mut upkeep_stop = rx.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = upkeep_stop.wait_for(|s| *s) => return,
                _ = tick.tick() => metrics.run_upkeep(),
            }
        }
    });
    let mut graceful = rx.clone();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<listener::ConnAddrs>(),
    )
    .with_graceful_shutdown(async move {
        let _ = graceful.wait_for(|s| *s).await;
    });
    let mut deadline = rx;
    tokio::select! {
        r = server => r,
        _ = async move {
            let _ = deadline.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "shutdown grace expired; closing the remaining connections");
            Ok(())
        }
    }
}

/// `--check-config`: validates flags, templates and directories and builds the
/// registry client without serving. Returns the report to print, or what is wrong.
pub fn check_config(config: &Config) -> Result<String, String> {
    use std::fmt::Write;
    let settings = config.settings().map_err(|e| e.to_string())?;
    let mut out = String::new();
    let _ = writeln!(out, "listen: {}", settings.listen);
    let templates =
        Templates::load(settings.templates_dir.as_deref()).map_err(|e| e.to_string())?;
    for (name, origin) in templates.origins() {
        let _ = writeln!(out, "template {name}: {origin}");
    }
    for p in &templates.ignored {
        let _ = writeln!(
            out,
            "warning: {} is not a template name; ignored",
            p.display()
        );
    }
    let i = &settings.installer;
    let osie = if i.osie_url.is_empty() {
        "this service's /assets (as reached by the client)"
    } else {
        &i.osie_url
    };
    let _ = writeln!(
        out,
        "installer: {osie}; consoles {:?}; extra args {:?}; retries {} every {}s",
        i.consoles, i.extra_args, i.retries, i.retry_delay_secs
    );
    let cat = Catalogue::load(config.catalogue_config());
    let snap = cat.snapshot();
    snap.report(&mut out, "binaries");
    bootfiles::arch::check_defaults(&snap, &mut out).map_err(|e| format!("{out}{e}"))?;
    match &settings.assets_dir {
        Some(d) => {
            let a = assets::AssetRoot::new(d, &settings.link_roots)
                .map_err(|e| format!("{out}error: --assets-dir {}: {e}", d.display()))?;
            let _ = writeln!(out, "assets: {}", a.path().display());
        }
        None => {
            let _ = writeln!(out, "assets: none (/assets/ answers 404)");
        }
    }
    let _ = writeln!(out, "trusted proxies: {:?}", settings.trusted_proxies);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async { config.registry.connect_lazy().map(|_| ()) })
        .map_err(|e| format!("{out}error: {e}"))?;
    let _ = writeln!(out, "registry: {}", config.registry.endpoint);
    Ok(out)
}
