//! The tftp-svc binary: flags → [`tftp_svc::run`].

use clap::Parser;
use tftp_svc::Config;

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    ironboot_telemetry::init_logging(&config.log, "info");
    if config.check_config {
        return match tftp_svc::check_config(&config) {
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
            eprintln!("tftp-svc: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(tftp_svc::run(config, ironboot_telemetry::shutdown_signal())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "tftp-svc failed");
            eprintln!("tftp-svc: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Every transfer holds a socket: lift the soft open-files limit to the hard one.
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
