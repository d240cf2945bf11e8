//! Demo: boot one QEMU machine through ironboot and show its serial console live.
//!
//! ```sh
//! cargo build --workspace --bins
//! sudo -E cargo test -p ironboot-e2e --test demo -- --ignored --nocapture
//! IRONBOOT_DEMO_FIRMWARE=uefi sudo -E cargo test -p ironboot-e2e --test demo -- --ignored --nocapture
//! ```
//! A network namespace with hardware-api, dhcp-svc, tftp-svc, ipxe-http-svc and
//! syslog-svc; the machine is registered with `hwctl apply`, boots its firmware, iPXE,
//! the script, Debian's kernel and a busybox initramfs that logs home and powers off.
//! Everything is removed at the end (set IRONBOOT_E2E_KEEP=1 to keep the logs).

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ironboot_e2e::Firmware;
use ironboot_e2e::initramfs::SYSLOG_MARKER;
use ironboot_e2e::lab::{Lab, Machine};
use ironboot_e2e::scenario::mac;

/// Drops the terminal-control sequences firmware sends (clear screen, cursor moves,
/// line-wrap modes) so the console reads as a log; keeps colours out too.
fn printable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    while let Some(&n) = chars.peek() {
                        chars.next();
                        if n.is_ascii_alphabetic() {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[test]
#[ignore = "demo: boots one machine and prints its console; run with --ignored --nocapture"]
fn demo() {
    let firmware = match std::env::var("IRONBOOT_DEMO_FIRMWARE").as_deref() {
        Ok("uefi") | Ok("UEFI") => Firmware::Uefi,
        _ => Firmware::Bios,
    };
    let mut lab = Lab::new("demo");
    let m = Machine::new(
        "demo-machine",
        &mac(0x99),
        Ipv4Addr::new(10, 91, 0, 50),
        firmware,
    );
    println!(
        "== registering {} ({}) with hwctl apply:\n{}",
        m.name,
        m.mac,
        m.yaml()
    );
    lab.register(&m);
    let assets = lab.prepare_assets();
    lab.start_syslog();
    lab.start_tftp();
    lab.start_http(&assets);
    lab.start_dhcp_svc(&[]);
    println!(
        "== services up in namespace {}; booting a {} machine (QEMU, TCG)\n",
        lab.ns.name,
        firmware.name()
    );

    let mut vm = lab.boot(firmware, &m);
    let mut offset = 0u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(mut f) = std::fs::File::open(&vm.console) {
            let _ = f.seek(SeekFrom::Start(offset));
            let mut buf = Vec::new();
            if f.read_to_end(&mut buf).is_ok() && !buf.is_empty() {
                offset += buf.len() as u64;
                print!("{}", printable(&buf));
                let _ = std::io::stdout().flush();
            }
        }
        if vm.proc.exited().is_some() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = vm.started.elapsed();
    vm.kill();
    println!(
        "\n== the machine powered off after {:.1}s",
        elapsed.as_secs_f64()
    );
    let logs = lab.syslog_logs(&m.mac);
    println!(
        "== syslog-svc, GET /machines/{}/logs:\n{}",
        m.mac,
        serde_json::to_string_pretty(&logs).unwrap_or_default()
    );
    assert!(
        logs.to_string().contains(SYSLOG_MARKER),
        "the machine's syslog line did not arrive"
    );
}
