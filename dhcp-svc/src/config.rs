//! Flags (each with an environment variable) and their validation into [`Settings`].

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use ironboot_proto::client::RegistryArgs;

use crate::decide::{Mode, Settings};
use crate::netboot::{BootFiles, Endpoints};

/// ironboot DHCPv4 for network boot. In `reservation` mode it answers only machines
/// registered in hardware-api, with their reserved address; in `proxy` mode it runs
/// beside an existing DHCP server and only tells netboot clients what to boot. Unknown
/// MACs never get an answer.
#[derive(Clone, Debug, Parser)]
#[command(name = "dhcp-svc", version)]
pub struct Config {
    /// reservation: addresses + boot info for registered MACs. proxy: boot info only
    /// (ProxyDHCP, plus the PXE boot-server port 4011).
    #[arg(
        long,
        env = "IRONBOOT_DHCP_MODE",
        value_enum,
        default_value = "reservation"
    )]
    pub mode: Mode,

    /// UDP port to listen on (clients always send to 67; change only for tests/relays).
    #[arg(long, env = "IRONBOOT_DHCP_PORT", default_value_t = 67)]
    pub port: u16,

    /// Serve only these interfaces (repeat, or comma-separate in the variable). Default:
    /// every interface.
    #[arg(
        long = "interface",
        env = "IRONBOOT_DHCP_INTERFACES",
        value_delimiter = ','
    )]
    pub interfaces: Vec<String>,

    /// Server identifier (option 54) to advertise. Default: the address of the
    /// interface the request came in on.
    #[arg(long, env = "IRONBOOT_DHCP_SERVER_ID")]
    pub server_id: Option<Ipv4Addr>,

    /// TFTP server (next-server / siaddr) for firmware PXE clients. Default: the server
    /// identifier.
    #[arg(long, env = "IRONBOOT_DHCP_TFTP_SERVER")]
    pub tftp_server: Option<Ipv4Addr>,

    /// ipxe-http-svc as clients reach it, HOST[:PORT]; goes into script and HTTP-boot
    /// URLs. Default: the server identifier, port 8080.
    #[arg(long, env = "IRONBOOT_DHCP_HTTP_SERVER")]
    pub http_server: Option<String>,

    /// Syslog server sent as option 7 (e.g. syslog-svc's address).
    #[arg(long, env = "IRONBOOT_DHCP_SYSLOG_SERVER")]
    pub syslog_server: Option<Ipv4Addr>,

    /// Lease time in seconds for records without one (60 to 31536000).
    #[arg(long, env = "IRONBOOT_DHCP_DEFAULT_LEASE", default_value_t = 86400, value_parser = validate_lease)]
    pub default_lease: u32,

    /// User classes (option 77) that mean "already our iPXE": such clients get the
    /// script URL, never the binary again.
    #[arg(long = "ipxe-user-class", env = "IRONBOOT_DHCP_IPXE_USER_CLASSES", value_delimiter = ',', default_values_t = ["iPXE".to_string(), "Tinkerbell".to_string()])]
    pub ipxe_user_classes: Vec<String>,

    /// Per-architecture binary overrides, ARCH=FILE (option 93 number), e.g.
    /// 7=snponly.efi. Defaults: 0 undionly.kpxe; 6,7,9,15,16 ipxe.efi; 10,11,18,19 snp.efi.
    #[arg(
        long = "boot-file",
        env = "IRONBOOT_DHCP_BOOT_FILES",
        value_delimiter = ','
    )]
    pub boot_files: Vec<String>,

    /// Worker threads per socket. One serves over 15,000 DORA/s; more share the socket,
    /// so each takes what the others leave waiting, which undoes receive coalescing
    /// (about twice the CPU per exchange, measured): raise it only when one core cannot
    /// keep up.
    #[arg(long, env = "IRONBOOT_DHCP_WORKERS", default_value_t = 1)]
    pub workers: usize,

    /// Under load (over 2,000 packets/s on a worker), wait this long after serving a
    /// batch before receiving again, so that one wake-up serves every packet that
    /// arrived meanwhile (as a NIC's interrupt moderation does): much less CPU per packet
    /// for at most this much added latency. 0 turns it off; at most 10ms.
    #[arg(long, env = "IRONBOOT_DHCP_RECEIVE_COALESCE", default_value = "0.5ms", value_parser = parse_duration)]
    pub receive_coalesce: Duration,

    /// Requests whose MAC is not cached wait here for one registry lookup; when full
    /// they are answered as unknown (and counted).
    #[arg(long, env = "IRONBOOT_DHCP_MISS_QUEUE", default_value_t = 1024)]
    pub miss_queue: usize,

    /// Unregistered MACs remembered for `/unregistered` (least recently seen dropped).
    #[arg(
        long,
        env = "IRONBOOT_DHCP_UNREGISTERED_CAPACITY",
        default_value_t = 4096
    )]
    pub unregistered_capacity: usize,

    /// How often one unregistered MAC is logged again.
    #[arg(long, env = "IRONBOOT_DHCP_UNREGISTERED_LOG_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub unregistered_log_interval: Duration,

    /// Hand netboot clients the boot's W3C trace context: a `-00-<trace>-<span>-<flags>`
    /// suffix on TFTP boot file names (stripped by tftp-svc), `?traceparent=` on HTTP
    /// URLs, and option 43 sub-option 69 for PXE firmware. Set false for a firmware that
    /// cannot cope with the longer names.
    #[arg(long, env = "IRONBOOT_DHCP_TRACE_CONTEXT", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub trace_context: bool,

    /// Admin HTTP listener: /metrics, /healthz, /unregistered.
    #[arg(
        long,
        env = "IRONBOOT_DHCP_ADMIN_LISTEN",
        default_value = "127.0.0.1:9067"
    )]
    pub admin_listen: SocketAddr,

    /// Validate the configuration, print a summary and exit.
    #[arg(long)]
    pub check_config: bool,

    #[command(flatten)]
    pub registry: RegistryArgs,

    #[command(flatten)]
    pub log: ironboot_telemetry::LogArgs,
}

