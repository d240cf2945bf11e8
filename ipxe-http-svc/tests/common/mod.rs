//! Shared test plumbing: the real service on a loopback port, fed by an in-process
//! registry, and a raw HTTP/1.1 client that sends paths exactly as written (curl and
//! friends normalise `..`, which is what the traversal tests must not let happen).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bootfiles::Catalogue;
use clap::Parser;
use hardware_api::testing::TestRegistry;
use ipxe_http_svc::{Config, Service, Templates};
use ironboot_proto::cache::{CacheConfig, HardwareCache};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;

/// The machines most tests use.
pub const MACHINES: &str = r##"
apiVersion: ironboot/v1
kind: Hardware
name: machine1
facility: lab1
interfaces:
  - mac: 52:54:00:ee:0d:0b
    dhcp: {ip: 10.42.0.10, netmask: 255.255.255.0, gateway: 10.42.0.1, arch: x86_64, vlan_id: 42}
    netboot: {allow_pxe: true}
---
apiVersion: ironboot/v1
kind: Hardware
name: refused
interfaces:
  - mac: 52:54:00:ee:0d:0c
    dhcp: {ip: 10.42.0.11, netmask: 255.255.255.0, gateway: 10.42.0.1}
    netboot: {allow_pxe: false}
---
apiVersion: ironboot/v1
kind: Hardware
name: switched-off
disabled: true
interfaces:
  - mac: 52:54:00:ee:0d:0d
    dhcp: {ip: 10.42.0.12, netmask: 255.255.255.0, gateway: 10.42.0.1}
---
apiVersion: ironboot/v1
kind: Hardware
name: chainer
interfaces:
  - mac: 52:54:00:ee:0d:0e
    dhcp: {ip: 10.42.0.13, netmask: 255.255.255.0, gateway: 10.42.0.1}
    netboot: {ipxe: {url: "http://scripts.example/custom.ipxe"}}
---
apiVersion: ironboot/v1
kind: Hardware
name: contents
interfaces:
  - mac: 52:54:00:ee:0d:0f
    netboot:
      ipxe: {contents: "#!ipxe\necho custom contents\nshell\n"}
---
apiVersion: ironboot/v1
kind: Hardware
name: arm
interfaces:
  - mac: 52:54:00:ee:0e:01
    dhcp: {arch: arm64}
    netboot:
      osie: {base_url: "http://osie.example/hook", kernel_params: "tink_worker_image=quay.io/tinkerbell/tink-worker:v0.10"}
"##;

pub const MAC: &str = "52:54:00:ee:0d:0b";

/// A running service with its registry and directories.
pub struct Running {
    pub addr: SocketAddr,
    pub registry: Option<TestRegistry>,
    pub cache: HardwareCache,
    pub ipxe_dir: tempfile::TempDir,
    pub assets_dir: tempfile::TempDir,
    pub outside_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.cache.stop();
    }
}

