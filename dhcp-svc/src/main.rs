//! The dhcp-svc binary: flags → [`dhcp_svc::server::run`].

use dhcp_svc::config::Config;

fn main() -> std::process::ExitCode {
    let config: Config = ironboot_telemetry::parse();
    if config.check_config {
        return ironboot_telemetry::check_config_exit(|| dhcp_svc::server::check_config(&config));
    }
    let _telemetry = ironboot_telemetry::init_logging(&config.log, "dhcp-svc", "info");
    ironboot_telemetry::warn_renamed_env::<Config>("DHCP_");
    ironboot_telemetry::run_service("dhcp-svc", || {
        dhcp_svc::server::run(config, ironboot_telemetry::shutdown_signal())
    })
}
