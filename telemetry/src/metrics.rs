//! Prometheus metrics for every binary: one recorder per process, rendered at
//! `/metrics` — either on the service's own HTTP router or on the small admin listener
//! that UDP-only services (DHCP, TFTP) start with [`serve_admin`].

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
pub fn init_metrics() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder is installed (a test harness running
            // several services in one process): keep the first.
            let _ = metrics::set_global_recorder(recorder);
            // Histogram samples accumulate until upkeep folds them into their buckets;
            // without it memory grows with every sample until someone scrapes /metrics.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                });
            handle
        })
        .clone()
}

/// Readiness, as the service judges it (e.g. "the hardware cache has synced").
pub type Ready = Arc<dyn Fn() -> bool + Send + Sync>;

/// A gauge computed when `/metrics` is scraped rather than on every change (time since
/// something, the size of a store). Returns `false` once it has nothing left to report
/// (its subject is gone), and is then dropped.
type ScrapeHook = Box<dyn Fn() -> bool + Send + Sync>;

static SCRAPE_HOOKS: std::sync::Mutex<Vec<ScrapeHook>> = std::sync::Mutex::new(Vec::new());

/// Runs `hook` before every render of `/metrics`, for values that are read rather than
/// counted (cache staleness, registry store size). The hook returns `false` when its
/// subject is gone (e.g. it holds a `Weak`), and is then removed.
pub fn on_scrape(hook: impl Fn() -> bool + Send + Sync + 'static) {
    SCRAPE_HOOKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Box::new(hook));
}

/// The Prometheus text exposition, after running the [`on_scrape`] hooks.
pub fn render(handle: &PrometheusHandle) -> String {
    SCRAPE_HOOKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|hook| hook());
    handle.render()
}

/// `/metrics` and `/healthz` routes, to merge into a service's own router.
pub fn admin_router(handle: PrometheusHandle, ready: Ready) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let h = handle.clone();
                async move { render(&h) }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready() {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: hardware cache not synced\n",
                        )
                    }
                }
            }),
        )
}

/// Serves [`admin_router`] on its own listener until `shutdown` resolves.
pub async fn serve_admin(
    addr: SocketAddr,
    handle: PrometheusHandle,
    ready: Ready,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<SocketAddr> {
    serve_router(addr, admin_router(handle, ready), shutdown).await
}

/// Serves any router (e.g. [`admin_router`] merged with a service's own admin routes)
/// on its own listener until `shutdown` resolves; returns the bound address.
pub async fn serve_router(
    addr: SocketAddr,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for metrics: {e}"))?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "admin listener failed");
        }
    });
    Ok(local)
}
