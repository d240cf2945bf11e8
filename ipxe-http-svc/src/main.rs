//! The ipxe-http-svc binary: flags → [`ipxe_http_svc::run`].

use ipxe_http_svc::Config;

fn main() -> std::process::ExitCode {
    let config: Config = ironboot_telemetry::parse();
    let _telemetry = ironboot_telemetry::init_logging(&config.log, "ipxe-http-svc", "info");
    if config.check_config {
        return ironboot_telemetry::check_config_exit(|| ipxe_http_svc::check_config(&config));
    }
    ironboot_telemetry::run_service("ipxe-http-svc", || {
        ipxe_http_svc::run(config, ironboot_telemetry::shutdown_signal())
    })
}
