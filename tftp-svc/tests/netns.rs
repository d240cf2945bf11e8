//! Tests in network namespaces this test creates (root needed): replies leave from the
//! address the request was sent to (per-transfer and single-port), a 10 % lossy link,
//! and gating by the client's IP address through a real registry.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SERVER_BIN: &str = env!("CARGO_BIN_EXE_tftp-svc");
const LOAD_BIN: &str = env!("CARGO_BIN_EXE_tftp-load");

/// Two namespaces joined by a veth pair: server side 10.99.0.1 (+ extra addresses),
/// client side 10.99.0.2.
struct Pair {
    server: Netns,
    client: Netns,
}

fn pair(extra_server_addrs: &[&str]) -> Pair {
    require_root();
    let t = tag();
    let server = Netns::new(format!("ibt-s{t}"));
    let client = Netns::new(format!("ibt-c{t}"));
    let (a, b) = (format!("ts{t}"), format!("tc{t}"));
    ip(&[
        "link",
        "add",
        &a,
        "netns",
        &server.name,
        "type",
        "veth",
        "peer",
        "name",
        &b,
        "netns",
        &client.name,
    ]);
    server.ip(&["addr", "add", "10.99.0.1/24", "dev", &a]);
    for x in extra_server_addrs {
        server.ip(&["addr", "add", x, "dev", &a]);
    }
    client.ip(&["addr", "add", "10.99.0.2/24", "dev", &b]);
    server.ip(&["link", "set", &a, "up"]);
    client.ip(&["link", "set", &b, "up"]);
    Pair { server, client }
}

fn start_server(ns: &Netns, args: &[&str]) -> Proc {
    let mut c = ns.cmd(SERVER_BIN);
    c.args(["--no-registry", "--admin-listen", ""])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Proc::spawn(c, "tftp-svc")
}

