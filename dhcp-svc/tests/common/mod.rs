//! A small network lab per test: namespaces, veth pairs and a bridge this test creates
//! (10.x addresses inside them only), the real `dhcp-svc` binary inside, a real
//! registry reachable over a veth link, and cleanup by PID and by name on drop — also
//! when the test fails.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hardware_api::testing::TestRegistry;

#[allow(unused_imports)] // each test binary uses its own share
pub use ironboot_testkit::{Netns, Proc, http_get, require_root, sh};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The namespace `ib-<tag>-<id>` (the lab's id keeps concurrent labs apart).
pub fn netns(tag: &str, id: u32) -> Netns {
    Netns::new(format!("ib-{tag}-{id}"))
}

/// A unique small number per lab in this machine (pid and a counter).
fn unique() -> u32 {
    (std::process::id() % 1000) * 16 + NEXT.fetch_add(1, Ordering::Relaxed) % 16
}

/// host ⇄ (registry link) ⇄ srv ⇄ (bridge br0 10.77.0.1/24) ⇄ cli [⇄ extra hosts]
pub struct Lab {
    pub id: u32,
    pub srv: Netns,
    pub cli: Netns,
    pub registry: TestRegistry,
    pub host_if: String,
    pub link_host: Ipv4Addr,
    pub link_srv: Ipv4Addr,
    pub client_if: String,
    pub client_mac: String,
    pub dhcp: Option<Proc>,
    pub tmp: tempfile::TempDir,
}

pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

impl Lab {
    pub async fn new() -> Lab {
        require_root();
        let id = unique();
        let srv = netns("s", id);
        let cli = netns("c", id);
        // Registry link: a /30 in 10.250.0.0/16 chosen by id.
        let base = u32::from(Ipv4Addr::new(10, 250, 0, 0)) + (id % 16000) * 4;
        let link_host = Ipv4Addr::from(base + 1);
        let link_srv = Ipv4Addr::from(base + 2);
        let host_if = format!("ibh{id}");
        let srv_link_if = format!("ibr{id}");
        sh(&[
            "ip",
            "link",
            "add",
            &host_if,
            "type",
            "veth",
            "peer",
            "name",
            &srv_link_if,
        ]);
        sh(&["ip", "link", "set", &srv_link_if, "netns", &srv.name]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{link_host}/30"),
            "dev",
            &host_if,
        ]);
        sh(&["ip", "link", "set", &host_if, "up"]);
        srv.ip(&[
            "addr",
            "add",
            &format!("{link_srv}/30"),
            "dev",
            &srv_link_if,
        ]);
        srv.ip(&["link", "set", &srv_link_if, "up"]);
        // The boot LAN: a bridge in srv with the client attached.
        srv.ip(&["link", "add", "br0", "type", "bridge"]);
        srv.ip(&["addr", "add", &format!("{SERVER_IP}/24"), "dev", "br0"]);
        srv.ip(&["link", "set", "br0", "up"]);
        let client_if = format!("ibc{id}");
        let client_mac = format!(
            "52:54:00:{:02x}:{:02x}:{:02x}",
            (id >> 8) & 0xff,
            id & 0xff,
            0x0b
        );
        let lab_tmp = tempfile::tempdir().expect("tmp");
        let registry = TestRegistry::start_on(&format!("{link_host}:0")).await;
        let lab = Lab {
            id,
            srv,
            cli,
            registry,
            host_if,
            link_host,
            link_srv,
            client_if: client_if.clone(),
            client_mac: client_mac.clone(),
            dhcp: None,
            tmp: lab_tmp,
        };
        lab.attach(&lab.cli, &client_if, Some(&client_mac), None);
        lab
    }

    /// Connects namespace `ns` to the bridge with interface `ifname` (optionally with a
    /// MAC and an address).
    pub fn attach(&self, ns: &Netns, ifname: &str, mac: Option<&str>, addr: Option<&str>) {
        let peer = format!("{ifname}p");
        self.srv
            .ip(&["link", "add", ifname, "type", "veth", "peer", "name", &peer]);
        self.srv.ip(&["link", "set", ifname, "netns", &ns.name]);
        self.srv.ip(&["link", "set", &peer, "master", "br0"]);
        self.srv.ip(&["link", "set", &peer, "up"]);
        if let Some(m) = mac {
            ns.ip(&["link", "set", ifname, "address", m]);
        }
        if let Some(a) = addr {
            ns.ip(&["addr", "add", a, "dev", ifname]);
        }
        ns.ip(&["link", "set", ifname, "up"]);
    }

    pub fn admin(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.link_srv, 9067)
    }

    /// Starts the real dhcp-svc binary in the server namespace and waits until its
    /// cache has synced.
    pub fn start_dhcp(&mut self, extra: &[&str]) {
        let mut cmd = self.srv.cmd(env!("CARGO_BIN_EXE_dhcp-svc"));
        cmd.args([
            "--registry",
            &self.registry.endpoint,
            "--registry-token",
            &self.registry.read_token,
        ])
        .args([
            "--admin-listen",
            &self.admin().to_string(),
            "--log-format",
            "json",
            "--log",
            "debug,h2=info,tower=info,hyper=info",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(self.tmp.path().join("dhcp-svc.log")).unwrap(),
        ));
        self.dhcp = Some(Proc::spawn(cmd, "dhcp-svc"));
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if http_get(self.admin(), "/healthz")
                .map(|(s, _)| s == 200)
                .unwrap_or(false)
            {
                return;
            }
            if let Some(Ok(Some(st))) = self.dhcp.as_mut().map(|p| p.child.try_wait()) {
                panic!("dhcp-svc exited with {st}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("dhcp-svc did not become ready: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("dhcp-svc.log")).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        http_get(self.admin(), "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// Runs busybox udhcpc once in the client namespace; returns the variables its
    /// script saw on "bound", or None when it got no lease.
    pub fn udhcpc(&self, extra: &[&str]) -> Option<Vec<(String, String)>> {
        let out = self.tmp.path().join(format!(
            "udhcpc-{}.env",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let script = self.tmp.path().join("udhcpc.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n[ \"$1\" = bound ] && env > {}\nexit 0\n",
                out.display()
            ),
        )
        .unwrap();
        sh(&["chmod", "+x", &script.display().to_string()]);
        let status = self
            .cli
            .cmd("busybox")
            .args([
                "udhcpc",
                "-i",
                &self.client_if,
                "-f",
                "-q",
                "-n",
                "-t",
                "3",
                "-T",
                "1",
                "-A",
                "1",
                "-s",
            ])
            .arg(&script)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("busybox udhcpc");
        if !status.success() {
            return None;
        }
        let text = std::fs::read_to_string(&out).ok()?;
        Some(
            text.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.dhcp.take();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
    }
}

pub fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
    env.iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
}
