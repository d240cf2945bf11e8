//! Logging, metrics and shutdown plumbing shared by every ironboot binary, so each one
//! logs the same way and an operator configures it the same way everywhere.
//!
//! - [`init_logging`] / [`LogArgs`]: the `tracing` subscriber (human or JSON);
//! - [`metrics`]: the Prometheus recorder and the `/metrics` + `/healthz` routes;
//! - [`shutdown_signal`]: SIGTERM/SIGINT as a future.
//!
//! OpenTelemetry trace export joins here in its own issue.

pub mod metrics;

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

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
}

/// Installs the global subscriber. Logs go to stderr so stdout stays free for data
/// (hwctl output, syslog JSON lines). Calling it twice is harmless.
pub fn init_logging(args: &LogArgs, default_filter: &str) {
    let filter = match &args.log {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Resolves when the process receives SIGTERM or SIGINT: the start of graceful shutdown.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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

/// The tail of every service's `main`: lift the open-files limit, start the multi-thread
/// runtime (OpenTelemetry export needs one later), run `serve` until it returns, and turn
/// its error into a log line, a message on stderr and a failing exit code.
pub fn run_service<Fut, E>(name: &str, serve: impl FnOnce() -> Fut) -> std::process::ExitCode
where
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    raise_fd_limit();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "{name} failed");
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Every transfer or connection holds a descriptor: lift the soft open-files limit to the
/// hard one, so the service's own limits, not the default 1024, are the bound.
pub fn raise_fd_limit() {
    use nix::libc::{RLIMIT_NOFILE, getrlimit, rlimit, setrlimit};
    let mut lim = rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain libc calls on a stack struct.
    unsafe {
        if getrlimit(RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = setrlimit(RLIMIT_NOFILE, &lim);
        }
    }
}
