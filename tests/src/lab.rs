//! One scenario's world: a namespace with the boot LAN, the services, the machine.
//!
//! ```text
//!   namespace ibe-<tag>-<pid>-<n>
//!   ┌──────────────────────────────────────────────────────────────────────────┐
//!   │ lo 127.0.0.1: hardware-api :50061, OTLP collector :4317, admin/query     │
//!   │ br0 10.91.0.1/24, fd91::1/64 (radvd: RAs so iPXE skips its IPv6 wait)     │
//!   │   ├─ dhcp-svc (or dnsmasq / Kea / ISC dhcpd), tftp-svc :69,              │
//!   │   │  ipxe-http-svc :8080 (scripts + /assets: kernel, initramfs),         │
//!   │   │  syslog-svc :514                                                      │
//!   │   └─ tap0 ── QEMU (SeaBIOS + iPXE ROM, or OVMF)                           │
//!   └──────────────────────────────────────────────────────────────────────────┘
//! ```
//! With [`Lab::with_host_uplink`] the services run on the host instead (the compose
//! stack): `br0` has no IPv4 address, and a veth pair links it to the host, whose end
//! holds 10.91.0.1/24.
//!
//! Dropping the lab kills every process it started (by PID), deletes the namespace (and
//! with it the bridge and the tap) and removes its directory; when the scenario failed it
//! prints every log first and keeps the directory.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::bins;
use crate::initramfs;
use crate::lock::{self, ScenarioLock};
use crate::otlp::{self, Collector};
use crate::vm::{Firmware, Vm, VmSpec};
use ironboot_testkit::metrics::Scrape;
use ironboot_testkit::{HostLink, Netns, Proc, http_get, require_root, unique_tag};

pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 91, 0, 1);
pub const NETMASK: Ipv4Addr = Ipv4Addr::new(255, 255, 255, 0);
pub const SERVER_IP6: &str = "fd91::1/64";
pub const REGISTRY: &str = "127.0.0.1:50061";
pub const HTTP_PORT: u16 = 8080;
pub const DHCP_ADMIN: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9067);
pub const TFTP_ADMIN: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9069);
pub const HTTP_ADMIN: SocketAddrV4 = SocketAddrV4::new(SERVER_IP, HTTP_PORT);
pub const SYSLOG_API: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9514);
/// The test's OTLP/gRPC trace collector, on the namespace loopback.
pub const OTLP_COLLECTOR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4317));
const READ_TOKEN: &str = "e2e-read-token-0123456789";
const WRITE_TOKEN: &str = "e2e-write-token-0123456789";
pub const TAP: &str = "tap0";
pub const BRIDGE: &str = "br0";
/// Names of the boot assets under `/assets/`.
pub const KERNEL_ASSET: &str = "vmlinuz";
pub const INITRD_ASSET: &str = "initramfs.cpio.gz";

/// A machine as the test registers it.
#[derive(Clone, Debug)]
pub struct Machine {
    pub name: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub uefi: bool,
    pub allow_pxe: Option<bool>,
}

impl Machine {
    pub fn new(name: &str, mac: &str, ip: Ipv4Addr, firmware: Firmware) -> Machine {
        Machine {
            name: name.into(),
            mac: mac.into(),
            ip,
            uefi: firmware == Firmware::Uefi,
            allow_pxe: Some(true),
        }
    }

    /// The `hwctl apply` document: the reservation and the installer (our kernel and
    /// initramfs from the lab's assets) as per-hardware OSIE overrides.
    pub fn yaml(&self) -> String {
        let allow = match self.allow_pxe {
            Some(b) => format!("      allow_pxe: {b}\n"),
            None => String::new(),
        };
        format!(
            "apiVersion: ironboot/v1\nkind: Hardware\nname: {name}\nfacility: e2e\ninterfaces:\n  - mac: {mac}\n    dhcp:\n      ip: {ip}\n      netmask: {NETMASK}\n      gateway: {SERVER_IP}\n      hostname: {name}\n      lease_time: 3600\n      arch: x86_64\n      uefi: {uefi}\n    netboot:\n{allow}      osie:\n        base_url: http://{SERVER_IP}:{HTTP_PORT}/assets\n        kernel: {KERNEL_ASSET}\n        initrd: {INITRD_ASSET}\n        kernel_params: panic=-1\n",
            name = self.name,
            mac = self.mac,
            ip = self.ip,
            uefi = self.uefi,
        )
    }
}

