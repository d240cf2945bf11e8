//! `/auto.ipxe` by source address with no proxy in between: the client must really come
//! from the machine's reserved address, which loopback (127/8) cannot be — the registry
//! refuses loopback reservations. So the service listens inside a network namespace this
//! test creates, on 10.77.0.1, and `curl --interface` connects from the machines'
//! addresses (10.42.0.x) added to that namespace's loopback. Needs root (CI runs tests as
//! root); nothing touches the host's own interfaces.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use common::*;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace, deleted on drop (also when the test fails).
struct Netns {
    name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("`ip` (Debian package iproute2) is needed for this test");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Netns {
    fn new() -> Netns {
        assert!(
            // SAFETY: geteuid has no preconditions.
            unsafe { nix::libc::geteuid() } == 0,
            "this test creates a network namespace and needs root (run the suite as root, as CI does)"
        );
        let name = format!("ihs{}n{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        for a in ["10.77.0.1/32", "10.42.0.10/32", "10.42.0.11/32", "10.42.0.99/32"] {
            ip(&["-n", &ns.name, "addr", "add", a, "dev", "lo"]);
        }
        ns
    }

    /// A listening socket created inside the namespace (a thread enters it; the socket
    /// stays in it).
    fn listen(&self, addr: &str) -> std::net::TcpListener {
        let path = format!("/run/netns/{}", self.name);
        let addr = addr.to_string();
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).expect("netns file");
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let l = std::net::TcpListener::bind(&addr).expect("bind in netns");
            l.set_nonblocking(true).expect("nonblocking");
            l
        })
        .join()
        .expect("netns thread")
    }

    fn curl(&self, from: &str, url: &str) -> (u16, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "curl", "-sS", "--max-time", "10", "--interface", from])
            .args(["-w", "\n%{http_code}", url])
            .output()
            .expect("curl (Debian package curl) is needed for this test");
        assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').expect("status line");
        (code.trim().parse().expect("status"), body.to_string())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_ipxe_by_source_address_without_a_proxy() {
    let ns = Netns::new();
    let listener = tokio::net::TcpListener::from_std(ns.listen("10.77.0.1:0")).expect("tokio listener");
    let port = listener.local_addr().unwrap().port();
    let reg = registry_with_machines().await;
    let (e, t) = (reg.endpoint.clone(), reg.read_token.clone());
    let _svc = start_on(listener, Some(reg), &e, &t, &[], true).await;
    let url = format!("http://10.77.0.1:{port}/auto.ipxe");
    let ns_ref = &ns;
    let fetch = |from: &'static str| {
        let url = url.clone();
        async move { tokio::task::block_in_place(|| ns_ref.curl(from, &url)) }
    };

    let (code, body) = fetch("10.42.0.10").await;
    assert_eq!(code, 200, "{body}");
    assert_script(&body);
    assert!(body.contains("worker_id=52:54:00:ee:0d:0b"), "{body}");
    assert!(body.contains(&format!("kernel http://10.77.0.1:{port}/assets/vmlinuz-x86_64 ")), "{body}");

    let (code, body) = fetch("10.42.0.11").await;
    assert_eq!(code, 404);
    assert!(body.contains("not allowed for refused"), "{body}");

    let (code, body) = fetch("10.42.0.99").await;
    assert_eq!(code, 404);
    assert!(body.contains("no machine with address 10.42.0.99"), "{body}");

    // A forged X-Forwarded-For from an untrusted client changes nothing.
    let out = tokio::task::block_in_place(|| {
        Command::new("ip")
            .args(["netns", "exec", &ns.name, "curl", "-sS", "--max-time", "10", "--interface", "10.42.0.99"])
            .args(["-H", "X-Forwarded-For: 10.42.0.10", &url])
            .output()
            .expect("curl")
    });
    assert!(String::from_utf8_lossy(&out.stdout).contains("no machine with address 10.42.0.99"));

    // Binaries gate on the source address as well.
    let (code, _) = fetch_binary(&ns, "10.42.0.11", port);
    assert_eq!(code, 403);
    let (code, _) = fetch_binary(&ns, "10.42.0.10", port);
    assert_eq!(code, 200);
}

fn fetch_binary(ns: &Netns, from: &str, port: u16) -> (u16, String) {
    tokio::task::block_in_place(|| ns.curl(from, &format!("http://10.77.0.1:{port}/ipxe/undionly.kpxe")))
}