/// Binary contents: distinct bytes so ranges are checkable.
pub fn binary_bytes() -> Vec<u8> {
    (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

pub async fn registry_with_machines() -> TestRegistry {
    let reg = TestRegistry::start().await;
    reg.put_yaml(MACHINES).await;
    reg
}

/// Starts the service on 127.0.0.1 with fake binaries and assets; `args` are extra flags.
pub async fn start(args: &[&str]) -> Running {
    let reg = registry_with_machines().await;
    let endpoint = reg.endpoint.clone();
    let token = reg.read_token.clone();
    start_with(Some(reg), &endpoint, &token, args, true).await
}

pub async fn start_with(
    registry: Option<TestRegistry>,
    endpoint: &str,
    token: &str,
    args: &[&str],
    wait_sync: bool,
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    start_on(listener, registry, endpoint, token, args, wait_sync).await
}

pub async fn start_on(
    listener: TcpListener,
    registry: Option<TestRegistry>,
    endpoint: &str,
    token: &str,
    args: &[&str],
    wait_sync: bool,
) -> Running {
    let ipxe_dir = tempfile::tempdir().expect("tempdir");
    let assets_dir = tempfile::tempdir().expect("tempdir");
    let outside_dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(ipxe_dir.path().join("ipxe.efi"), binary_bytes()).expect("write");
    std::fs::write(ipxe_dir.path().join("undionly.kpxe"), b"UNDI").expect("write");
    std::fs::write(assets_dir.path().join("vmlinuz-x86_64"), binary_bytes()).expect("write");
    std::fs::write(assets_dir.path().join("initramfs-x86_64"), b"initrd").expect("write");
    std::fs::create_dir(assets_dir.path().join("sub")).expect("mkdir");
    std::fs::write(assets_dir.path().join("sub/file.txt"), b"nested").expect("write");
    std::fs::write(outside_dir.path().join("secret"), b"SECRET").expect("write");
    std::os::unix::fs::symlink(
        outside_dir.path().join("secret"),
        assets_dir.path().join("leak"),
    )
    .expect("symlink");
    std::os::unix::fs::symlink(
        outside_dir.path().join("secret"),
        ipxe_dir.path().join("leak.efi"),
    )
    .expect("symlink");

    let mut argv: Vec<String> = vec![
        "ipxe-http-svc".into(),
        "--ipxe-dir".into(),
        ipxe_dir.path().display().to_string(),
        "--assets-dir".into(),
        assets_dir.path().display().to_string(),
        "--link-roots".into(),
        String::new(),
        "--registry".into(),
        endpoint.into(),
        "--registry-token".into(),
        token.into(),
        "--lookup-timeout".into(),
        "300ms".into(),
        "--shutdown-grace".into(),
        "1s".into(),
    ];
    // A flag given by the test replaces the default above.
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        if let Some(i) = argv.iter().position(|a| a == flag)
            && i + 1 < argv.len()
            && !argv[i + 1].starts_with("--")
        {
            argv.drain(i..=i + 1);
        }
    }
    // Test-only switch: no assets directory at all.
    if args.contains(&"--no-assets")
        && let Some(i) = argv.iter().position(|a| a == "--assets-dir")
    {
        argv.drain(i..=i + 1);
    }
    argv.extend(
        args.iter()
            .filter(|a| **a != "--no-assets")
            .map(|s| s.to_string()),
    );
    let config = Config::try_parse_from(&argv).expect("flags");
    let settings = config.settings().expect("settings");
    let templates = Templates::load(settings.templates_dir.as_deref()).expect("templates");
    let catalogue = Catalogue::load(config.catalogue_config());
    let cache = HardwareCache::start(
        config.registry.connect_lazy().expect("client"),
        CacheConfig::default(),
    );
    if wait_sync {
        tokio::time::timeout(Duration::from_secs(10), cache.wait_synced())
            .await
            .expect("cache sync");
    }
    let assets = settings
        .assets_dir
        .as_ref()
        .map(|d| ipxe_http_svc::assets::AssetRoot::new(d, &settings.link_roots).expect("assets"));
    let scripts = ipxe_http_svc::script_cache::ScriptCache::new(settings.script_cache_entries);
    let zero_copy = Arc::new(ipxe_http_svc::zero_copy::ZeroCopy::new(
        settings.zero_copy_max_bytes,
        settings.zero_copy_dir.clone(),
    ));
    let svc = Arc::new(Service {
        settings,
        catalogue,
        cache: cache.clone(),
        templates,
        assets,
        scripts,
        zero_copy,
    });
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let stop = async move {
            let _ = rx.await;
        };
        if let Err(e) = ipxe_http_svc::serve(listener, svc, stop).await {
            eprintln!("service failed: {e}");
        }
    });
    Running {
        addr,
        registry,
        cache,
        ipxe_dir,
        assets_dir,
        outside_dir,
        stop: Some(tx),
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Sends one request (exactly these bytes of path) and reads the whole response.
pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    request_from(None, addr, method, path, headers).await
}

/// As [`request`], from a given local address (loopback has all of 127/8).
pub async fn request_from(
    from: Option<SocketAddr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Resp {
    let sock = TcpSocket::new_v4().expect("socket");
    if let Some(f) = from {
        sock.bind(f).expect("bind client");
    }
    let mut s = tokio::time::timeout(Duration::from_secs(5), sock.connect(addr))
        .await
        .expect("connect timeout")
        .expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response timeout")
        .expect("read");
    parse(&buf, method == "HEAD")
}

fn parse(buf: &[u8], head: bool) -> Resp {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head_text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut headers = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut body = buf[end + 4..].to_vec();
    if head {
        assert!(body.is_empty(), "HEAD response carried a body");
    } else if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        assert_eq!(body.len(), n, "body length matches Content-Length");
        body.truncate(n);
    }
    Resp {
        status,
        headers,
        body,
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[]).await
}

/// Every rendered script: an iPXE script with every placeholder filled in.
pub fn assert_script(s: &str) {
    assert!(s.starts_with("#!ipxe\n"), "not an iPXE script:\n{s}");
    for marker in ["{{", "}}", "{%", "%}", "{#", "#}"] {
        assert!(
            !s.contains(marker),
            "unresolved template marker {marker:?}:\n{s}"
        );
    }
}

/// Path of the built service binary.
pub fn service_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ipxe-http-svc"))
}
