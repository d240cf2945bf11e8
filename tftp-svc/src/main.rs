//! The tftp-svc binary: flags → [`tftp_svc::run`].

use tftp_svc::Config;

fn main() -> std::process::ExitCode {
    let config: Config = ironboot_telemetry::parse();
    let _telemetry = ironboot_telemetry::init_logging(&config.log, "tftp-svc", "info");
    if config.check_config {
        return ironboot_telemetry::check_config_exit(|| tftp_svc::check_config(&config));
    }
    ironboot_telemetry::run_service("tftp-svc", || {
        tftp_svc::run(config, ironboot_telemetry::shutdown_signal())
    })
}