fn validate_lease(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if (60..=31_536_000).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v}: a lease is 60 to 31536000 seconds"))
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (n, mult) = if let Some(v) = s.strip_suffix("ms") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60.0)
    } else {
        (s, 1.0)
    };
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 60s, 500ms or 5m"))?;
    Ok(Duration::from_secs_f64(n * mult))
}

impl Config {
    /// Checks what can be checked without sockets and builds the decision settings.
    pub fn settings(&self) -> Result<Settings, String> {
        let boot_files = BootFiles::default().with_overrides(&self.boot_files)?;
        let http = match &self.http_server {
            Some(h) if h.trim().is_empty() || h.contains('/') || h.contains(' ') => {
                return Err(format!("--http-server {h:?}: expected HOST[:PORT]"));
            }
            Some(h) => h.trim().to_string(),
            // Resolved per packet: the server identifier on that link, port 8080.
            None => String::new(),
        };
        if self
            .ipxe_user_classes
            .iter()
            .any(|c| c.is_empty() || c.len() > 255)
        {
            return Err("--ipxe-user-class: each class is 1 to 255 bytes".into());
        }
        if self.workers == 0 || self.workers > 64 {
            return Err("--workers: 1 to 64".into());
        }
        if self.receive_coalesce > Duration::from_millis(10) {
            return Err("--receive-coalesce: at most 10ms".into());
        }
        Ok(Settings {
            mode: self.mode,
            default_lease_secs: self.default_lease,
            syslog_server: self.syslog_server,
            ipxe_user_classes: self.ipxe_user_classes.clone(),
            boot_files,
            endpoints: Endpoints { http },
            trace_context: self.trace_context,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe_and_valid() {
        let c = Config::parse_from(["dhcp-svc"]);
        assert_eq!(c.mode, Mode::Reservation);
        let s = c.settings().unwrap();
        assert_eq!(s.endpoints.http, "");
        assert_eq!(s.ipxe_user_classes, vec!["iPXE", "Tinkerbell"]);
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        assert!(Config::try_parse_from(["dhcp-svc", "--default-lease", "0"]).is_err());
        let c = Config::parse_from(["dhcp-svc", "--boot-file", "7"]);
        assert!(c.settings().unwrap_err().contains("ARCH=FILE"));
        let c = Config::parse_from(["dhcp-svc", "--http-server", "http://x/"]);
        assert!(c.settings().unwrap_err().contains("--http-server"));
    }
}
