//! Flags and environment variables, and their validation into the settings the server
//! runs with.

use std::net::SocketAddr;
use std::time::Duration;

use bootfiles::{CatalogueArgs, UnknownClients};
use ironboot_proto::client::RegistryArgs;
use ironboot_telemetry::LogArgs;

use crate::options::{Limits, MAX_BLKSIZE, MIN_BLKSIZE};
use crate::sender::Timing;

/// tftp-svc: read-only TFTP for iPXE binaries.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "tftp-svc", version, about, long_about = None)]
pub struct Config {
    /// UDP addresses to receive requests on (comma-separated). With 0.0.0.0 each reply
    /// still leaves from the address its request was sent to.
    #[arg(
        long,
        env = "IRONBOOT_TFTP_LISTEN",
        value_delimiter = ',',
        default_value = "0.0.0.0:69"
    )]
    pub listen: Vec<SocketAddr>,
    /// Bind every socket to this network interface (SO_BINDTODEVICE), e.g. the
    /// provisioning VLAN. Default: all interfaces.
    #[arg(long, env = "IRONBOOT_TFTP_INTERFACE")]
    pub interface: Option<String>,
    /// Serve every transfer from the listening port instead of a new port per transfer
    /// (RFC 1350 TIDs). For NAT, containers with a single published port and firewalls
    /// that only open port 69.
    #[arg(long, env = "IRONBOOT_TFTP_SINGLE_PORT")]
    pub single_port: bool,
    /// Largest blksize granted. 1468 fills a 1500-byte Ethernet frame without
    /// fragmenting; raise it only on jumbo-frame networks.
    #[arg(long, env = "IRONBOOT_TFTP_MAX_BLKSIZE", default_value_t = 1468)]
    pub max_blksize: u16,
    /// Largest windowsize (RFC 7440) granted.
    #[arg(long, env = "IRONBOOT_TFTP_MAX_WINDOWSIZE", default_value_t = 16)]
    pub max_windowsize: u16,
    /// Retransmit timeout before any round trip was measured.
    #[arg(long, env = "IRONBOOT_TFTP_INITIAL_TIMEOUT", value_parser = humantime::parse_duration, default_value = "1s")]
    pub initial_timeout: Duration,
    /// Floor of the adaptive retransmit timeout.
    #[arg(long, env = "IRONBOOT_TFTP_MIN_TIMEOUT", value_parser = humantime::parse_duration, default_value = "100ms")]
    pub min_timeout: Duration,
    /// Ceiling of the retransmit timeout when the client sends no `timeout` option (its
    /// option, 1–255 s, replaces this).
    #[arg(long, env = "IRONBOOT_TFTP_MAX_TIMEOUT", value_parser = humantime::parse_duration, default_value = "2s")]
    pub max_timeout: Duration,
    /// Consecutive retransmissions without an answer before a transfer is abandoned.
    #[arg(long, env = "IRONBOOT_TFTP_RETRIES", default_value_t = 8)]
    pub retries: u32,
    /// Most transfers in progress at once; more requests are dropped (counted) and the
    /// clients' own retries bring them back.
    #[arg(long, env = "IRONBOOT_TFTP_MAX_TRANSFERS", default_value_t = 2000)]
    pub max_transfers: usize,
    /// Most transfers in progress at once for one client IP.
    #[arg(
        long,
        env = "IRONBOOT_TFTP_MAX_TRANSFERS_PER_CLIENT",
        default_value_t = 16
    )]
    pub max_transfers_per_client: u32,
    /// Clients the registry does not know: serve or refuse.
    #[arg(
        long,
        env = "IRONBOOT_TFTP_UNKNOWN_CLIENTS",
        value_enum,
        default_value = "serve"
    )]
    pub unknown_clients: UnknownClients,
    /// Do not consult the registry at all (no gating). For labs and benchmarks.
    #[arg(long, env = "IRONBOOT_TFTP_NO_REGISTRY")]
    pub no_registry: bool,
    /// Longest a request waits for a registry lookup on a cache miss before it is treated
    /// as an unknown client.
    #[arg(long, env = "IRONBOOT_TFTP_LOOKUP_TIMEOUT", value_parser = humantime::parse_duration, default_value = "500ms")]
    pub lookup_timeout: Duration,
    /// Admin HTTP listener: /metrics (Prometheus) and /healthz. Empty to disable.
    #[arg(
        long,
        env = "IRONBOOT_TFTP_ADMIN_LISTEN",
        default_value = "127.0.0.1:9069"
    )]
    pub admin_listen: String,
    /// Time in-flight transfers get to finish after SIGTERM.
    #[arg(long, env = "IRONBOOT_TFTP_SHUTDOWN_GRACE", value_parser = humantime::parse_duration, default_value = "10s")]
    pub shutdown_grace: Duration,
    /// Threads that run transfers (each a single-threaded runtime). 0 = one per CPU.
    #[arg(long, env = "IRONBOOT_TFTP_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Receive and send buffer of the listening sockets, in bytes.
    #[arg(long, env = "IRONBOOT_TFTP_SOCKET_BUFFER", default_value_t = 4 << 20)]
    pub socket_buffer: usize,
    /// After sending a window, poll the transfer's socket for its ACK for up to this long
    /// before sleeping in the runtime, while no more transfers run than there are workers
    /// (and only as long as the ACKs do arrive within it). Saves the thread wake-up per
    /// window that bounds a single fast transfer; 0 disables.
    #[arg(long, env = "IRONBOOT_TFTP_BUSY_POLL", value_parser = humantime::parse_duration, default_value = "200us")]
    pub busy_poll: Duration,
    /// Bytes of memory for wire images: a served file laid out as its DATA packets for
    /// one blksize, built on first use, from which each window goes out with one
    /// `sendfile` instead of a copy (per-transfer ports only). Least recently used images
    /// are dropped beyond this; 0 copies every window.
    #[arg(long, env = "IRONBOOT_TFTP_ZERO_COPY_MAX_BYTES", default_value_t = 64 << 20)]
    pub zero_copy_max_bytes: u64,
    /// Validate the configuration (flags, directories, registry settings), print a
    /// summary and exit 0, or exit 1 naming what is wrong.
    #[arg(long)]
    pub check_config: bool,
    #[command(flatten)]
    pub files: CatalogueArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--max-blksize {0} is outside {MIN_BLKSIZE}..={MAX_BLKSIZE}")]
    Blksize(u16),
    #[error("--max-windowsize must be at least 1")]
    Windowsize,
    #[error("--listen needs at least one address")]
    NoListen,
    #[error("--min-timeout ({min:?}) must not exceed --max-timeout ({max:?})")]
    Timeouts { min: Duration, max: Duration },
    #[error("--max-transfers and --max-transfers-per-client must be at least 1")]
    Limits,
    #[error("--admin-listen {0:?} is not an address (HOST:PORT, or empty to disable)")]
    Admin(String),
}

