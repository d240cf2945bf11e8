use clap::Parser;
use syslog_svc::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = ironboot_telemetry::init_logging(&config.log, "syslog-svc", "info");
    if config.check_config {
        config.validate()?;
        println!("configuration ok: {}", config.summary());
        return Ok(());
    }
    tracing::info!("{}", config.summary());
    syslog_svc::run(config, ironboot_telemetry::shutdown_signal()).await?;
    Ok(())
}