/// Runs tftp-load in the client namespace, retrying while the server starts.
fn load(ns: &Netns, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ns.cmd(LOAD_BIN).args(args).output().expect("tftp-load");
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() {
            return line;
        }
        if Instant::now() > deadline {
            panic!(
                "tftp-load {args:?} failed: {line} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn replies_leave_from_the_address_the_request_was_sent_to() {
    let p = pair(&["10.99.0.3/24", "10.99.0.4/24"]);
    let _per_transfer = start_server(&p.server, &["--listen", "0.0.0.0:69"]);
    let _single = start_server(&p.server, &["--listen", "0.0.0.0:6969", "--single-port"]);
    let expect = "/usr/lib/ipxe/undionly.kpxe";
    for dst in ["10.99.0.1", "10.99.0.3", "10.99.0.4"] {
        let line = load(
            &p.client,
            &[
                &format!("{dst}:69"),
                "undionly.kpxe",
                "--expect",
                expect,
                "--blksize",
                "1468",
            ],
        );
        let server = field(&line, "server");
        assert!(
            server.starts_with(&format!("{dst}:")),
            "asked {dst}, answered from {server}"
        );
        assert!(
            !server.ends_with(":69"),
            "per-transfer mode answers from a new port: {server}"
        );
        let line = load(
            &p.client,
            &[
                &format!("{dst}:6969"),
                "undionly.kpxe",
                "--expect",
                expect,
                "--windowsize",
                "4",
            ],
        );
        assert_eq!(
            field(&line, "server"),
            format!("{dst}:6969"),
            "single-port mode"
        );
    }
    // A real client on a secondary address.
    let out = p
        .client
        .cmd("curl")
        .args([
            "-sS",
            "--tftp-blksize",
            "1468",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            "tftp://10.99.0.4/undionly.kpxe",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        std::fs::metadata(expect).unwrap().len().to_string()
    );
}

#[test]
fn transfers_complete_intact_over_a_link_losing_ten_percent() {
    need("busybox");
    let p = pair(&[]);
    // Loss in both directions (DATA and ACKs): tc netem where the kernel has it, else an
    // nftables rule dropping a random 10 % of UDP arriving on each side (input hook: a
    // drop on output would surface as EPERM to the sender, which no real link does).
    let mut how = "tc netem loss 10%";
    for ns in [&p.server, &p.client] {
        let dev = dev_of(ns);
        let netem = ns
            .cmd("tc")
            .args(["qdisc", "add", "dev", &dev, "root", "netem", "loss", "10%"])
            .stderr(Stdio::null())
            .status();
        if !matches!(netem, Ok(s) if s.success()) {
            need("nft");
            how = "nft numgen random mod 10 drop (this kernel has no sch_netem)";
            let rules = "table inet ibtloss {\n chain inp {\n  type filter hook input priority 0;\n  meta l4proto udp numgen random mod 10 0 drop\n }\n}\n";
            let s = ns
                .cmd("nft")
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin.take().expect("stdin").write_all(rules.as_bytes())?;
                    c.wait()
                });
            assert!(
                matches!(s, Ok(s) if s.success()),
                "neither tc netem nor nftables can drop packets here"
            );
        }
    }
    let _srv = start_server(&p.server, &["--listen", "10.99.0.1:69"]);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut kids = Vec::new();
    let out = |n: &str| dir.path().join(n);
    kids.push((
        "curl 1468 snponly.efi",
        "snponly.efi",
        out("curl"),
        p.client
            .cmd("curl")
            .args(["-sS", "--retry", "0", "--tftp-blksize", "1468", "-o"])
            .arg(out("curl"))
            .arg("tftp://10.99.0.1/snponly.efi")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    kids.push((
        "busybox 512 undionly.kpxe",
        "undionly.kpxe",
        out("bb"),
        p.client
            .cmd("busybox")
            .args(["tftp", "-g", "-r", "undionly.kpxe", "-l"])
            .arg(out("bb"))
            .arg("10.99.0.1")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    kids.push((
        "tftp-hpa undionly.kpxe",
        "undionly.kpxe",
        out("hpa"),
        p.client
            .cmd("tftp")
            .args(["-m", "binary", "10.99.0.1", "-c", "get", "undionly.kpxe"])
            .arg(out("hpa"))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let line = load(
        &p.client,
        &[
            "10.99.0.1:69",
            "ipxe.efi",
            "--expect",
            "/usr/lib/ipxe/ipxe.efi",
            "--blksize",
            "1468",
            "--windowsize",
            "8",
            "-c",
            "4",
            "--rto",
            "300ms",
        ],
    );
    assert_eq!(field(&line, "failed"), "0");
    // The benchmark's GRO client: a window arrives (or is lost) as one GSO batch.
    let gro = load(
        &p.client,
        &[
            "10.99.0.1:69",
            "ipxe.efi",
            "--expect",
            "/usr/lib/ipxe/ipxe.efi",
            "--blksize",
            "1468",
            "--windowsize",
            "8",
            "-c",
            "2",
            "--rto",
            "300ms",
            "--gro",
        ],
    );
    assert_eq!(field(&gro, "failed"), "0");
    for (label, file, path, child) in kids {
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            std::fs::read(&path).unwrap()
                == std::fs::read(format!("/usr/lib/ipxe/{file}")).unwrap(),
            "{label}: corrupted"
        );
    }
    eprintln!(
        "lossy link ({how}): curl, busybox, tftp-hpa, 4 × ipxe.efi windowed and 2 with GRO intact in {:?}; {}; {}",
        started.elapsed(),
        line.trim(),
        gro.trim()
    );
}

fn dev_of(ns: &Netns) -> String {
    let out = Command::new("ip")
        .args(["-n", &ns.name, "-o", "link", "show", "type", "veth"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(':')
        .nth(1)
        .map(|s| s.trim().split('@').next().unwrap_or("").to_string())
        .expect("veth in namespace")
}

/// The registry gates on the client's IP as well as the MAC in the path. The server runs
/// in this process (it needs the in-process registry on 127.0.0.1), on the host end of a
/// veth pair this test creates; the client sends from registered addresses inside its
/// own namespace (the registry refuses loopback addresses, so loopback cannot do this).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gating_by_client_ip_through_a_real_registry() {
    require_root();
    let t = tag();
    let client = Netns::new(format!("ibt-g{t}"));
    let (host_end, ns_end) = (format!("th{t}"), format!("tg{t}"));
    ip(&[
        "link",
        "add",
        &host_end,
        "type",
        "veth",
        "peer",
        "name",
        &ns_end,
        "netns",
        &client.name,
    ]);
    let _link = HostLink(host_end.clone());
    // A /30 from a block nobody routes, unique per test process.
    let n = std::process::id() % 60;
    let (host_ip, c1, c2) = (
        format!("10.213.{n}.1"),
        format!("10.213.{n}.2"),
        format!("10.213.{n}.3"),
    );
    ip(&["addr", "add", &format!("{host_ip}/29"), "dev", &host_end]);
    ip(&["link", "set", &host_end, "up"]);
    client.ip(&["addr", "add", &format!("{c1}/29"), "dev", &ns_end]);
    client.ip(&["addr", "add", &format!("{c2}/29"), "dev", &ns_end]);
    client.ip(&["link", "set", &ns_end, "up"]);

    let reg = hardware_api::testing::TestRegistry::start().await;
    reg.put_yaml(&format!(
        "apiVersion: ironboot/v1\nkind: Hardware\nname: ip-off\ninterfaces:\n  - mac: 52:54:00:bb:00:01\n    dhcp:\n      ip: {c1}\n      netmask: 255.255.255.248\n    netboot:\n      allow_pxe: false\n---\napiVersion: ironboot/v1\nkind: Hardware\nname: ip-ok\ninterfaces:\n  - mac: 52:54:00:bb:00:02\n    dhcp:\n      ip: {c2}\n      netmask: 255.255.255.248\n"
    ))
    .await;
    let cache = ironboot_proto::cache::HardwareCache::start(
        reg.read_args().connect_lazy().unwrap(),
        Default::default(),
    );
    tokio::time::timeout(Duration::from_secs(10), cache.wait_synced())
        .await
        .expect("sync");
    let listen = format!("{host_ip}:0");
    let srv = {
        use clap::Parser;
        let cfg = tftp_svc::Config::try_parse_from(["tftp-svc", "--listen", &listen]).unwrap();
        tftp_svc::Server::bind(cfg.settings().unwrap(), stock_catalogue(), Some(cache)).unwrap()
    };
    let addr = srv.local_addrs[0].to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(srv.serve(async move {
        let _ = stop_rx.await;
    }));
    let run = |from: String| {
        let out = client
            .cmd(LOAD_BIN)
            .args([
                addr.as_str(),
                "ipxe.efi",
                "--blksize",
                "1468",
                "--rto",
                "300ms",
                "--bind",
                &format!("{from}:0"),
            ])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, err) = tokio::task::block_in_place(|| run(c1.clone()));
    assert!(
        !ok && err.contains("error 2"),
        "request from {c1} (allow_pxe false) must be refused: {err}"
    );
    let (ok, err) = tokio::task::block_in_place(|| run(c2.clone()));
    assert!(ok, "request from {c2} must be served: {err}");
    let _ = stop_tx.send(());
    let _ = served.await;
}
