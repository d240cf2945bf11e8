//! Logging, metrics and shutdown plumbing shared by every ironboot binary, so each one
//! logs the same way and an operator configures it the same way everywhere.
//!
//! - [`init_logging`] / [`LogArgs`]: the `tracing` subscriber (human or JSON) and, when
//!   an OTLP endpoint is configured, OpenTelemetry span export ([`otel`]);
//! - [`trace`]: the W3C trace context a boot carries from service to service;
//! - [`metrics`]: the Prometheus recorder and the `/metrics` + `/healthz` routes;
//! - [`startup`]: flags and environment (an empty variable is unset), `--check-config`,
//!   errors about files an operator can act on;
//! - [`shutdown_signal`]: SIGTERM/SIGINT as a future.

pub mod metrics;
pub mod otel;
pub mod startup;
pub mod trace;

pub use startup::{check_config_exit, parse, renamed_env_in_use, warn_renamed_env};
pub use trace::TraceParent;

use clap::{Args, ValueEnum};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line per event for people at a terminal.
    Human,
    /// One JSON object per line for log collectors.
    Json,
}

/// Logging flags every binary flattens into its own clap parser.
#[derive(Clone, Debug, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, env = "IRONBOOT_LOG_FORMAT", value_enum, default_value = "human")]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax, e.g. "info" or "info,hardware_api=debug").
    /// RUST_LOG is used when this is not given.
    #[arg(long, env = "IRONBOOT_LOG")]
    pub log: Option<String>,
    /// OpenTelemetry collector to export trace spans to, over OTLP/gRPC
    /// (e.g. http://otel-collector:4317). No spans are exported when unset. The standard
    /// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and OTEL_BSP_* variables apply.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

/// What [`init_logging`] set up that must be flushed before the process exits: the span
/// exporter's queue. Dropping it (or [`Telemetry::shutdown`]) flushes and stops export.
#[must_use = "dropping the guard at once stops span export"]
pub struct Telemetry {
    otel: Option<otel::Exporter>,
}

impl Telemetry {
    /// Exports the spans still queued and stops the exporter (bounded by its timeout).
    pub fn shutdown(mut self) {
        self.flush();
    }

    fn flush(&mut self) {
        if let Some(e) = self.otel.take() {
            e.shutdown();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Installs the global subscriber for the binary `service`. Logs go to stderr so stdout
/// stays free for data (hwctl output, syslog JSON lines). With `--otlp-endpoint` (or
/// OTEL_EXPORTER_OTLP_ENDPOINT) the spans of ironboot's own crates are also exported;
/// an endpoint that cannot be used is reported on stderr and export stays off, the
/// service runs anyway. Calling it twice is harmless (the second call changes nothing).
pub fn init_logging(args: &LogArgs, service: &str, default_filter: &str) -> Telemetry {
    let filter = match &args.log {
        Some(f) => EnvFilter::new(f),
        None => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter))
        }
    };
    // Colours only for a person at a terminal: logs redirected to a file or collected by
    // a container runtime stay plain text. NO_COLOR (no-color.org) turns them off too.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let fmt = match args.log_format {
        LogFormat::Human => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let exporter = match args
        .otlp_endpoint
        .as_deref()
        .filter(|e| !e.trim().is_empty())
    {
        Some(endpoint) => match otel::Exporter::start(endpoint, service) {
            Ok(e) => Some(e),
            Err(e) => {
                eprintln!("{service}: OpenTelemetry export disabled: {e}");
                None
            }
        },
        None => None,
    };
    let otel_layer = exporter.as_ref().map(|e| e.layer());
    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel_layer)
        .try_init()
        .is_ok();
    if installed && let Some(e) = &exporter {
        trace::set_exporting(true);
        tracing::info!(
            endpoint = e.endpoint(),
            "exporting trace spans over OTLP/gRPC"
        );
    }
    Telemetry {
        otel: exporter.filter(|_| installed),
    }
}

/// Resolves when the process receives SIGTERM or SIGINT: the start of graceful shutdown.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// One shutdown future, awaited by several tasks (server, file reloader, admin
/// listener): each [`SharedShutdown::wait`] resolves once the original has.
#[derive(Clone)]
pub struct SharedShutdown(tokio::sync::watch::Receiver<bool>);

impl SharedShutdown {
    /// Spawns the task that awaits `shutdown` (needs a runtime).
    pub fn new(shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        SharedShutdown(rx)
    }

    /// Resolves once shutdown has begun (at once if it already has).
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }
}

/// The tail of every service's `main`: lift the open-files limit, start the multi-thread
/// runtime (OpenTelemetry export needs one later), run `serve` until it returns, and turn
/// its error into a log line, a message on stderr and a failing exit code.
pub fn run_service<Fut, E>(name: &str, serve: impl FnOnce() -> Fut) -> std::process::ExitCode
where
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    raise_fd_limit();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // On a worker, not on this thread: what the service spawns (a connection per accept)
    // then starts on the thread that accepted it, where from `block_on`'s thread every
    // spawn had to wake a worker (measured on a 2-vCPU VM: ipxe-http-svc's single
    // download over a new connection 0.56 → 0.55 ms, in 5 of 5 interleaved A/B runs).
    let served = rt.block_on(async { tokio::spawn(serve()).await });
    let served = match served {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "{name} failed");
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Every transfer or connection holds a descriptor: lift the soft open-files limit to the
/// hard one, so the service's own limits, not the default 1024, are the bound.
pub fn raise_fd_limit() {
    use nix::libc::{RLIMIT_NOFILE, getrlimit, rlimit, setrlimit};
    let mut lim = rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a stack struct.
    unsafe {
        if getrlimit(RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = setrlimit(RLIMIT_NOFILE, &lim);
        }
    }
}
