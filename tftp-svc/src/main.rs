//! The tftp-svc binary: flags → [`tftp_svc::run`].

use clap::Parser;
use tftp_svc::Config;

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let _telemetry = ironboot_telemetry::init_logging(&config.log, "tftp-svc", "info");
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
    ironboot_telemetry::run_service("tftp-svc", || tftp_svc::run(config, ironboot_telemetry::shutdown_signal()))
}
