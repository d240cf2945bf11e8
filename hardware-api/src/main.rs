use clap::Parser;
use hardware_api::server::{Config, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let _telemetry = ironboot_telemetry::init_logging(&config.log, "hardware-api", "info");
    match run(config, ironboot_telemetry::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("hardware-api: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
