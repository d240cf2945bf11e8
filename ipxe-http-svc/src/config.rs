//! Flags and environment variables, and their validation into the settings the service
//! runs with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bootfiles::{CatalogueArgs, CatalogueConfig, UnknownClients};
use ironboot_proto::client::RegistryArgs;
use ironboot_telemetry::LogArgs;

use crate::client_ip::Cidr;
use crate::script::InstallerDefaults;

/// ipxe-http-svc: iPXE binaries, per-machine auto.ipxe scripts and boot assets over HTTP.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "ipxe-http-svc", version, about, long_about = None)]
pub struct Config {
    /// Address to serve HTTP on. dhcp-svc hands out http://<server>:8080/<mac>/auto.ipxe
    /// by default, so keep the port unless dhcp-svc's --http-server says otherwise.
    #[arg(long, env = "IRONBOOT_HTTP_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Base URL of the installer OS (Tinkerbell "OSIE", e.g. HookOS): the kernel is
    /// <url>/vmlinuz-<arch> and the initrd <url>/initramfs-<arch>. A machine's
    /// netboot.osie.base_url overrides it. Default: this service's own /assets, at the
    /// address the client reached it on.
    #[arg(long, env = "IRONBOOT_HTTP_OSIE_URL", default_value = "")]
    pub osie_url: String,
    /// syslog_host= for the installer (where Hook sends its logs: syslog-svc). Default:
    /// the host the client reached this service on.
    #[arg(long, env = "IRONBOOT_HTTP_SYSLOG_HOST")]
    pub syslog_host: Option<String>,
    /// grpc_authority= for the installer (tink-server, HOST:PORT). Default: the host the
    /// client reached this service on, port 42113.
    #[arg(long, env = "IRONBOOT_HTTP_GRPC_AUTHORITY")]
    pub grpc_authority: Option<String>,
    /// tinkerbell_tls=true on the installer's command line (tink-server speaks TLS).
    #[arg(long, env = "IRONBOOT_HTTP_TINKERBELL_TLS")]
    pub tinkerbell_tls: bool,
    /// tinkerbell_insecure_tls=true (TLS without verifying tink-server's certificate).
    #[arg(long, env = "IRONBOOT_HTTP_TINKERBELL_INSECURE_TLS")]
    pub tinkerbell_insecure_tls: bool,
    /// Kernel consoles, each becoming console=<value>, separated by spaces; the last is
    /// the primary console. Empty for none.
    #[arg(
        long = "console",
        env = "IRONBOOT_HTTP_CONSOLES",
        value_delimiter = ' ',
        default_value = "tty0 ttyS0,115200"
    )]
    pub consoles: Vec<String>,
    /// More kernel arguments for every machine (space-separated), before each machine's
    /// own netboot.osie.kernel_params.
    #[arg(
        long,
        env = "IRONBOOT_HTTP_EXTRA_KERNEL_ARGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub extra_kernel_args: String,
    /// How many times the script retries a failed kernel or initrd download before it
    /// gives up (exit 1: the firmware moves on to the next boot device).
    #[arg(long, env = "IRONBOOT_HTTP_SCRIPT_RETRIES", default_value_t = 10)]
    pub script_retries: u32,
    /// Pause between those retries (whole seconds; iPXE sleeps in seconds).
    #[arg(long, env = "IRONBOOT_HTTP_SCRIPT_RETRY_DELAY", value_parser = humantime::parse_duration, default_value = "2s")]
    pub script_retry_delay: Duration,
    /// Directory of template overrides: a file named like a built-in template
    /// (installer.ipxe, chain.ipxe, refused.ipxe) replaces it. Start from the files in
    /// ipxe-http-svc/templates/.
    #[arg(long, env = "IRONBOOT_HTTP_TEMPLATES_DIR")]
    pub templates_dir: Option<PathBuf>,
    /// Reverse proxies (comma-separated CIDRs or addresses) whose X-Forwarded-For is
    /// believed. Requests from anywhere else are identified by their own address.
    #[arg(
        long = "trusted-proxy",
        env = "IRONBOOT_HTTP_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<Cidr>,
    /// Clients the registry does not know asking for an iPXE binary: serve or refuse.
    /// (Scripts always need a registered machine.)
    #[arg(
        long,
        env = "IRONBOOT_HTTP_UNKNOWN_CLIENTS",
        value_enum,
        default_value = "serve"
    )]
    pub unknown_clients: UnknownClients,
    /// Longest a request waits for a registry lookup on a cache miss. When it runs out
    /// the machine counts as unknown (or the answer is 503 while nothing is cached).
    #[arg(long, env = "IRONBOOT_HTTP_LOOKUP_TIMEOUT", value_parser = humantime::parse_duration, default_value = "1s")]
    pub lookup_timeout: Duration,
    /// Rendered scripts kept (one per machine interface and server address) so repeated
    /// requests skip the template; 0 renders every request.
    #[arg(
        long,
        env = "IRONBOOT_HTTP_SCRIPT_CACHE_ENTRIES",
        default_value_t = 16384
    )]
    pub script_cache_entries: usize,
    /// Most bytes of iPXE binaries kept in sealed memfds so downloads go out with
    /// sendfile (no copy per download, like nginx); 0 writes every download.
    #[arg(long, env = "IRONBOOT_HTTP_ZERO_COPY_MAX_BYTES", default_value_t = 256 << 20)]
    pub zero_copy_max_bytes: u64,
    /// Directory for those copies (unnamed O_TMPFILE files; a disk filesystem with large
    /// folios such as ext4 or xfs makes sendfile cheapest). Default: the system temporary
    /// directory. Where O_TMPFILE fails, sealed memfds are used.
    #[arg(long, env = "IRONBOOT_HTTP_ZERO_COPY_DIR")]
    pub zero_copy_dir: Option<PathBuf>,
    /// Most open client connections; further clients wait in the kernel's accept queue.
    #[arg(long, env = "IRONBOOT_HTTP_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// A connection that moves no data for this long is closed (idle keep-alive,
    /// stalled readers, slow-header clients).
    #[arg(long, env = "IRONBOOT_HTTP_IDLE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "60s")]
    pub idle_timeout: Duration,
    /// Time in-flight downloads get to finish after SIGTERM.
    #[arg(long, env = "IRONBOOT_HTTP_SHUTDOWN_GRACE", value_parser = humantime::parse_duration, default_value = "10s")]
    pub shutdown_grace: Duration,
    /// Validate the configuration (flags, templates, directories, registry settings),
    /// print a summary and exit 0, or exit 1 naming what is wrong.
    #[arg(long)]
    pub check_config: bool,
    /// iPXE binaries are served from memory at /ipxe/<file> and /ipxe/<mac>/<file>;
    /// --assets-dir is served from disk at /assets/ (kernels, initrds, ISOs).
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
    #[error("--osie-url {0:?}: expected an http:// or https:// URL without spaces")]
    OsieUrl(String),
    #[error("--{0} {1:?}: expected HOST or HOST:PORT without spaces")]
    Host(&'static str, String),
    #[error("--max-connections must be at least 1")]
    MaxConnections,
    #[error("--idle-timeout must be at least 1s")]
    IdleTimeout,
    #[error("--script-retry-delay must be whole seconds between 1s and 1h")]
    RetryDelay,
    #[error("--assets-dir {0}: {1}")]
    Assets(PathBuf, String),
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub installer: InstallerDefaults,
    pub templates_dir: Option<PathBuf>,
    pub trusted_proxies: Vec<Cidr>,
    pub unknown_clients: UnknownClients,
    pub lookup_timeout: Duration,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub script_cache_entries: usize,
    pub zero_copy_max_bytes: u64,
    pub zero_copy_dir: Option<PathBuf>,
    pub assets_dir: Option<PathBuf>,
    pub link_roots: Vec<PathBuf>,
}

