//! The server on loopback against real clients (curl, tftp-hpa, busybox) and the
//! packet-level client: byte-identical downloads, every option, refusals, gating through
//! a real registry, the OVMF size probe, single-port mode, limits, 1,000 concurrent
//! transfers.

mod common;

use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use common::*;
use ironboot_proto::cache::{CacheConfig, HardwareCache};
use tftp_svc::client::{self, ClientError, ClientOptions};
use tftp_svc::packet;
use tokio::net::UdpSocket;
use tokio::process::Command;

fn opts(blksize: Option<u16>, windowsize: Option<u16>) -> ClientOptions {
    ClientOptions {
        blksize,
        windowsize,
        ..ClientOptions::default()
    }
}

async fn output(cmd: &mut Command) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(60), cmd.kill_on_drop(true).output())
        .await
        .expect("client timed out")
        .expect("spawn client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_download_byte_identical_files() {
    let curl = need("curl");
    let tftp = need("tftp");
    let busybox = need("busybox");
    let srv = TestServer::start(&[], stock_catalogue(), None);
    let port = srv.addr.port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let url = |f: &str| format!("tftp://127.0.0.1:{port}/{f}");

    let runs: Vec<(&str, &str, Command)> = vec![
        ("curl default", "ipxe.efi", {
            let mut c = Command::new(&curl);
            c.args(["-sS", "-o"]).arg(d("c1")).arg(url("ipxe.efi"));
            c
        }),
        ("curl blksize 1468 (tsize+timeout)", "snponly.efi", {
            let mut c = Command::new(&curl);
            c.args(["-sS", "--tftp-blksize", "1468", "-o"])
                .arg(d("c2"))
                .arg(url("snponly.efi"));
            c
        }),
        (
            "curl blksize 8: 106,316 blocks, past the 65,535 rollover",
            "ipxe.efi",
            {
                let mut c = Command::new(&curl);
                c.args(["-sS", "--tftp-blksize", "8", "-o"])
                    .arg(d("c3"))
                    .arg(url("ipxe.efi"));
                c
            },
        ),
        ("tftp-hpa binary", "undionly.kpxe", {
            let mut c = Command::new(&tftp);
            c.args([
                "-m",
                "binary",
                "127.0.0.1",
                &port,
                "-c",
                "get",
                "undionly.kpxe",
            ])
            .arg(d("h1"));
            c
        }),
        ("busybox blksize 1468", "ipxe.efi", {
            let mut c = Command::new(&busybox);
            c.args(["tftp", "-g", "-b", "1468", "-r", "ipxe.efi", "-l"])
                .arg(d("b1"))
                .args(["127.0.0.1", &port]);
            c
        }),
        ("busybox default", "undionly.kpxe", {
            let mut c = Command::new(&busybox);
            c.args(["tftp", "-g", "-r", "undionly.kpxe", "-l"])
                .arg(d("b2"))
                .args(["127.0.0.1", &port]);
            c
        }),
    ];
    let outs = ["c1", "c2", "c3", "h1", "b1", "b2"];
    let mut handles = Vec::new();
    for (label, file, mut cmd) in runs {
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let o = output(&mut cmd).await;
            (label, file, o, t.elapsed())
        }));
    }
    for (h, out) in handles.into_iter().zip(outs) {
        let (label, file, o, took) = h.await.unwrap();
        assert!(
            o.status.success(),
            "{label}: {:?} {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        let got = std::fs::read(d(out)).unwrap();
        assert!(
            got == stock(file),
            "{label}: {file} differs ({} bytes vs {})",
            got.len(),
            stock(file).len()
        );
        eprintln!("{label}: {file} {} bytes in {took:?}", got.len());
    }
}

