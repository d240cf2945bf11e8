//! Helpers shared by the integration tests: an in-process server, process and network
//! namespace guards that clean up on drop (also when a test fails).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bootfiles::Catalogue;
use clap::Parser;
use ironboot_proto::cache::HardwareCache;
use tftp_svc::{Config, Server};
use tokio::sync::oneshot;

pub const IPXE_DIR: &str = "/usr/lib/ipxe";

/// The stock catalogue (Debian's ipxe package, ipxe.efi linked into /boot).
pub fn stock_catalogue() -> Arc<Catalogue> {
    let p = Path::new(IPXE_DIR).join("ipxe.efi");
    assert!(p.exists(), "{} is missing: install Debian's `ipxe` package (tests/system-packages.txt)", p.display());
    let args = Config::try_parse_from(["x"]).expect("defaults").files;
    Catalogue::load(args.catalogue_config())
}

/// A catalogue of one directory.
pub fn dir_catalogue(dir: &Path) -> Arc<Catalogue> {
    let args = Config::try_parse_from(["x", "--ipxe-dir", dir.to_str().expect("utf8"), "--link-roots", ""]).expect("args").files;
    Catalogue::load(args.catalogue_config())
}

pub fn stock(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(IPXE_DIR).join(name)).expect("stock file")
}

/// A server running in this process until dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts with `tftp-svc` flags (listen defaults to 127.0.0.1:0).
    pub fn start(flags: &[&str], catalogue: Arc<Catalogue>, cache: Option<HardwareCache>) -> TestServer {
        let mut argv = vec!["tftp-svc", "--listen", "127.0.0.1:0", "--no-registry"];
        argv.extend_from_slice(flags);
        let config = Config::try_parse_from(argv).expect("flags");
        let settings = config.settings().expect("settings");
        let server = Server::bind(settings, catalogue, cache).expect("bind");
        let addr = server.local_addrs[0];
        let (tx, rx) = oneshot::channel();
        let done = tokio::spawn(server.serve(async move {
            let _ = rx.await;
        }));
        TestServer { addr, stop: Some(tx), done: Some(done) }
    }

    /// Stops and waits for in-flight transfers (graceful shutdown).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(d) = self.done.take() {
            let _ = d.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Fails loudly when a tool the test needs is missing.
pub fn need(bin: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/sbin", "/sbin"]) {
        let p = Path::new(dir).join(bin);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{bin}` is required by this test and is not installed (see tests/system-packages.txt)");
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { nix::libc::geteuid() } != 0 {
        panic!("this test creates network namespaces and needs root (CI runs tests as root)");
    }
}

/// Kills and reaps a child process on drop, by PID.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output().expect("spawn");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

pub fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique short tag per test (names of namespaces and interfaces; veth names ≤ 15 chars).
pub fn tag() -> String {
    format!("{}{}", std::process::id() % 100_000, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: String) -> Netns {
        need("ip");
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// A command run inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    pub fn ip(&self, args: &[&str]) {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        ip(&a);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).stderr(Stdio::null()).status();
    }
}

/// A host-side link (veth end) deleted on drop; deleting one end removes the pair.
pub struct HostLink(pub String);

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).stderr(Stdio::null()).status();
    }
}

/// Parses `key=value` pairs of a tftp-load result line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}
