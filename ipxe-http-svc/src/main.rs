//! The ipxe-http-svc binary: flags → [`ipxe_http_svc::run`].

use clap::Parser;
use ipxe_http_svc::Config;

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    ironboot_telemetry::init_logging(&config.log, "info");
    if config.check_config {
        return match ipxe_http_svc::check_config(&config) {
            Ok(report) => {
                print!("{report}");
                println!("configuration OK");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    raise_fd_limit();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ipxe-http-svc: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(ipxe_http_svc::run(config, ironboot_telemetry::shutdown_signal())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "ipxe-http-svc failed");
            eprintln!("ipxe-http-svc: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Every connection holds a descriptor: lift the soft open-files limit to the hard one
/// so --max-connections, not the default 1024, is the bound.
fn raise_fd_limit() {
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
