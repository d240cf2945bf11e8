//! The real `ipxe-http-svc` binary: `--check-config`, serving with flags from the
//! environment, and a clean exit on SIGTERM.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ironboot_testkit::Proc;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn check_config_accepts_good_and_names_bad_settings() {
    let ipxe = tempfile::tempdir().unwrap();
    std::fs::write(ipxe.path().join("ipxe.efi"), b"x").unwrap();
    std::fs::write(ipxe.path().join("undionly.kpxe"), b"k").unwrap();
    let run = |extra: &[&str]| {
        Command::new(service_binary())
            .args([
                "--check-config",
                "--ipxe-dir",
                ipxe.path().to_str().unwrap(),
                "--link-roots",
                "",
            ])
            .args(extra)
            .env_remove("RUST_LOG")
            .output()
            .expect("run ipxe-http-svc")
    };
    let ok = run(&[]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains("configuration OK")
            && stdout.contains("binaries (2, 2 bytes): ipxe.efi undionly.kpxe"),
        "{stdout}"
    );
    assert!(
        stdout.contains("template installer.ipxe: built in"),
        "{stdout}"
    );

    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
    let ok = run(&["--templates-dir", shipped]);
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("/templates/installer.ipxe"));

    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("installer.ipxe"),
        "#!ipxe\nkernel {{ kernel_ur }}\n",
    )
    .unwrap();
    for (args, needle) in [
        (
            vec!["--templates-dir", broken.path().to_str().unwrap()],
            "installer.ipxe",
        ),
        (vec!["--osie-url", "ftp://x/"], "--osie-url"),
        (
            vec!["--assets-dir", "/nonexistent/ironboot"],
            "--assets-dir",
        ),
        (
            vec!["--script-retry-delay", "500ms"],
            "--script-retry-delay",
        ),
        (vec!["--registry", "grpc://x"], "registry"),
    ] {
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(needle), "{args:?}: {err}");
    }

    // A binary the default architecture map sends, as a dangling link (Debian's
    // ipxe.efi copied without its /boot target): refused, naming the file.
    std::fs::remove_file(ipxe.path().join("ipxe.efi")).unwrap();
    std::os::unix::fs::symlink(
        "/boot/ironboot-absent/ipxe.efi",
        ipxe.path().join("ipxe.efi"),
    )
    .unwrap();
    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a dangling ipxe.efi was accepted");
    assert!(
        err.contains("ipxe.efi is not served (dangling symlink)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_from_environment_and_stops_on_sigterm() {
    let reg = registry_with_machines().await;
    let ipxe = tempfile::tempdir().unwrap();
    std::fs::write(ipxe.path().join("ipxe.efi"), binary_bytes()).unwrap();
    let port = free_port();
    let child = Command::new(service_binary())
        .env("IRONBOOT_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("IRONBOOT_IPXE_DIR", ipxe.path())
        .env("IRONBOOT_LINK_ROOTS", "")
        .env("IRONBOOT_REGISTRY", &reg.endpoint)
        .env("IRONBOOT_REGISTRY_TOKEN", &reg.read_token)
        .env("IRONBOOT_HTTP_OSIE_URL", "http://osie.example/hook")
        .env("IRONBOOT_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ipxe-http-svc");
    let pid = child.id();
    let mut guard = Proc::adopt(child, "ipxe-http-svc");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let up = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
            .await;
        if matches!(up, Ok(Ok(_))) && get(addr, "/healthz").await.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "service did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = get(addr, &format!("/{MAC}/auto.ipxe")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text()
            .contains("kernel http://osie.example/hook/vmlinuz-x86_64 "),
        "{}",
        r.text()
    );
    assert_eq!(get(addr, "/ipxe/ipxe.efi").await.body, binary_bytes());

    // SAFETY: a signal to the child this test started, by its PID.
    assert_eq!(
        unsafe { nix::libc::kill(pid as i32, nix::libc::SIGTERM) },
        0,
        "SIGTERM"
    );
    let child = &mut guard.child;
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no exit within 15 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
    let mut log = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut log)
        .unwrap();
    // One JSON line per request, with the machine's identity.
    let line = log
        .lines()
        .find(|l| l.contains("\"route\":\"script\""))
        .unwrap_or_else(|| panic!("no script request in the log:\n{log}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
    assert_eq!(v["mac"], MAC);
    assert_eq!(v["machine"], "machine1");
    assert_eq!(v["kind"], "installer");
    assert_eq!(v["status"], 200);
    assert!(
        log.contains("\"stopped\"") || log.contains("stopped"),
        "{log}"
    );
}
