//! The syslog-svc binary: flags → [`syslog_svc::run`].

use syslog_svc::Config;

fn main() -> std::process::ExitCode {
    let config: Config = ironboot_telemetry::parse();
    let _telemetry = ironboot_telemetry::init_logging(&config.log, "syslog-svc", "info");
    ironboot_telemetry::warn_renamed_env::<Config>("SYSLOG_");
    if config.check_config {
        return ironboot_telemetry::check_config_exit(|| {
            config
                .validate()
                .map(|()| format!("{}\n", config.summary()))
                .map_err(|e| e.to_string())
        });
    }
    tracing::info!("{}", config.summary());
    ironboot_telemetry::run_service("syslog-svc", || {
        syslog_svc::run(config, ironboot_telemetry::shutdown_signal())
    })
}