#[tokio::test]
async fn every_option_and_combination() {
    let srv = TestServer::start(&["--max-windowsize", "16"], stock_catalogue(), None);
    let want = stock("snponly.efi");
    for blksize in [
        None,
        Some(8),
        Some(512),
        Some(1432),
        Some(1468),
        Some(9000),
        Some(65464),
    ] {
        for windowsize in [None, Some(1), Some(4), Some(8), Some(16), Some(64)] {
            for tsize in [false, true] {
                let mut o = opts(blksize, windowsize);
                o.tsize = tsize;
                o.timeout_opt = if tsize { Some(3) } else { None };
                let d = client::get(srv.addr, "snponly.efi", &o)
                    .await
                    .unwrap_or_else(|e| panic!("{blksize:?}/{windowsize:?}/{tsize}: {e}"));
                assert!(
                    d.data == want,
                    "{blksize:?}/{windowsize:?}/{tsize}: content differs"
                );
                let granted_b = blksize.map(|b| b.min(1468).to_string());
                assert_eq!(d.oack_value("blksize").map(str::to_string), granted_b);
                let granted_w = windowsize.map(|w| w.min(16).to_string());
                assert_eq!(d.oack_value("windowsize").map(str::to_string), granted_w);
                assert_eq!(d.oack_value("tsize"), tsize.then_some("173792"));
                assert_eq!(d.oack_value("timeout"), tsize.then_some("3"));
                assert_eq!(d.server.ip(), srv.addr.ip());
                assert_ne!(d.server.port(), srv.addr.port(), "per-transfer port");
            }
        }
    }
}

