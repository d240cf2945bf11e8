//! Helpers shared by the integration tests: an in-process server and the stock files;
//! process and network namespace guards (cleaned up on drop, also when a test fails) come
//! from `ironboot-testkit`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bootfiles::Catalogue;
use clap::Parser;
use ironboot_proto::cache::HardwareCache;
use tftp_svc::{Config, Server};
use tokio::sync::oneshot;

pub const IPXE_DIR: &str = "/usr/lib/ipxe";

/// The stock catalogue (Debian's ipxe package, ipxe.efi linked into /boot).
pub fn stock_catalogue() -> Arc<Catalogue> {
    let p = Path::new(IPXE_DIR).join("ipxe.efi");
    assert!(
        p.exists(),
        "{} is missing: install Debian's `ipxe` package (tests/system-packages.txt)",
        p.display()
    );
    let args = Config::try_parse_from(["x"]).expect("defaults").files;
    Catalogue::load(args.catalogue_config())
}

/// A catalogue of one directory.
pub fn dir_catalogue(dir: &Path) -> Arc<Catalogue> {
    let args = Config::try_parse_from([
        "x",
        "--ipxe-dir",
        dir.to_str().expect("utf8"),
        "--link-roots",
        "",
    ])
    .expect("args")
    .files;
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
    pub fn start(
        flags: &[&str],
        catalogue: Arc<Catalogue>,
        cache: Option<HardwareCache>,
    ) -> TestServer {
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
        TestServer {
            addr,
            stop: Some(tx),
            done: Some(done),
        }
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

#[allow(unused_imports)] // each test binary uses its own share
pub use ironboot_testkit::{HostLink, Netns, Proc, ip, need, require_root, unique_tag as tag};

/// Parses `key=value` pairs of a tftp-load result line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}