/// Validated settings for the server loop.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: Vec<SocketAddr>,
    pub interface: Option<String>,
    pub single_port: bool,
    pub limits: Limits,
    pub timing: Timing,
    pub max_transfers: usize,
    pub max_per_client: u32,
    pub unknown_clients: UnknownClients,
    pub lookup_timeout: Duration,
    pub shutdown_grace: Duration,
    pub socket_buffer: usize,
    pub workers: usize,
    /// How long a transfer polls for an ACK after a window (zero: never).
    pub busy_poll: Duration,
    /// Budget of the wire images (zero: no zero-copy sends).
    pub zero_copy_max_bytes: u64,
}

impl Config {
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        if !(MIN_BLKSIZE..=MAX_BLKSIZE).contains(&self.max_blksize) {
            return Err(ConfigError::Blksize(self.max_blksize));
        }
        if self.max_windowsize == 0 {
            return Err(ConfigError::Windowsize);
        }
        if self.listen.is_empty() {
            return Err(ConfigError::NoListen);
        }
        if self.min_timeout > self.max_timeout {
            return Err(ConfigError::Timeouts {
                min: self.min_timeout,
                max: self.max_timeout,
            });
        }
        if self.max_transfers == 0 || self.max_transfers_per_client == 0 {
            return Err(ConfigError::Limits);
        }
        self.admin_addr()?;
        Ok(Settings {
            listen: self.listen.clone(),
            interface: self.interface.clone(),
            single_port: self.single_port,
            limits: Limits {
                max_blksize: self.max_blksize,
                max_windowsize: self.max_windowsize,
            },
            timing: Timing {
                initial_rto: self.initial_timeout,
                min_rto: self.min_timeout,
                max_rto: self.max_timeout,
                max_retries: self.retries,
            },
            max_transfers: self.max_transfers,
            max_per_client: self.max_transfers_per_client,
            unknown_clients: self.unknown_clients,
            lookup_timeout: self.lookup_timeout,
            shutdown_grace: self.shutdown_grace,
            socket_buffer: self.socket_buffer,
            workers: if self.workers == 0 {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            } else {
                self.workers
            },
            busy_poll: self.busy_poll,
            zero_copy_max_bytes: self.zero_copy_max_bytes,
        })
    }

    pub fn admin_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.admin_listen.trim().is_empty() {
            return Ok(None);
        }
        self.admin_listen
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::Admin(self.admin_listen.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_are_valid() {
        let c = Config::parse_from(["tftp-svc"]);
        let s = c.settings().unwrap();
        assert_eq!(s.limits.max_blksize, 1468);
        assert_eq!(s.listen, vec!["0.0.0.0:69".parse::<SocketAddr>().unwrap()]);
        assert!(!s.single_port);
        assert_eq!(s.busy_poll, Duration::from_micros(200));
        assert_eq!(
            c.admin_addr().unwrap(),
            Some("127.0.0.1:9069".parse().unwrap())
        );
        let c = Config::parse_from(["tftp-svc", "--busy-poll", "0"]);
        assert!(c.settings().unwrap().busy_poll.is_zero());
    }

    #[test]
    fn bad_values_are_named() {
        let c = Config::parse_from(
            ["tftp-svc", "--max-blksize", "70000"]
                .iter()
                .take(1)
                .chain(["--max-blksize", "4"].iter()),
        );
        assert!(matches!(c.settings(), Err(ConfigError::Blksize(4))));
        let c = Config::parse_from(["tftp-svc", "--min-timeout", "3s", "--max-timeout", "1s"]);
        assert!(matches!(c.settings(), Err(ConfigError::Timeouts { .. })));
        let c = Config::parse_from(["tftp-svc", "--admin-listen", "nope"]);
        assert!(matches!(c.settings(), Err(ConfigError::Admin(_))));
        let c = Config::parse_from(["tftp-svc", "--admin-listen", ""]);
        assert_eq!(c.admin_addr().unwrap(), None);
    }
}
