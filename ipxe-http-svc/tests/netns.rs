//! `/auto.ipxe` by source address with no proxy in between: the client must really come
//! from the machine's reserved address, which loopback (127/8) cannot be — the registry
//! refuses loopback reservations. So the service listens inside a network namespace this
//! test creates, on 10.77.0.1, and `curl --interface` connects from the machines'
//! addresses (10.42.0.x) added to that namespace's loopback. Needs root (CI runs tests as
//! root); nothing touches the host's own interfaces.

mod common;

use common::*;
use ironboot_testkit::{Netns, require_root, unique_tag};

/// A namespace with the service's address (10.77.0.1) and three machines' addresses
/// on its loopback.
fn lab_netns() -> Netns {
    require_root();
    let ns = Netns::new(format!("ihs{}", unique_tag()));
    for a in [
        "10.77.0.1/32",
        "10.42.0.10/32",
        "10.42.0.11/32",
        "10.42.0.99/32",
    ] {
        ns.ip(&["addr", "add", a, "dev", "lo"]);
    }
    ns
}

/// A listening socket created inside the namespace (it stays in it).
fn listen(ns: &Netns, addr: &str) -> std::net::TcpListener {
    ns.enter(|| {
        let l = std::net::TcpListener::bind(addr).expect("bind in netns");
        l.set_nonblocking(true).expect("nonblocking");
        l
    })
}

/// curl inside the namespace from the source address `from`: status and body.
fn curl(ns: &Netns, from: &str, url: &str, extra: &[&str]) -> (u16, String) {
    let out = ns
        .cmd("curl")
        .args(["-sS", "--max-time", "10", "--interface", from])
        .args(extra)
        .args(["-w", "\n%{http_code}", url])
        .output()
        .expect("curl (Debian package curl) is needed for this test");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status"), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_ipxe_by_source_address_without_a_proxy() {
    let ns = lab_netns();
    let listener =
        tokio::net::TcpListener::from_std(listen(&ns, "10.77.0.1:0")).expect("tokio listener");
    let port = listener.local_addr().unwrap().port();
    let reg = registry_with_machines().await;
    let (e, t) = (reg.endpoint.clone(), reg.read_token.clone());
    let _svc = start_on(listener, Some(reg), &e, &t, &[], true).await;
    let url = format!("http://10.77.0.1:{port}/auto.ipxe");
    let ns_ref = &ns;
    let fetch = |from: &'static str| {
        let url = url.clone();
        async move { tokio::task::block_in_place(|| curl(ns_ref, from, &url, &[])) }
    };

    let (code, body) = fetch("10.42.0.10").await;
    assert_eq!(code, 200, "{body}");
    assert_script(&body);
    assert!(body.contains("worker_id=52:54:00:ee:0d:0b"), "{body}");
    assert!(
        body.contains(&format!(
            "kernel http://10.77.0.1:{port}/assets/vmlinuz-x86_64 "
        )),
        "{body}"
    );

    let (code, body) = fetch("10.42.0.11").await;
    assert_eq!(code, 404);
    assert!(body.contains("not allowed for refused"), "{body}");

    let (code, body) = fetch("10.42.0.99").await;
    assert_eq!(code, 404);
    assert!(
        body.contains("no machine with address 10.42.0.99"),
        "{body}"
    );

    // A forged X-Forwarded-For from an untrusted client changes nothing.
    let (_, body) = tokio::task::block_in_place(|| {
        curl(
            &ns,
            "10.42.0.99",
            &url,
            &["-H", "X-Forwarded-For: 10.42.0.10"],
        )
    });
    assert!(
        body.contains("no machine with address 10.42.0.99"),
        "{body}"
    );

    // Binaries gate on the source address as well.
    let (code, _) = fetch_binary(&ns, "10.42.0.11", port);
    assert_eq!(code, 403);
    let (code, _) = fetch_binary(&ns, "10.42.0.10", port);
    assert_eq!(code, 200);
}

fn fetch_binary(ns: &Netns, from: &str, port: u16) -> (u16, String) {
    tokio::task::block_in_place(|| {
        curl(
            ns,
            from,
            &format!("http://10.77.0.1:{port}/ipxe/undionly.kpxe"),
            &[],
        )
    })
}
