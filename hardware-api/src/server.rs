//! Starting the registry: flags, store, tokens, TLS, health, reflection, shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use ironboot_proto::pb::hardware_service_server::HardwareServiceServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tower_http::trace::TraceLayer;

use crate::auth::Tokens;
use crate::encoded_get::WithEncodedGet;
use crate::metrics::Metered;
use crate::service::Registry;
use crate::store::HardwareStore;
use crate::store::redb::RedbStore;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// Embedded redb file in --data-dir: durable, the default.
    Redb,
    /// Same engine in memory: everything is lost at exit (tests, demos).
    Memory,
}

/// The ironboot hardware registry: a gRPC service (hardware.v1.HardwareService) that
/// knows every machine that may network boot. Boot services read it; operators write
/// it with `hwctl` or any gRPC client.
#[derive(Clone, Debug, Parser)]
#[command(name = "hardware-api", version)]
pub struct Config {
    /// Address and port to listen on for gRPC. Use 0.0.0.0:50061 to serve other hosts.
    #[arg(long, env = "HARDWARE_API_LISTEN", default_value = "127.0.0.1:50061")]
    pub listen: SocketAddr,

    /// Storage engine.
    #[arg(long, env = "HARDWARE_API_STORE", value_enum, default_value = "redb")]
    pub store: StoreKind,

    /// Directory of the embedded store (file hardware.redb). Back it up by copying the
    /// file while the registry is stopped.
    #[arg(
        long,
        env = "HARDWARE_API_DATA_DIR",
        default_value = "/var/lib/ironboot/hardware-api"
    )]
    pub data_dir: PathBuf,

    /// Tokens file: one `ROLE TOKEN [NAME]` per line, ROLE `read` (boot services) or
    /// `write` (operators). Tokens are at least 16 characters.
    #[arg(long, env = "HARDWARE_API_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Tokens as `ROLE:TOKEN[,ROLE:TOKEN…]`, added to those of --tokens-file. Without
    /// any token the registry refuses every call.
    #[arg(long, env = "HARDWARE_API_TOKENS", hide_env_values = true)]
    pub tokens: Option<String>,

    /// PEM certificate chain: serve gRPC over TLS (requires --tls-key).
    #[arg(long, env = "HARDWARE_API_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "HARDWARE_API_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA bundle: require client certificates signed by it (mutual TLS). Tokens are
    /// still required on top.
    #[arg(long, env = "HARDWARE_API_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// How many change events the store keeps for watchers to resume from. A watcher
    /// further behind than this lists again.
    #[arg(long, env = "HARDWARE_API_EVENT_RETENTION", default_value_t = 100_000)]
    pub event_retention: u64,

    /// How often an idle watch stream gets a bookmark (proof of life and revision).
    #[arg(long, env = "HARDWARE_API_BOOKMARK_INTERVAL", default_value = "15s", value_parser = humantime_secs)]
    pub bookmark_interval: Duration,

    /// Longest time in-flight calls get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "HARDWARE_API_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime_secs)]
    pub shutdown_grace: Duration,

    /// Admin HTTP listener: /metrics (Prometheus) and /healthz. Empty to disable.
    #[arg(
        long,
        env = "HARDWARE_API_ADMIN_LISTEN",
        default_value = "127.0.0.1:9061"
    )]
    pub admin_listen: String,

    /// Threads that serve gRPC calls (tokio workers; default: one per core). Writes and
    /// listings run on a separate blocking pool either way. Where the registry shares
    /// few cores with its clients, 1 answers point reads with the least CPU per call
    /// (hardware-api/bench/README.md).
    #[arg(long, env = "HARDWARE_API_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: Option<u16>,

    /// Check the configuration (tokens, TLS files, data directory), print a summary and exit.
    #[arg(long)]
    pub check_config: bool,

    #[command(flatten)]
    pub log: ironboot_telemetry::LogArgs,
}

/// Parses `15s`, `500ms`, `2m` or a plain number of seconds.
pub fn humantime_secs(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 15s, 500ms or 2m"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

impl Config {
    /// The runtime the registry runs on (`--worker-threads`).
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.enable_all();
        if let Some(n) = self.worker_threads {
            builder.worker_threads(n.into());
        }
        builder.build()
    }

    pub fn load_tokens(&self) -> anyhow::Result<Tokens> {
        let mut tokens = Tokens::default();
        if let Some(path) = &self.tokens_file {
            tokens.load_file(path)?;
        }
        if let Some(env) = &self.tokens {
            tokens.load_env(env)?;
        }
        Ok(tokens)
    }

    fn tls(&self) -> anyhow::Result<Option<ServerTlsConfig>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read =
            |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
        if let Some(ca) = &self.tls_client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        Ok(Some(tls))
    }

    /// The admin listener's address, or None when `--admin-listen` is empty.
    pub fn admin_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        let s = self.admin_listen.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(|_| {
            anyhow::anyhow!("--admin-listen {s:?}: expected ADDRESS:PORT, or empty to disable")
        })
    }

    pub fn open_store(&self) -> anyhow::Result<RedbStore> {
        Ok(match self.store {
            StoreKind::Memory => RedbStore::in_memory(self.event_retention)?,
            StoreKind::Redb => {
                std::fs::create_dir_all(&self.data_dir).with_context(|| {
                    format!("cannot create data directory {}", self.data_dir.display())
                })?;
                RedbStore::open(&self.data_dir.join("hardware.redb"), self.event_retention)?
            }
        })
    }
}

