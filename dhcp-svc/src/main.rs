use clap::Parser;
use dhcp_svc::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let _telemetry = ironboot_telemetry::init_logging(&config.log, "dhcp-svc", "info");
    match dhcp_svc::server::run(config, ironboot_telemetry::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dhcp-svc: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
