use hardware_api::hwctl::{Cli, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli: Cli = ironboot_telemetry::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hwctl: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
