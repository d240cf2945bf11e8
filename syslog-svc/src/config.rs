//! Flags and environment variables. Every limit that bounds memory is here, with a
//! default that holds on a small VM: queue 64 MiB, per-machine rings 256 MiB in total,
//! TCP read buffers ≈ 128 KiB per connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::FixedOffset;
use clap::Parser;
use ironboot_proto::client::RegistryArgs;
use ironboot_telemetry::LogArgs;

use crate::store::StoreLimits;
use crate::transport::tcp::TcpLimits;

/// A listen address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen(pub Option<SocketAddr>);

fn parse_listen(s: &str) -> Result<Listen, String> {
    if s.eq_ignore_ascii_case("off") || s.is_empty() {
        return Ok(Listen(None));
    }
    s.parse::<SocketAddr>()
        .map(|a| Listen(Some(a)))
        .map_err(|_| format!("{s:?}: expected IP:PORT (e.g. 0.0.0.0:514) or off"))
}

/// A byte size: `65536`, `64K`, `64KiB`, `100M`, `1G` (binary multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a size such as 65536, 64KiB, 100MiB or 1GiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?}: unknown unit (use K, M or G)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?}: too large"))
}

fn parse_offset(s: &str) -> Result<FixedOffset, String> {
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return FixedOffset::east_opt(0).ok_or_else(|| "offset".to_string());
    }
    s.parse::<FixedOffset>()
        .map_err(|_| format!("{s:?}: expected UTC or an offset such as +02:00"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

/// ironboot syslog receiver: RFC 5424 and 3164 over UDP and TCP, each message written as
/// one JSON line and attributed to the registered machine that sent it.
#[derive(Clone, Debug, Parser)]
#[command(name = "syslog-svc", version)]
pub struct Config {
    /// UDP listen address, or "off".
    #[arg(long, env = "IRONBOOT_SYSLOG_UDP_LISTEN", default_value = "0.0.0.0:514", value_parser = parse_listen)]
    pub udp_listen: Listen,
    /// TCP listen address (RFC 6587, octet-counted or LF-framed), or "off".
    #[arg(long, env = "IRONBOOT_SYSLOG_TCP_LISTEN", default_value = "0.0.0.0:514", value_parser = parse_listen)]
    pub tcp_listen: Listen,
    /// HTTP listen address of the query API, /metrics and /healthz, or "off". Loopback by
    /// default: the logs of a boot can hold secrets; expose it deliberately.
    #[arg(long, env = "IRONBOOT_SYSLOG_HTTP_LISTEN", default_value = "127.0.0.1:9514", value_parser = parse_listen)]
    pub http_listen: Listen,
    /// Where the JSON lines go: "-" for stdout, or a file path (appended, rotated by size).
    #[arg(long, env = "IRONBOOT_SYSLOG_OUTPUT", default_value = "-")]
    pub output: PathBuf,
    /// Rotate the output file when it would grow past this size.
    #[arg(long, env = "IRONBOOT_SYSLOG_ROTATE_SIZE", default_value = "100MiB", value_parser = parse_size)]
    pub rotate_size: u64,
    /// Rotated files kept (FILE.1 … FILE.N); 0 keeps none.
    #[arg(long, env = "IRONBOOT_SYSLOG_ROTATE_KEEP", default_value_t = 5)]
    pub rotate_keep: u32,
    /// Messages the queue between the sockets and the writer holds; UDP beyond it is
    /// dropped (counted), TCP waits.
    #[arg(long, env = "IRONBOOT_SYSLOG_QUEUE_CAPACITY", default_value_t = 65_536)]
    pub queue_capacity: usize,
    /// Bytes the queue holds at most (message data plus bookkeeping).
    #[arg(long, env = "IRONBOOT_SYSLOG_QUEUE_BYTES", default_value = "64MiB", value_parser = parse_size)]
    pub queue_bytes: u64,
    /// Longest message kept whole; longer TCP frames are cut here and flagged truncated.
    /// The default keeps every possible UDP datagram whole.
    #[arg(long, env = "IRONBOOT_SYSLOG_MAX_MESSAGE", default_value = "64KiB", value_parser = parse_size)]
    pub max_message: u64,
    /// Kernel receive buffer of the UDP socket (absorbs bursts); 0 = system default.
    #[arg(long, env = "IRONBOOT_SYSLOG_UDP_RECV_BUFFER", default_value = "8MiB", value_parser = parse_size)]
    pub udp_recv_buffer: u64,
    /// Threads receiving on the UDP socket.
    #[arg(long, env = "IRONBOOT_SYSLOG_UDP_THREADS", default_value_t = 1)]
    pub udp_threads: usize,
    /// TCP connections open at once; more are closed at accept (counted).
    #[arg(
        long,
        env = "IRONBOOT_SYSLOG_TCP_MAX_CONNECTIONS",
        default_value_t = 1024
    )]
    pub tcp_max_connections: usize,
    /// A TCP connection silent this long is closed.
    #[arg(long, env = "IRONBOOT_SYSLOG_TCP_IDLE_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub tcp_idle_timeout: Duration,
    /// Lines kept per machine for the query API.
    #[arg(long, env = "IRONBOOT_SYSLOG_RING_MESSAGES", default_value_t = 1000)]
    pub ring_messages: usize,
    /// Bytes kept per machine for the query API.
    #[arg(long, env = "IRONBOOT_SYSLOG_RING_BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub ring_bytes: u64,
    /// Machines with a kept log; past it the one that logged least recently is evicted.
    #[arg(long, env = "IRONBOOT_SYSLOG_RING_MACHINES", default_value_t = 4096)]
    pub ring_machines: usize,
    /// Bytes kept over all machines; past it the least recent machine is evicted.
    #[arg(long, env = "IRONBOOT_SYSLOG_RING_TOTAL_BYTES", default_value = "256MiB", value_parser = parse_size)]
    pub ring_total_bytes: u64,
    /// Zone assumed for RFC 3164 timestamps, which carry none: UTC or +HH:MM.
    #[arg(long, env = "IRONBOOT_SYSLOG_RFC3164_OFFSET", default_value = "UTC", value_parser = parse_offset)]
    pub rfc3164_offset: FixedOffset,
    /// Validate the configuration, print a summary and exit.
    #[arg(long)]
    pub check_config: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Checks what clap cannot: relations between values, and that the output is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.udp_listen.0.is_none() && self.tcp_listen.0.is_none() {
            return bad("both --udp-listen and --tcp-listen are off: nothing to receive".into());
        }
        if self.max_message == 0 || self.max_message > 16 << 20 {
            return bad(format!(
                "--max-message {}: must be between 1 byte and 16 MiB",
                self.max_message
            ));
        }
        if self.queue_capacity == 0 || self.queue_bytes == 0 {
            return bad("--queue-capacity and --queue-bytes must be positive".into());
        }
        if self.udp_threads == 0 || self.udp_threads > 64 {
            return bad(format!(
                "--udp-threads {}: must be 1 to 64",
                self.udp_threads
            ));
        }
        if self.tcp_max_connections == 0 {
            return bad("--tcp-max-connections must be positive".into());
        }
        if self.tcp_idle_timeout.is_zero() {
            return bad("--tcp-idle-timeout must be positive".into());
        }
        if self.rotate_size < 4096 {
            return bad(format!(
                "--rotate-size {}: must be at least 4KiB",
                self.rotate_size
            ));
        }
        if let Some(path) = self.output_file() {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            if !dir.is_dir() {
                return bad(format!(
                    "--output {}: directory {} does not exist",
                    path.display(),
                    dir.display()
                ));
            }
        }
        self.registry
            .connect_lazy()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(())
    }

    /// The output file, unless output goes to stdout.
    pub fn output_file(&self) -> Option<&std::path::Path> {
        (self.output.as_os_str() != "-").then_some(self.output.as_path())
    }

    pub fn store_limits(&self) -> StoreLimits {
        StoreLimits {
            messages: self.ring_messages,
            bytes: usize::try_from(self.ring_bytes).unwrap_or(usize::MAX),
            machines: self.ring_machines,
            total_bytes: usize::try_from(self.ring_total_bytes).unwrap_or(usize::MAX),
        }
    }

    pub fn tcp_limits(&self) -> TcpLimits {
        TcpLimits {
            max_connections: self.tcp_max_connections,
            idle_timeout: self.tcp_idle_timeout,
            max_message: self.max_message as usize,
        }
    }

    /// A one-screen summary for `--check-config` and the start-up log.
    pub fn summary(&self) -> String {
        let l = |x: &Listen| x.0.map_or("off".to_string(), |a| a.to_string());
        format!(
            "udp {} · tcp {} · http {} · output {} (rotate {} B, keep {}) · queue {} msgs / {} B · max message {} B · rings {} msgs / {} B per machine, {} machines / {} B total · registry {}",
            l(&self.udp_listen),
            l(&self.tcp_listen),
            l(&self.http_listen),
            self.output.display(),
            self.rotate_size,
            self.rotate_keep,
            self.queue_capacity,
            self.queue_bytes,
            self.max_message,
            self.ring_messages,
            self.ring_bytes,
            self.ring_machines,
            self.ring_total_bytes,
            self.registry.endpoint,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_has_the_service_prefix_and_old_names_are_warned_about() {
        use clap::CommandFactory;
        for a in Config::command().get_arguments() {
            if let Some(env) = a.get_env().and_then(|e| e.to_str()) {
                assert!(
                    env.starts_with("IRONBOOT_") || env.starts_with("OTEL_"),
                    "{env} lacks the IRONBOOT_ prefix"
                );
            }
        }
        let old = ["SYSLOG_RFC3164_OFFSET"];
        let found =
            ironboot_telemetry::renamed_env_in_use::<Config>("SYSLOG_", |n| old.contains(&n));
        assert_eq!(
            found,
            vec![(
                "SYSLOG_RFC3164_OFFSET".to_string(),
                "IRONBOOT_SYSLOG_RFC3164_OFFSET".to_string()
            )]
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[tokio::test]
    async fn defaults_validate() {
        let c = Config::parse_from(["syslog-svc"]);
        assert_eq!(
            c.udp_listen,
            Listen(Some("0.0.0.0:514".parse().expect("addr")))
        );
        assert_eq!(c.max_message, 65536);
        c.validate().expect("defaults are valid");
        let c = Config::parse_from(["syslog-svc", "--udp-listen", "off", "--tcp-listen", "off"]);
        assert!(c.validate().is_err());
    }
}
