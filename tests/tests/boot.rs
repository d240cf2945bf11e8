//! Scenarios with dhcp-svc: BIOS and UEFI machines boot into the initramfs; proxy mode
//! beside dnsmasq; gating. Run as root: `cargo test -p ironboot-e2e --test boot`.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ironboot_e2e::Firmware;
use ironboot_e2e::bins;
use ironboot_e2e::lab::{DHCP_ADMIN, HTTP_ADMIN, Lab, Machine};
use ironboot_e2e::scenario::{
    assert_one_boot_trace, assert_services_saw_boot, boot_to_syslog, log_line, mac,
};

const VM_IP: Ipv4Addr = Ipv4Addr::new(10, 91, 0, 50);

/// a. BIOS: SeaBIOS + the e1000's iPXE ROM, dhcp-svc in reservation mode → script →
/// kernel → syslog line attributed to the machine.
#[test]
fn bios_reservation_boots_to_kernel() {
    let mut lab = Lab::new("bios");
    let m = Machine::new("bios-vm", &mac(0x0a), VM_IP, Firmware::Bios);
    lab.register(&m);
    let assets = lab.prepare_assets();
    lab.start_syslog();
    lab.start_tftp();
    lab.start_http(&assets);
    lab.start_dhcp_svc(&[]);
    let report = boot_to_syslog(&mut lab, Firmware::Bios, &m);
    report.print("a. BIOS, dhcp-svc reservation");
    assert_services_saw_boot(&lab, &m, &report);
    // The iPXE ROM asked as iPXE at once and got the script URL, never a binary.
    log_line(
        &lab,
        "dhcp-svc",
        &[
            "netboot reply",
            &format!("mac={}", m.mac),
            "client=\"ipxe\"",
            "reply=\"ack\"",
            "boot=Script(",
        ],
    );
    // dhcp-svc answered the machine (iPXE ROM's DHCP, then udhcpc in the initramfs).
    assert!(
        lab.metric(DHCP_ADMIN, "dhcp_packets_total", &[("outcome", "ack")]) >= 2.0,
        "{}",
        lab.metrics(DHCP_ADMIN)
    );
}

/// b. UEFI: OVMF's own PXE client (virtio-net without option ROM: arch 7, no user class)
/// → TFTP ipxe.efi from tftp-svc → iPXE asks again with user class iPXE → script →
/// kernel. The real two-step chainload.
#[test]
fn uefi_two_step_chainload_boots_to_kernel() {
    let mut lab = Lab::new("uefi");
    let m = Machine::new("uefi-vm", &mac(0x0b), VM_IP, Firmware::Uefi);
    lab.register(&m);
    let assets = lab.prepare_assets();
    lab.start_syslog();
    lab.start_tftp();
    lab.start_http(&assets);
    lab.start_dhcp_svc(&[]);
    let report = boot_to_syslog(&mut lab, Firmware::Uefi, &m);
    report.print("b. UEFI two-step, dhcp-svc reservation");
    assert_services_saw_boot(&lab, &m, &report);
    // Both steps, as dhcp-svc saw them: the firmware (PXE, arch 7) got ipxe.efi, then
    // iPXE got the script URL.
    log_line(
        &lab,
        "dhcp-svc",
        &[
            "netboot reply",
            &format!("mac={}", m.mac),
            "client=\"pxe\"",
            "reply=\"ack\"",
            "boot=TftpFile(\"ipxe.efi\")",
        ],
    );
    log_line(
        &lab,
        "dhcp-svc",
        &[
            "netboot reply",
            &format!("mac={}", m.mac),
            "client=\"ipxe\"",
            "reply=\"ack\"",
            "boot=Script(",
        ],
    );
    assert!(
        report.console.contains("NBP file downloaded successfully")
            && report.console.contains("iPXE"),
        "{}",
        report.console
    );
    // Every service exported its spans to the lab's collector: one boot, one trace.
    assert_one_boot_trace(&mut lab, &m, &report);
}