/// Runs the registry on `config.listen` until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if config.check_config {
        return serve(config, None, shutdown).await;
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    serve(config, Some(listener), shutdown).await
}

/// Runs the registry on an already bound listener (tests bind port 0 first and read
/// the port back), with the admin listener of `--admin-listen`. With `--check-config`
/// the listener is not needed.
pub async fn serve(
    config: Config,
    listener: Option<TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let admin = match config.admin_addr()? {
        Some(addr) if !config.check_config => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--admin-listen)"))?,
        ),
        _ => None,
    };
    serve_with_admin(config, listener, admin, shutdown).await
}

/// [`serve`] with an already bound admin listener (or none), in place of `--admin-listen`.
pub async fn serve_with_admin(
    config: Config,
    listener: Option<TcpListener>,
    admin: Option<TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // The recorder first: metric handles registered before it exists are no-ops.
    let metrics_handle = ironboot_telemetry::metrics::init_metrics();
    crate::metrics::describe();
    let tokens = config.load_tokens()?;
    let tls = config.tls()?;
    if tokens.is_empty() {
        tracing::warn!(
            "no tokens configured: every call will be refused (set --tokens-file or HARDWARE_API_TOKENS)"
        );
    }
    if config.check_config {
        config.open_store()?.close();
        println!(
            "configuration ok: listen {}, store {:?} in {}, {} token(s), TLS {}",
            config.listen,
            config.store,
            config.data_dir.display(),
            tokens.len(),
            if tls.is_some() { "on" } else { "off" }
        );
        return Ok(());
    }
    let store = Arc::new(config.open_store()?);
    tracing::info!(
        store = ?config.store,
        revision = store.revision(),
        records = store.count().unwrap_or(0),
        store_id = store.store_id(),
        "store open"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let admin_stop = stop_rx.clone();
    let registry = Registry::new(
        store.clone() as Arc<dyn HardwareStore>,
        tokens,
        stop_rx,
        config.bookmark_interval,
    );
    let registry = crate::metrics::Metered::new(registry);
    let weak_store: std::sync::Weak<RedbStore> = Arc::downgrade(&store);
    crate::metrics::watch_store(weak_store);
    if let Some(admin) = admin {
        let addr = admin.local_addr()?;
        let app = ironboot_telemetry::metrics::admin_router(metrics_handle, Arc::new(|| true));
        tokio::spawn(async move {
            let mut stop = admin_stop;
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(admin, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
        tracing::info!(addr = %addr, "admin listener (/metrics, /healthz)");
    }

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<HardwareServiceServer<Metered<Registry>>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ironboot_proto::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;

    let listener = listener.context("no listener")?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, tls = tls.is_some(), "listening");

    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).context("TLS configuration")?;
    }
    let mut stopping = stop_tx.subscribe();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: refusing new calls, ending watch streams");
        health_reporter
            .set_not_serving::<HardwareServiceServer<Metered<Registry>>>()
            .await;
        let _ = stop_tx.send(true);
    };
    let serve = builder
        .layer(
            TraceLayer::new_for_grpc()
                .make_span_with(rpc_span)
                .on_request(())
                .on_response(())
                .on_failure(())
                .on_eos(()),
        )
        .add_service(health_service)
        .add_service(reflection)
        .add_service(WithEncodedGet::new(registry))
        // TCP_NODELAY on accepted connections: with Nagle on, small gRPC replies waited
        // up to 40 ms (measured p99.9 44 ms by hardware-api/bench/registry-bench.sh).
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), signal);
    tokio::pin!(serve);
    // In-flight calls get the grace period to finish once shutdown starts.
    let grace = config.shutdown_grace;
    let result = tokio::select! {
        r = &mut serve => r.map_err(anyhow::Error::from),
        _ = async {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "grace period over; dropping remaining connections");
            Ok(())
        }
    };
    // The writer drains its queue before close returns: every acknowledged write is
    // on disk before the process exits.
    store.close();
    tracing::info!("stopped");
    result
}

/// The span of one RPC, continuing the caller's `traceparent` metadata (a boot service's
/// lookup for a machine it has not cached, hwctl). Only made when spans are exported:
/// otherwise a lookup costs no span at all.
fn rpc_span<B>(req: &http::Request<B>) -> tracing::Span {
    use ironboot_telemetry::trace;
    if !trace::exporting() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!("grpc", rpc = %req.uri().path());
    trace::set_parent(&span, trace::from_headers(req.headers()));
    span
}