#[tokio::test]
async fn jumbo_blksizes_and_windows_wider_than_one_zero_copy_send() {
    // blksize 9000 × window 16 is 144 KB of packets: three sendfile batches per window
    // once the wire image exists; 65464 does not fit a batch and is always copied.
    let srv = TestServer::start(
        &["--max-blksize", "65464", "--max-windowsize", "16"],
        stock_catalogue(),
        None,
    );
    let want = stock("snponly.efi");
    for blksize in [9000u16, 65464] {
        for round in 0..20 {
            let d = client::get(srv.addr, "snponly.efi", &opts(Some(blksize), Some(16)))
                .await
                .unwrap_or_else(|e| panic!("{blksize} #{round}: {e}"));
            assert!(d.data == want, "{blksize} #{round}: content differs");
            assert_eq!(d.oack_value("blksize"), Some(blksize.to_string().as_str()));
            // Give the image's writer a moment, so later rounds send from it.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test]
async fn a_gro_client_splits_whole_windows_back_into_blocks() {
    // With UDP GRO the client's kernel hands over a window's GSO send as one buffer; the
    // client cuts it by the reported segment size. Short last blocks, an empty last
    // block and windows wider than one send must all come out whole.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("exact"), vec![7u8; 1468 * 8]).unwrap();
    let srv = TestServer::start(
        &["--max-blksize", "9000", "--max-windowsize", "16"],
        stock_catalogue(),
        None,
    );
    let exact_srv = TestServer::start(&[], dir_catalogue(dir.path()), None);
    let want = stock("snponly.efi");
    for blksize in [8u16, 512, 1468, 9000] {
        for windowsize in [1u16, 8, 16] {
            for round in 0..2 {
                let o = ClientOptions {
                    gro: true,
                    ..opts(Some(blksize), Some(windowsize))
                };
                let d = client::get(srv.addr, "snponly.efi", &o)
                    .await
                    .unwrap_or_else(|e| panic!("{blksize}/{windowsize} #{round}: {e}"));
                assert!(
                    d.data == want,
                    "{blksize}/{windowsize} #{round}: content differs"
                );
                let blocks = want.len() as u64 / blksize as u64 + 1;
                if windowsize >= 8 {
                    assert!(
                        d.receives * 2 < blocks,
                        "{blksize}/{windowsize}: {} receives for {blocks} blocks: nothing coalesced",
                        d.receives
                    );
                }
            }
        }
    }
    // 8 full blocks and then the empty ninth, the last of a window on its own.
    let o = ClientOptions {
        gro: true,
        ..opts(Some(1468), Some(4))
    };
    let d = client::get(exact_srv.addr, "exact", &o).await.unwrap();
    assert_eq!(d.data, vec![7u8; 1468 * 8]);
}

#[tokio::test]
async fn edge_sizes_and_rollover_with_windows() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty"), b"").unwrap();
    std::fs::write(dir.path().join("exact"), vec![7u8; 1468 * 3]).unwrap();
    // 1 MiB at blksize 8 is 131,073 blocks: wraps the 16-bit block number twice.
    let big: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.path().join("big"), &big).unwrap();
    let srv = TestServer::start(&[], dir_catalogue(dir.path()), None);
    assert_eq!(
        client::get(srv.addr, "empty", &opts(None, None))
            .await
            .unwrap()
            .data
            .len(),
        0
    );
    let d = client::get(srv.addr, "exact", &opts(Some(1468), Some(2)))
        .await
        .unwrap();
    assert_eq!(d.data, vec![7u8; 1468 * 3]);
    let d = client::get(srv.addr, "big", &opts(Some(8), Some(16)))
        .await
        .unwrap();
    assert!(
        d.data == big,
        "rollover with windowsize 16 corrupted the file"
    );
    let d = client::get(srv.addr, "big", &opts(Some(16), None))
        .await
        .unwrap();
    assert!(d.data == big, "rollover in lockstep corrupted the file");
}

#[tokio::test]
async fn refused_paths_modes_and_write_requests() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.efi"), b"fine").unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    symlink(outside.path().join("secret"), dir.path().join("leak")).unwrap();
    symlink("/dev/zero", dir.path().join("zero")).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(dir.path().join("fifo"))
            .status()
            .unwrap()
            .success()
    );
    let srv = TestServer::start(&[], dir_catalogue(dir.path()), None);

    for (path, code) in [
        ("../etc/passwd", 2),
        ("/etc/passwd", 2),
        ("a/../../etc/passwd", 2),
        ("52:54:00:00:00:01/../ok.efi", 2),
        ("a//ok.efi", 2),
        ("nope.efi", 1),
        ("leak", 1),
        ("zero", 1),
        ("fifo", 1),
        ("OK.EFI", 1),
    ] {
        match client::get(srv.addr, path, &opts(None, None)).await {
            Err(ClientError::Tftp { code: c, message }) => assert_eq!(c, code, "{path}: {message}"),
            other => panic!("{path}: expected TFTP error {code}, got {other:?}"),
        }
    }
    // Netascii (tftp-hpa's default mode) would corrupt binaries: refused cleanly.
    let mut o = opts(None, None);
    o.mode = "netascii".into();
    assert!(matches!(
        client::get(srv.addr, "ok.efi", &o).await,
        Err(ClientError::Tftp { code: 4, .. })
    ));
    assert_eq!(
        client::get(srv.addr, "ok.efi", &opts(None, None))
            .await
            .unwrap()
            .data,
        b"fine"
    );

    // Real clients see the refusals too.
    let port = srv.addr.port().to_string();
    let out = tempfile::tempdir().unwrap();
    let o = output(
        Command::new(need("curl"))
            .args(["-sS", "-o"])
            .arg(out.path().join("x"))
            .arg(format!("tftp://127.0.0.1:{port}/leak")),
    )
    .await;
    assert!(
        !o.status.success(),
        "curl fetched a symlink leading out of the root"
    );
    let o = output(
        Command::new(need("tftp"))
            .args(["127.0.0.1", &port, "-c", "get", "ok.efi"])
            .arg(out.path().join("n"))
            .current_dir(out.path()),
    )
    .await;
    let msg = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        msg.contains("octet"),
        "tftp-hpa netascii get should be refused, said: {msg}"
    );
    // Write requests: access violation.
    std::fs::write(out.path().join("up"), b"upload").unwrap();
    let o = output(
        Command::new(need("tftp"))
            .args(["-m", "binary", "127.0.0.1", &port, "-c", "put"])
            .arg(out.path().join("up"))
            .arg("up"),
    )
    .await;
    let msg = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        msg.contains("read-only") || msg.to_lowercase().contains("access violation"),
        "tftp-hpa put: {msg}"
    );
    let o = output(
        Command::new(need("busybox"))
            .args(["tftp", "-p", "-l"])
            .arg(out.path().join("up"))
            .args(["-r", "up", "127.0.0.1", &port]),
    )
    .await;
    assert!(!o.status.success(), "busybox put must fail");
    assert!(!dir.path().join("up").exists());
}

