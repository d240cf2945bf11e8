use hardware_api::server::{Config, run};

fn main() -> std::process::ExitCode {
    let config: Config = ironboot_telemetry::parse();
    match config.runtime() {
        Ok(runtime) => runtime.block_on(serve_until_signal(config)),
        Err(e) => {
            eprintln!("hardware-api: cannot start the runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve_until_signal(config: Config) -> std::process::ExitCode {
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
