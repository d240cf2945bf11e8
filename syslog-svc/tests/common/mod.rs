//! Shared harness for the integration tests.
//!
//! Each test runs in its own private network namespace (unshare(CLONE_NEWNET) on the test
//! thread; the tokio runtime, the service's threads and the client processes started from
//! it all inherit it). Inside, loopback carries a few 10.77.0.x addresses, so messages can
//! come from distinct source addresses that the registry accepts (it refuses 127/8 as a
//! machine address). Nothing touches the host's network, and there is nothing to clean
//! up: the namespace goes away with the test's thread.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use hardware_api::testing::TestRegistry;
use ironboot_proto::cache::{CacheConfig, HardwareCache};
use syslog_svc::{Config, Running};

#[allow(unused_imports)] // each test binary uses its own share
pub use ironboot_testkit::{Proc, ip, need};

/// Enters a fresh network namespace with loopback up and `addrs` on it.
pub fn private_network(addrs: &[&str]) {
    // SAFETY: unshare only changes this thread's namespace membership.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET) failed ({}): these tests need root (CAP_SYS_ADMIN)",
        std::io::Error::last_os_error()
    );
    ip(&["link", "set", "lo", "up"]);
    for a in addrs {
        ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"]);
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

pub struct Svc {
    pub running: Option<Running>,
    pub cache: HardwareCache,
    pub dir: tempfile::TempDir,
    pub out: PathBuf,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub http: SocketAddr,
}

impl Svc {
    pub async fn start(reg: &TestRegistry, extra: &[&str]) -> Svc {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("syslog.jsonl");
        Self::start_with_output(reg, extra, dir, out).await
    }

    pub async fn start_with_output(
        reg: &TestRegistry,
        extra: &[&str],
        dir: tempfile::TempDir,
        out: PathBuf,
    ) -> Svc {
        let mut args = vec![
            "syslog-svc".to_string(),
            "--udp-listen=0.0.0.0:0".into(),
            "--tcp-listen=0.0.0.0:0".into(),
            "--http-listen=127.0.0.1:0".into(),
            format!("--output={}", out.display()),
            format!("--registry={}", reg.endpoint),
            format!("--registry-token={}", reg.read_token),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let config = Config::parse_from(args);
        let cache = HardwareCache::start(
            config.registry.connect_lazy().expect("client"),
            CacheConfig::default(),
        );
        tokio::time::timeout(Duration::from_secs(10), cache.wait_synced())
            .await
            .expect("cache synced");
        let running = syslog_svc::start(&config, cache.clone())
            .await
            .expect("service starts");
        let (udp, tcp, http) = (
            running.udp_addr.expect("udp"),
            running.tcp_addr.expect("tcp"),
            running.http_addr.expect("http"),
        );
        Svc {
            running: Some(running),
            cache,
            dir,
            out,
            udp,
            tcp,
            http,
        }
    }

    pub fn stats(&self) -> &syslog_svc::Stats {
        &self.running.as_ref().expect("running").stats
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        self.cache.stop();
    }
}

/// Polls the output until it holds `n` lines (or the deadline passes) and returns them.
pub async fn wait_lines(path: &Path, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines
                .iter()
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}"))
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A minimal HTTP/1.1 GET: status and body (on a blocking thread, which is in this
/// test's namespace like every thread the runtime starts).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || ironboot_testkit::http_get(addr, &path))
        .await
        .expect("http thread")
        .unwrap_or_else(|e| panic!("GET {addr}: {e}"))
}

/// A machine in ironboot's YAML form with one interface.
pub fn machine_yaml(name: &str, mac: &str, ip: &str) -> String {
    format!(
        "apiVersion: ironboot/v1\nkind: Hardware\nname: {name}\ninterfaces:\n  - mac: {mac}\n    dhcp:\n      ip: {ip}\n      netmask: 255.255.255.0\n      gateway: 10.77.0.254\n"
    )
}