fn is_host(s: &str) -> bool {
    !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c.is_control() || c == '/')
}

impl Config {
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let osie = self.osie_url.trim();
        if !osie.is_empty()
            && (!(osie.starts_with("http://") || osie.starts_with("https://"))
                || osie.contains(char::is_whitespace))
        {
            return Err(ConfigError::OsieUrl(self.osie_url.clone()));
        }
        for (flag, v) in [
            ("syslog-host", &self.syslog_host),
            ("grpc-authority", &self.grpc_authority),
        ] {
            if let Some(v) = v
                && !is_host(v.trim())
            {
                return Err(ConfigError::Host(flag, v.clone()));
            }
        }
        if self.max_connections == 0 {
            return Err(ConfigError::MaxConnections);
        }
        if self.idle_timeout < Duration::from_secs(1) {
            return Err(ConfigError::IdleTimeout);
        }
        let delay = self.script_retry_delay;
        if delay.subsec_nanos() != 0
            || delay < Duration::from_secs(1)
            || delay > Duration::from_secs(3600)
        {
            return Err(ConfigError::RetryDelay);
        }
        let assets_dir = match &self.files.assets_dir {
            Some(d) if !d.as_os_str().is_empty() => {
                if !d.is_dir() {
                    return Err(ConfigError::Assets(d.clone(), "not a directory".into()));
                }
                Some(d.clone())
            }
            _ => None,
        };
        Ok(Settings {
            listen: self.listen,
            installer: InstallerDefaults {
                osie_url: osie.to_string(),
                syslog_host: self.syslog_host.as_ref().map(|s| s.trim().to_string()),
                grpc_authority: self.grpc_authority.as_ref().map(|s| s.trim().to_string()),
                tinkerbell_tls: self.tinkerbell_tls,
                tinkerbell_insecure_tls: self.tinkerbell_insecure_tls,
                consoles: self
                    .consoles
                    .iter()
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect(),
                extra_args: crate::script::tokens(&self.extra_kernel_args),
                retries: self.script_retries,
                retry_delay_secs: delay.as_secs(),
            },
            templates_dir: self
                .templates_dir
                .clone()
                .filter(|d| !d.as_os_str().is_empty()),
            trusted_proxies: self.trusted_proxies.clone(),
            unknown_clients: self.unknown_clients,
            lookup_timeout: self.lookup_timeout,
            max_connections: self.max_connections,
            idle_timeout: self.idle_timeout,
            shutdown_grace: self.shutdown_grace,
            script_cache_entries: self.script_cache_entries,
            zero_copy_max_bytes: self.zero_copy_max_bytes,
            zero_copy_dir: Some(
                self.zero_copy_dir
                    .clone()
                    .unwrap_or_else(std::env::temp_dir),
            ),
            assets_dir,
            link_roots: self
                .files
                .link_roots
                .iter()
                .map(|p| p.trim())
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
        })
    }

    /// The in-memory catalogue: the iPXE directories only. Assets are large (ISOs) and
    /// served from disk by the /assets route instead.
    pub fn catalogue_config(&self) -> CatalogueConfig {
        CatalogueArgs {
            assets_dir: None,
            ..self.files.clone()
        }
        .catalogue_config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Config {
        Config::parse_from(std::iter::once("ipxe-http-svc").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse(&[]);
        let s = c.settings().unwrap();
        assert_eq!(s.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(s.installer.consoles, ["tty0", "ttyS0,115200"]);
        assert_eq!(s.installer.retries, 10);
        assert_eq!(s.installer.retry_delay_secs, 2);
        assert!(s.trusted_proxies.is_empty());
        assert!(s.installer.extra_args.is_empty());
        assert!(
            c.catalogue_config().dirs.iter().all(|d| d.max_depth == 1),
            "no assets in memory"
        );
    }

    #[test]
    fn lists() {
        let c = parse(&[
            "--console",
            "ttyS1,115200",
            "--trusted-proxy",
            "10.0.0.0/8,127.0.0.1",
            "--extra-kernel-args",
            "-- a=1  b",
        ]);
        let s = c.settings().unwrap();
        assert_eq!(s.installer.consoles, ["ttyS1,115200"]);
        assert_eq!(s.trusted_proxies.len(), 2);
        assert_eq!(s.installer.extra_args, ["--", "a=1", "b"]);
        let s = parse(&["--console", ""]).settings().unwrap();
        assert!(s.installer.consoles.is_empty());
        assert!(Config::try_parse_from(["x", "--trusted-proxy", "10.0.0.0/40"]).is_err());
    }

    #[test]
    fn bad_values_are_named() {
        assert!(matches!(
            parse(&["--osie-url", "ftp://x"]).settings(),
            Err(ConfigError::OsieUrl(_))
        ));
        assert!(matches!(
            parse(&["--syslog-host", "a b"]).settings(),
            Err(ConfigError::Host("syslog-host", _))
        ));
        assert!(matches!(
            parse(&["--script-retry-delay", "1500ms"]).settings(),
            Err(ConfigError::RetryDelay)
        ));
        assert!(matches!(
            parse(&["--max-connections", "0"]).settings(),
            Err(ConfigError::MaxConnections)
        ));
        assert!(matches!(
            parse(&["--assets-dir", "/nonexistent/x"]).settings(),
            Err(ConfigError::Assets(..))
        ));
    }
}