#[tokio::test]
async fn mac_and_traceparent_paths() {
    let srv = TestServer::start(&[], stock_catalogue(), None);
    let want = stock("undionly.kpxe");
    for p in [
        "52:54:00:ee:0d:0b/undionly.kpxe",
        "52-54-00-EE-0D-0B/undionly.kpxe",
        "525400ee0d0b/undionly.kpxe",
        "undionly.kpxe-00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "525400ee0d0b/undionly.kpxe-00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ] {
        let d = client::get(srv.addr, p, &opts(Some(1432), None))
            .await
            .unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(d.data == want, "{p}");
    }
}

const MACHINES: &str = r#"
apiVersion: ironboot/v1
kind: Hardware
name: no-pxe
interfaces:
  - mac: 52:54:00:aa:00:01
    netboot:
      allow_pxe: false
---
apiVersion: ironboot/v1
kind: Hardware
name: off
disabled: true
interfaces:
  - mac: 52:54:00:aa:00:02
---
apiVersion: ironboot/v1
kind: Hardware
name: good
interfaces:
  - mac: 52:54:00:aa:00:03
    netboot:
      allow_pxe: true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gating_by_mac_through_a_real_registry() {
    let reg = hardware_api::testing::TestRegistry::start().await;
    reg.put_yaml(MACHINES).await;
    let cache = HardwareCache::start(
        reg.read_args().connect_lazy().unwrap(),
        CacheConfig::default(),
    );
    tokio::time::timeout(Duration::from_secs(10), cache.wait_synced())
        .await
        .expect("cache sync");
    let serve = TestServer::start(&[], stock_catalogue(), Some(cache.clone()));
    let refuse = TestServer::start(
        &["--unknown-clients", "refuse"],
        stock_catalogue(),
        Some(cache.clone()),
    );
    let o = opts(Some(1468), Some(4));
    for srv in [&serve, &refuse] {
        for p in ["52:54:00:aa:00:01/ipxe.efi", "52-54-00-aa-00-02/ipxe.efi"] {
            assert!(
                matches!(
                    client::get(srv.addr, p, &o).await,
                    Err(ClientError::Tftp { code: 2, .. })
                ),
                "{p} must be refused"
            );
        }
        assert!(
            client::get(srv.addr, "525400aa0003/ipxe.efi", &o)
                .await
                .is_ok()
        );
    }
    // Unknown clients: served by default, refused by policy.
    assert!(client::get(serve.addr, "ipxe.efi", &o).await.is_ok());
    assert!(
        client::get(serve.addr, "52:54:00:99:99:99/ipxe.efi", &o)
            .await
            .is_ok()
    );
    assert!(matches!(
        client::get(refuse.addr, "ipxe.efi", &o).await,
        Err(ClientError::Tftp { code: 2, .. })
    ));

    // A registry change reaches the TFTP route through the watch.
    reg.put_yaml(&MACHINES.replace("allow_pxe: false", "allow_pxe: true"))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if client::get(serve.addr, "52:54:00:aa:00:01/ipxe.efi", &o)
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "allow_pxe change never reached the TFTP route"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn ovmf_size_probe_is_a_normal_outcome() {
    let handle = ironboot_telemetry::metrics::init_metrics();
    let srv = TestServer::start(&[], stock_catalogue(), None);
    let probe = ClientOptions {
        tsize: true,
        blksize: Some(1468),
        windowsize: Some(4),
        probe_only: true,
        ..ClientOptions::default()
    };
    let d = client::get(srv.addr, "ipxe.efi", &probe).await.unwrap();
    assert_eq!(d.oack_value("tsize"), Some("850528"));
    // The second request, as OVMF sends it, without tsize.
    let real = opts(Some(1468), Some(4));
    assert!(client::get(srv.addr, "ipxe.efi", &real).await.unwrap().data == stock("ipxe.efi"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let text = handle.render();
    assert!(
        text.contains("tftp_transfers_total{outcome=\"size_probe\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_port_mode_serves_everything_from_the_listen_port() {
    let srv = TestServer::start(&["--single-port"], stock_catalogue(), None);
    let want = stock("snponly.efi");
    let mut tasks = Vec::new();
    for i in 0..20u16 {
        let addr = srv.addr;
        tasks.push(tokio::spawn(async move {
            let o = opts(Some(512 + i * 40), if i % 2 == 0 { Some(8) } else { None });
            client::get(addr, "snponly.efi", &o).await
        }));
    }
    for t in tasks {
        let d = t.await.unwrap().unwrap();
        assert!(d.data == want);
        assert_eq!(
            d.server, srv.addr,
            "single-port replies come from the listen address and port"
        );
    }
    let port = srv.addr.port().to_string();
    let out = tempfile::tempdir().unwrap();
    let o = output(
        Command::new(need("curl"))
            .args(["-sS", "--tftp-blksize", "1468", "-o"])
            .arg(out.path().join("c"))
            .arg(format!("tftp://127.0.0.1:{port}/snponly.efi")),
    )
    .await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(out.path().join("c")).unwrap() == want);
    let o = output(
        Command::new(need("tftp"))
            .args([
                "-m",
                "binary",
                "127.0.0.1",
                &port,
                "-c",
                "get",
                "snponly.efi",
            ])
            .arg(out.path().join("h")),
    )
    .await;
    assert!(o.status.success());
    assert!(std::fs::read(out.path().join("h")).unwrap() == want);
}

#[tokio::test]
async fn duplicate_acks_never_cause_duplicate_sends() {
    // Long timers so only ACKs could trigger sends during the check.
    let srv = TestServer::start(
        &[
            "--initial-timeout",
            "3s",
            "--min-timeout",
            "3s",
            "--max-timeout",
            "3s",
        ],
        stock_catalogue(),
        None,
    );
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(
        &packet::encode_request(packet::OP_RRQ, "undionly.kpxe", "octet", &[]),
        srv.addr,
    )
    .await
    .unwrap();
    let mut buf = [0u8; 2048];
    let (_, from) = sock.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..4], &packet::data_header(1));
    for _ in 0..5 {
        sock.send_to(&packet::encode_ack(1), from).await.unwrap();
    }
    let mut data_packets = 0;
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await
    {
        assert!(n >= 4);
        data_packets += 1;
    }
    assert_eq!(
        data_packets, 1,
        "five ACKs of block 1 must produce block 2 once"
    );
}

#[tokio::test]
async fn garbage_does_not_stop_the_listener() {
    let srv = TestServer::start(&[], stock_catalogue(), None);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..2000usize {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 600) as usize;
        let mut b: Vec<u8> = (0..len).map(|j| (seed >> (j % 56)) as u8).collect();
        if i % 3 == 0 && b.len() >= 2 {
            b[0] = 0;
            b[1] = (i % 7) as u8;
        }
        sock.send_to(&b, srv.addr).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let d = client::get(srv.addr, "undionly.kpxe", &opts(None, None))
        .await
        .unwrap();
    assert!(d.data == stock("undionly.kpxe"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_limits_drop_requests_that_clients_retry() {
    let srv = TestServer::start(&["--max-transfers", "2"], stock_catalogue(), None);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let addr = srv.addr;
        tasks.push(tokio::spawn(async move {
            let o = ClientOptions {
                rto: Duration::from_millis(200),
                retries: 50,
                ..opts(Some(1468), Some(8))
            };
            client::get(addr, "ipxe.efi", &o).await
        }));
    }
    let want = stock("ipxe.efi");
    for t in tasks {
        assert!(t.await.unwrap().unwrap().data == want);
    }
    // Per-client limit: one at a time from this IP. A client that stops acknowledging
    // holds its slot until the server gives up on it.
    let srv1 = TestServer::start(
        &[
            "--max-transfers-per-client",
            "1",
            "--retries",
            "1",
            "--initial-timeout",
            "500ms",
            "--max-timeout",
            "500ms",
        ],
        stock_catalogue(),
        None,
    );
    let hung = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    hung.send_to(
        &packet::encode_request(packet::OP_RRQ, "ipxe.efi", "octet", &[]),
        srv1.addr,
    )
    .await
    .unwrap();
    let mut buf = [0u8; 1024];
    hung.recv_from(&mut buf).await.unwrap();
    let quick = ClientOptions {
        rto: Duration::from_millis(100),
        retries: 2,
        ..opts(None, None)
    };
    assert!(
        matches!(
            client::get(srv1.addr, "undionly.kpxe", &quick).await,
            Err(ClientError::Timeout)
        ),
        "second transfer from one IP must wait"
    );
    // After the server abandons the silent client (2 × 500 ms), the slot is free again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        client::get(srv1.addr, "undionly.kpxe", &opts(None, None))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn rescans_pick_up_new_and_changed_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.efi"), b"v1").unwrap();
    let cat = dir_catalogue(dir.path());
    let stop = tokio::sync::oneshot::channel::<()>();
    let _reload = cat.spawn_reloader(Duration::from_millis(100), async move {
        let _ = stop.1.await;
    });
    let srv = TestServer::start(&[], cat.clone(), None);
    assert_eq!(
        client::get(srv.addr, "a.efi", &opts(None, None))
            .await
            .unwrap()
            .data,
        b"v1"
    );
    std::fs::write(dir.path().join("a.efi"), b"version two").unwrap();
    std::fs::write(dir.path().join("b.efi"), b"new").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let a = client::get(srv.addr, "a.efi", &opts(None, None))
            .await
            .map(|d| d.data);
        let b = client::get(srv.addr, "b.efi", &opts(None, None))
            .await
            .map(|d| d.data);
        if matches!((&a, &b), (Ok(x), Ok(y)) if x == b"version two" && y == b"new") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rescan did not pick up changes: {a:?} {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.0.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_transfers_of_ipxe_efi() {
    let srv = TestServer::start(
        &["--max-transfers-per-client", "1000"],
        stock_catalogue(),
        None,
    );
    let want = std::sync::Arc::new(stock("ipxe.efi"));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..1000u32 {
        let addr = srv.addr;
        let want = want.clone();
        tasks.push(tokio::spawn(async move {
            // A mix of what firmware asks for: OVMF (1468/4), iPXE/undionly (1432), defaults.
            let o = match i % 4 {
                0 => opts(Some(1468), Some(4)),
                1 => opts(Some(1432), None),
                2 => opts(Some(1468), Some(8)),
                _ => opts(Some(1468), None),
            };
            let o = ClientOptions {
                rto: Duration::from_secs(1),
                retries: 20,
                ..o
            };
            let d = client::get(addr, "ipxe.efi", &o).await?;
            Ok::<bool, ClientError>(d.data == *want)
        }));
    }
    let mut intact = 0;
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(180), t).await {
            Ok(Ok(Ok(true))) => intact += 1,
            other => panic!("a transfer failed: {other:?}"),
        }
    }
    assert_eq!(intact, 1000);
    eprintln!(
        "1000 concurrent transfers of ipxe.efi (850,528 bytes) intact in {:?}",
        started.elapsed()
    );
    srv.shutdown().await;
}