/// The host's side of a lab whose services run on the host.
struct HostSide {
    link: HostLink,
    registry_token: String,
}

pub struct Lab {
    pub tag: String,
    pub ns: Netns,
    pub dir: PathBuf,
    procs: Vec<Proc>,
    /// The OTLP trace collector every service exports to (dropped after the processes,
    /// so their last spans, flushed at shutdown, still arrive).
    collector: Option<Collector>,
    /// Other hosts on the boot LAN (namespaces linked to the bridge), e.g. an existing
    /// DHCP server. Dropped after the processes.
    peers: Vec<Netns>,
    /// Set when the services run on the host (see [`Lab::with_host_uplink`]).
    host: Option<HostSide>,
    tmp: Option<tempfile::TempDir>,
    _lock: ScenarioLock,
}

impl Lab {
    /// Takes the scenario lock, builds the namespace with bridge, tap and RA source, and
    /// starts the registry.
    pub fn new(tag: &str) -> Lab {
        let mut lab = Lab::lan(tag, None);
        lab.ns
            .ip(&["addr", "add", &format!("{SERVER_IP}/24"), "dev", BRIDGE]);
        lab.collector = Some(Collector::start_in(&lab.ns, OTLP_COLLECTOR));
        lab.start_registry();
        lab
    }

    /// The boot LAN with the services on the host instead (containers publishing their
    /// ports, dhcp-svc on the host network): the bridge is linked to the host by a veth
    /// pair whose host end (returned by [`Lab::uplink`]) carries [`SERVER_IP`]. Nothing is
    /// started but the RA source; `hwctl` and the HTTP queries run on the host, against
    /// the registry at [`REGISTRY`] with the token of [`Lab::set_registry_token`].
    pub fn with_host_uplink(tag: &str) -> Lab {
        let id = unique_tag();
        let uplink = format!("ibu{id}");
        let lab = Lab::lan(
            tag,
            Some(HostSide {
                link: HostLink(uplink.clone()),
                registry_token: String::new(),
            }),
        );
        let inside = format!("ibl{id}");
        ironboot_testkit::ip(&[
            "link", "add", &uplink, "type", "veth", "peer", "name", &inside,
        ]);
        ironboot_testkit::ip(&["link", "set", &inside, "netns", &lab.ns.name]);
        lab.ns.ip(&["link", "set", &inside, "master", BRIDGE]);
        lab.ns.ip(&["link", "set", &inside, "up"]);
        ironboot_testkit::ip(&["addr", "add", &format!("{SERVER_IP}/24"), "dev", &uplink]);
        ironboot_testkit::ip(&["link", "set", &uplink, "up"]);
        lab
    }

    /// The write token `hwctl` presents to a registry on the host.
    pub fn set_registry_token(&mut self, token: &str) {
        if let Some(h) = &mut self.host {
            h.registry_token = token.to_string();
        }
    }

    /// The host end of the LAN's uplink, when the services run on the host.
    pub fn uplink(&self) -> Option<&str> {
        self.host.as_ref().map(|h| h.link.0.as_str())
    }

