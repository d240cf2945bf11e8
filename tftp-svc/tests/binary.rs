//! The real binary: --check-config, the admin listener, SIGTERM.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_tftp-svc");

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn check_config_accepts_good_and_names_bad_settings() {
    let ok = Command::new(BIN)
        .args(["--check-config", "--no-registry"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        text.contains("ipxe.efi") && text.contains("configuration OK"),
        "{text}"
    );

    let bad = Command::new(BIN)
        .args([
            "--check-config",
            "--no-registry",
            "--ipxe-dir",
            "/nonexistent/ipxe",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no files to serve"));

    let bad = Command::new(BIN)
        .args(["--check-config", "--no-registry", "--max-blksize", "70000"])
        .output()
        .unwrap();
    assert!(
        !bad.status.success(),
        "out-of-range blksize must be refused"
    );
    let bad = Command::new(BIN)
        .args(["--check-config", "--no-registry", "--max-blksize", "4"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--max-blksize 4"));
}

#[test]
fn admin_endpoints_and_graceful_sigterm() {
    let curl = need("curl");
    let (udp, tcp) = (free_udp_port(), free_tcp_port());
    let child = Command::new(BIN)
        .args([
            "--no-registry",
            "--listen",
            &format!("127.0.0.1:{udp}"),
            "--admin-listen",
            &format!("127.0.0.1:{tcp}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Proc::adopt(child, "tftp-svc");
    let deadline = Instant::now() + Duration::from_secs(10);
    let health = loop {
        let o = Command::new(&curl)
            .args(["-s", &format!("http://127.0.0.1:{tcp}/healthz")])
            .output()
            .unwrap();
        if o.status.success() && !o.stdout.is_empty() {
            break String::from_utf8_lossy(&o.stdout).to_string();
        }
        assert!(Instant::now() < deadline, "admin listener never came up");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(health.trim(), "ok");
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(&curl)
        .args(["-sS", "-o"])
        .arg(dir.path().join("f"))
        .arg(format!("tftp://127.0.0.1:{udp}/undionly.kpxe"))
        .output()
        .unwrap();
    assert!(o.status.success());
    let m = Command::new(&curl)
        .args(["-s", &format!("http://127.0.0.1:{tcp}/metrics")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&m.stdout);
    assert!(
        text.contains("tftp_transfers_total{outcome=\"completed\"} 1"),
        "{text}"
    );
    assert!(text.contains("bootfiles_files"), "{text}");

    // SIGTERM: exits 0 promptly.
    let pid = guard.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = guard.child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st:?}");
            break;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