/// d. Proxy mode: dnsmasq (another host on the LAN) hands out the addresses and no boot
/// information; dhcp-svc --mode proxy adds the boot information (ProxyDHCP). A UEFI
/// machine: OVMF's PXE client merges the two offers and asks dhcp-svc on port 4011.
#[test]
fn proxy_mode_beside_dnsmasq_boots_uefi() {
    let dnsmasq = bins::system("/usr/sbin/dnsmasq", "dnsmasq-base");
    let mut lab = Lab::new("proxy");
    let m = Machine::new("proxy-vm", &mac(0x0d), VM_IP, Firmware::Uefi);
    lab.register(&m);
    let assets = lab.prepare_assets();
    lab.start_syslog();
    lab.start_tftp();
    lab.start_http(&assets);
    let peer = lab.add_peer("proxydns", "10.91.0.2/24");
    let mut cmd = lab.peer(peer).cmd(&dnsmasq);
    // An address server that knows nothing about network boot.
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--port=0",
        "--interface=lan0",
        "--bind-interfaces",
        "--log-dhcp",
        "--log-facility=-",
    ])
    .args([
        "--user=root",
        "--group=root",
        "--dhcp-ignore-clid",
        "--dhcp-option=option:router,10.91.0.1",
    ])
    .arg(format!("--dhcp-range={VM_IP},{VM_IP},255.255.255.0,1h"))
    .arg(format!(
        "--dhcp-leasefile={}",
        lab.dir.join("dnsmasq.leases").display()
    ))
    .arg(format!(
        "--pid-file={}",
        lab.dir.join("dnsmasq.pid").display()
    ));
    lab.start_other("dnsmasq", cmd, Duration::from_millis(500));
    lab.start_dhcp_svc(&["--mode", "proxy"]);
    let report = boot_to_syslog(&mut lab, Firmware::Uefi, &m);
    report.print("d. proxy mode beside dnsmasq");
    assert_services_saw_boot(&lab, &m, &report);
    // dnsmasq gave the address, dhcp-svc the boot file — and never an address.
    assert!(
        lab.log("dnsmasq")
            .contains(&format!("DHCPACK(lan0) {VM_IP} {}", m.mac)),
        "{}",
        lab.log("dnsmasq")
    );
    let line = log_line(
        &lab,
        "dhcp-svc",
        &[
            "netboot reply",
            &format!("mac={}", m.mac),
            "boot=TftpFile(\"ipxe.efi\")",
        ],
    );
    assert!(
        line.contains("yiaddr=0.0.0.0") || !line.contains("yiaddr=10."),
        "proxy reply carried an address: {line}"
    );
    log_line(
        &lab,
        "dhcp-svc",
        &[
            "netboot reply",
            &format!("mac={}", m.mac),
            "client=\"ipxe\"",
            "boot=Script(",
        ],
    );
}

/// e. Gating: a registered machine with allow_pxe false gets its address and no boot;
/// an unregistered machine gets nothing in reservation mode and is listed at
/// dhcp-svc's /unregistered. Neither reaches ipxe-http-svc.
#[test]
fn gating_denied_and_unregistered_machines_do_not_boot() {
    let mut lab = Lab::new("gate");
    let mut denied = Machine::new("denied-vm", &mac(0x0e), VM_IP, Firmware::Bios);
    denied.allow_pxe = Some(false);
    lab.register(&denied);
    let assets = lab.prepare_assets();
    lab.start_syslog();
    lab.start_tftp();
    lab.start_http(&assets);
    lab.start_dhcp_svc(&[]);

    // allow_pxe false: the iPXE ROM is configured (address) but has nothing to boot.
    let started = Instant::now();
    let mut vm = lab.boot(Firmware::Bios, &denied);
    vm.wait_console(&format!("net0: {VM_IP}/"), Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    // iPXE gives up on this NIC once it sees no file name (then SeaBIOS moves on).
    let gave_up = vm.wait_console("No more network devices", Duration::from_secs(60));
    let console = vm.console_text();
    vm.kill();
    assert!(gave_up.is_ok(), "{gave_up:?}\n{console}");
    assert!(
        !console.contains("auto.ipxe") && !console.contains("Linux version"),
        "a denied machine booted:\n{console}"
    );
    println!(
        "gating [allow_pxe false, BIOS]: address but no boot, firmware gave up after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // dhcp-svc acknowledged the address and handed out no boot information.
    assert!(
        lab.metric(DHCP_ADMIN, "dhcp_packets_total", &[("outcome", "ack")]) >= 1.0,
        "{}",
        lab.metrics(DHCP_ADMIN)
    );
    let dhcp_log = lab.log("dhcp-svc");
    assert!(
        !dhcp_log
            .lines()
            .any(|l| l.contains(&format!("mac={}", denied.mac)) && l.contains("netboot reply")),
        "dhcp-svc handed boot info to a denied machine:\n{dhcp_log}"
    );
    // ipxe-http-svc refuses it too (the same gate on every route).
    let (status, _) = lab.http_get(HTTP_ADMIN, &format!("/{}/auto.ipxe", denied.mac));
    assert_eq!(status, 404, "script for a machine with allow_pxe false");

    // Unregistered: no answer at all; listed as seen.
    let stranger = Machine::new(
        "stranger-vm",
        &mac(0x0f),
        Ipv4Addr::new(10, 91, 0, 51),
        Firmware::Bios,
    );
    let started = Instant::now();
    let mut vm = lab.boot(Firmware::Bios, &stranger);
    let deadline = Instant::now() + Duration::from_secs(90);
    let listed = loop {
        let (_, body) = lab.http_get(DHCP_ADMIN, "/unregistered");
        if body.contains(&stranger.mac) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "{} not listed at /unregistered: {body}\n{}",
            stranger.mac,
            vm.console_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    // Give iPXE a few more retries' time: still no address, no script.
    std::thread::sleep(Duration::from_secs(5));
    let console = vm.console_text();
    vm.kill();
    println!(
        "gating [unregistered, BIOS]: listed at /unregistered after {:.1}s, no offer",
        started.elapsed().as_secs_f64()
    );
    assert!(
        !console.contains("net0: 10.91.") && !console.contains("auto.ipxe"),
        "an unregistered machine was configured:\n{console}"
    );
    assert!(
        lab.metric(DHCP_ADMIN, "dhcp_unknown_mac_total", &[]) >= 1.0,
        "{}",
        lab.metrics(DHCP_ADMIN)
    );
    assert!(listed.contains(&stranger.mac));
    assert!(
        !lab.log("ipxe-http-svc").contains(&stranger.mac),
        "ipxe-http-svc saw the unregistered machine"
    );
}