    /// Takes the scenario lock and builds the namespace with bridge, tap and RA source.
    fn lan(tag: &str, host: Option<HostSide>) -> Lab {
        require_root();
        let lock = lock::acquire();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("ironboot-e2e-{tag}-"))
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let ns = Netns::new(format!("ibe-{tag}-{}", unique_tag()));
        let mut lab = Lab {
            tag: tag.into(),
            ns,
            dir,
            procs: Vec::new(),
            collector: None,
            peers: Vec::new(),
            host,
            tmp: Some(tmp),
            _lock: lock,
        };
        lab.ns.ip(&[
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "forward_delay",
            "0",
        ]);
        lab.ns
            .ip(&["addr", "add", SERVER_IP6, "dev", BRIDGE, "nodad"]);
        lab.ns.ip(&["tuntap", "add", "dev", TAP, "mode", "tap"]);
        lab.ns.ip(&["link", "set", TAP, "master", BRIDGE]);
        lab.ns.ip(&["link", "set", TAP, "up"]);
        lab.ns.ip(&["link", "set", BRIDGE, "up"]);
        lab.start_radvd();
        lab
    }

    fn spawn(&mut self, name: &str, program: &Path, args: &[String]) -> usize {
        let mut cmd = self.ns.cmd(program);
        cmd.args(args);
        self.spawn_cmd(name, cmd)
    }

    fn spawn_cmd(&mut self, name: &str, cmd: Command) -> usize {
        let log = self.dir.join(format!("{name}.log"));
        let mut cmd = cmd;
        cmd.env("NO_COLOR", "1");
        if let Some(c) = &self.collector {
            cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", c.endpoint());
        }
        self.procs.push(Proc::spawn_logged(cmd, name, &log));
        self.procs.len() - 1
    }

    /// The log file of a process this lab started.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Waits until the log of `name` contains `needle`.
    #[track_caller]
    pub fn wait_log(&self, name: &str, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log(name).contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{name} did not log {needle:?} within {timeout:?}:\n{}",
                self.log(name)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn proc_mut(&mut self, name: &str) -> Option<&mut Proc> {
        self.procs.iter_mut().find(|p| p.what == name)
    }

    /// Stops every process (SIGTERM, so each service flushes its spans, newest first) and
    /// returns every span the collector received.
    pub fn stop_all_and_collect_spans(&mut self) -> Vec<otlp::Span> {
        while let Some(mut p) = self.procs.pop() {
            p.stop(Duration::from_secs(5));
        }
        self.collector
            .as_ref()
            .map(|c| c.spans())
            .unwrap_or_default()
    }

    /// Stops a service this lab started (SIGTERM, then SIGKILL).
    pub fn stop(&mut self, name: &str) {
        if let Some(p) = self.proc_mut(name) {
            p.stop(Duration::from_secs(3));
        }
    }

    #[track_caller]
    fn assert_running(&mut self, name: &str) {
        let exited = self.proc_mut(name).and_then(|p| p.exited());
        if let Some(st) = exited {
            panic!("{name} exited ({st}):\n{}", self.log(name));
        }
    }

    /// Waits until `GET path` on `addr` inside the namespace answers 200.
    #[track_caller]
    pub fn wait_http_ready(
        &mut self,
        name: &str,
        addr: SocketAddrV4,
        path: &str,
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if let (200, _) = self.http_get(addr, path) {
                return;
            }
            self.assert_running(name);
            assert!(
                Instant::now() < deadline,
                "{name} not ready ({addr}{path} not 200) within {timeout:?}:\n{}",
                self.log(name)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path` from where the services are (the namespace, or the host): status and
    /// body, or status 0 when nothing answered.
    pub fn http_get(&self, addr: SocketAddrV4, path: &str) -> (u16, String) {
        let got = match self.host {
            Some(_) => http_get(addr, path),
            None => self.ns.enter(|| http_get(addr, path)),
        };
        got.unwrap_or((0, String::new()))
    }

    fn start_radvd(&mut self) {
        let radvd = bins::system("/usr/sbin/radvd", "radvd");
        // radvd refuses to advertise on a host that does not forward IPv6.
        let mut sysctl = self.ns.cmd("sysctl");
        sysctl.args(["-q", "-w", "net.ipv6.conf.all.forwarding=1"]);
        let st = sysctl.status().expect("sysctl");
        assert!(st.success(), "sysctl forwarding in the namespace failed");
        let conf = self.dir.join("radvd.conf");
        // Router lifetime 0: the prefix is for iPXE's address autoconfiguration only; the
        // lab is not a default router. Unsolicited RAs every few seconds, and an answer
        // to iPXE's router solicitation at once.
        std::fs::write(
            &conf,
            format!(
                "interface {BRIDGE} {{\n  AdvSendAdvert on;\n  MinRtrAdvInterval 3;\n  MaxRtrAdvInterval 4;\n  AdvDefaultLifetime 0;\n  prefix fd91::/64 {{ AdvOnLink on; AdvAutonomous on; }};\n}};\n"
            ),
        )
        .expect("radvd.conf");
        let pid = self.dir.join("radvd.pid");
        self.spawn(
            "radvd",
            &radvd,
            &[
                "-n".into(),
                "-m".into(),
                "stderr".into(),
                "-C".into(),
                conf.display().to_string(),
                "-p".into(),
                pid.display().to_string(),
            ],
        );
    }

    fn start_registry(&mut self) {
        let api = bins::bin("hardware-api");
        self.spawn(
            "hardware-api",
            &api,
            &[
                "--listen".into(),
                REGISTRY.into(),
                "--store".into(),
                "memory".into(),
                "--tokens".into(),
                format!("read:{READ_TOKEN},write:{WRITE_TOKEN}"),
            ],
        );
        // Ready when hwctl can list.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = self.hwctl(&["list"]);
            if out.is_ok() {
                return;
            }
            self.assert_running("hardware-api");
            assert!(
                Instant::now() < deadline,
                "hardware-api not answering within 15 s: {out:?}\n{}",
                self.log("hardware-api")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `hwctl` inside the namespace with the operator token: stdout, or stderr as
    /// the error.
    pub fn hwctl(&self, args: &[&str]) -> Result<String, String> {
        let (mut cmd, token) = match &self.host {
            Some(h) => (Command::new(bins::bin("hwctl")), h.registry_token.as_str()),
            None => (self.ns.cmd(bins::bin("hwctl")), WRITE_TOKEN),
        };
        cmd.args([
            "--registry",
            &format!("http://{REGISTRY}"),
            "--registry-token",
            token,
        ])
        .args(args);
        let out = cmd.output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Registers (or updates) a machine with the real `hwctl apply`.
    #[track_caller]
    pub fn register(&self, m: &Machine) {
        let file = self.dir.join(format!("{}.yaml", m.name));
        std::fs::write(&file, m.yaml()).expect("write hardware yaml");
        let out = self.hwctl(&["apply", "-f", &file.display().to_string()]);
        assert!(out.is_ok(), "hwctl apply failed: {out:?}");
    }

    /// Builds the kernel + initramfs assets; returns the assets directory.
    pub fn prepare_assets(&self) -> PathBuf {
        let assets = self.dir.join("assets");
        std::fs::create_dir_all(&assets).expect("assets dir");
        let kernel = initramfs::kernel();
        std::fs::copy(&kernel.vmlinuz, assets.join(KERNEL_ASSET)).expect("copy kernel");
        initramfs::build(&kernel, &assets.join(INITRD_ASSET));
        assets
    }

    fn registry_args() -> Vec<String> {
        vec![
            "--registry".into(),
            format!("http://{REGISTRY}"),
            "--registry-token".into(),
            READ_TOKEN.into(),
        ]
    }

    /// syslog-svc on the bridge address, UDP 514, query API on the namespace loopback.
    pub fn start_syslog(&mut self) {
        let bin = bins::bin("syslog-svc");
        let mut args = vec![
            "--udp-listen".into(),
            format!("{SERVER_IP}:514"),
            "--tcp-listen".into(),
            format!("{SERVER_IP}:514"),
            "--http-listen".into(),
            SYSLOG_API.to_string(),
            "--output".into(),
            self.dir.join("syslog.jsonl").display().to_string(),
        ];
        args.extend(Self::registry_args());
        self.spawn("syslog-svc", &bin, &args);
        self.wait_http_ready(
            "syslog-svc",
            SYSLOG_API,
            "/healthz",
            Duration::from_secs(15),
        );
    }

    /// tftp-svc serving Debian's iPXE binaries.
    pub fn start_tftp(&mut self) {
        let bin = bins::bin("tftp-svc");
        bins::system("/usr/lib/ipxe/ipxe.efi", "ipxe");
        let mut args = vec![
            "--listen".into(),
            format!("{SERVER_IP}:69"),
            "--ipxe-dir".into(),
            "/usr/lib/ipxe".into(),
            "--admin-listen".into(),
            TFTP_ADMIN.to_string(),
        ];
        args.extend(Self::registry_args());
        self.spawn("tftp-svc", &bin, &args);
        self.wait_http_ready("tftp-svc", TFTP_ADMIN, "/healthz", Duration::from_secs(15));
    }

    /// ipxe-http-svc: scripts, and our kernel + initramfs as `/assets/`.
    pub fn start_http(&mut self, assets: &Path) {
        let bin = bins::bin("ipxe-http-svc");
        let mut args = vec![
            "--listen".into(),
            format!("{SERVER_IP}:{HTTP_PORT}"),
            "--assets-dir".into(),
            assets.display().to_string(),
            "--osie-url".into(),
            format!("http://{SERVER_IP}:{HTTP_PORT}/assets"),
            "--syslog-host".into(),
            SERVER_IP.to_string(),
        ];
        args.extend(Self::registry_args());
        self.spawn("ipxe-http-svc", &bin, &args);
        self.wait_http_ready(
            "ipxe-http-svc",
            HTTP_ADMIN,
            "/healthz",
            Duration::from_secs(15),
        );
    }

    /// dhcp-svc on the bridge; `extra` e.g. `["--mode", "proxy"]`.
    pub fn start_dhcp_svc(&mut self, extra: &[&str]) {
        let bin = bins::bin("dhcp-svc");
        let mut args: Vec<String> = vec![
            "--interface".into(),
            BRIDGE.into(),
            "--http-server".into(),
            format!("{SERVER_IP}:{HTTP_PORT}"),
            "--syslog-server".into(),
            SERVER_IP.to_string(),
            "--admin-listen".into(),
            DHCP_ADMIN.to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(Self::registry_args());
        self.spawn("dhcp-svc", &bin, &args);
        self.wait_http_ready("dhcp-svc", DHCP_ADMIN, "/healthz", Duration::from_secs(15));
    }

    /// Another host on the boot LAN: a namespace whose `lan0` (address `addr`, e.g.
    /// `10.91.0.2/24`) is linked to the bridge. Returns its index for [`Lab::peer`].
    pub fn add_peer(&mut self, tag: &str, addr: &str) -> usize {
        let peer = Netns::new(format!("ibe-{tag}-{}", unique_tag()));
        let n = self.peers.len();
        let (inside, outside) = ("lan0".to_string(), format!("vp{n}"));
        self.ns.ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ]);
        self.ns.ip(&["link", "set", &inside, "netns", &peer.name]);
        self.ns.ip(&["link", "set", &outside, "master", BRIDGE]);
        self.ns.ip(&["link", "set", &outside, "up"]);
        peer.ip(&["addr", "add", addr, "dev", &inside]);
        peer.ip(&["link", "set", &inside, "up"]);
        self.peers.push(peer);
        n
    }

    pub fn peer(&self, n: usize) -> &Netns {
        &self.peers[n]
    }

    /// A third-party DHCP server (dnsmasq, Kea, ISC dhcpd) started by the caller's
    /// command; waits `settle` for it to open its sockets.
    pub fn start_other(&mut self, name: &str, cmd: Command, settle: Duration) {
        self.spawn_cmd(name, cmd);
        std::thread::sleep(settle);
        self.assert_running(name);
    }

    pub fn metrics(&self, admin: SocketAddrV4) -> String {
        self.http_get(admin, "/metrics").1
    }

    /// Sum over the series of `name` whose labels include all of `labels`.
    pub fn metric(&self, admin: SocketAddrV4, name: &str, labels: &[(&str, &str)]) -> f64 {
        Scrape::parse(&self.metrics(admin)).sum(name, labels)
    }

    /// syslog-svc's record of one machine: `GET /machines/<mac>/logs`.
    pub fn syslog_logs(&self, mac: &str) -> serde_json::Value {
        let (status, body) = self.http_get(SYSLOG_API, &format!("/machines/{mac}/logs?limit=1000"));
        serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!("syslog-svc /machines/{mac}/logs answered {status} {body:?}: {e}")
        })
    }

    /// Starts the machine's VM on the lab's tap.
    pub fn boot(&mut self, firmware: Firmware, m: &Machine) -> Vm {
        Vm::start(
            &self.ns,
            &VmSpec {
                firmware,
                mac: &m.mac,
                tap: TAP,
                dir: &self.dir,
                name: &m.name,
            },
        )
    }

    /// Every process log, for a failure report.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        let mut entries: Vec<_> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.extension().is_some_and(|e| e == "log" || e == "jsonl") {
                let text = std::fs::read(&p)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(80)..];
                out.push_str(&format!(
                    "===== {} ({} lines, last {}) =====\n{}\n",
                    p.display(),
                    lines.len(),
                    tail.len(),
                    tail.join("\n")
                ));
            }
        }
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Processes first (reverse start order: the VM and DHCP before the registry), then
        // the namespace (a field, dropped after this).
        while let Some(mut p) = self.procs.pop() {
            p.stop(Duration::from_secs(2));
        }
        if std::thread::panicking() {
            eprintln!("lab {} failed; logs follow\n{}", self.tag, self.dump());
            if let Some(tmp) = self.tmp.take() {
                let kept = tmp.keep();
                eprintln!("lab directory kept: {}", kept.display());
            }
        } else if std::env::var_os("IRONBOOT_E2E_KEEP").is_some()
            && let Some(tmp) = self.tmp.take()
        {
            eprintln!("lab directory kept: {}", tmp.keep().display());
        }
    }
}
