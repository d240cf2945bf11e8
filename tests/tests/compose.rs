//! d. The stack in containers, deployed as the README says: images built from
//! `deploy/Dockerfile`, `deploy/compose/make-secrets`, `deploy/ironboot-compose … up -d`
//! with the services chosen by profile, machines registered with `hwctl` against the
//! containerised registry, and QEMU machines booting through the containers' published
//! ports (and, with `--profile all`, dhcp-svc in its container on the host network).
//!
//! The host side of the boot LAN is a veth the test makes (`ibu…`, 10.91.0.1/24, the
//! stack's IRONBOOT_INTERFACE and IRONBOOT_ADVERTISE_IP); its other end sits on the
//! lab's bridge with the VM's tap. Every DHCP packet on the host is captured: none may
//! cross an interface the test did not make.
//! Run as root: `cargo test -p ironboot-e2e --test compose`.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ironboot_e2e::Firmware;
use ironboot_e2e::byo;
use ironboot_e2e::capture::DhcpCapture;
use ironboot_e2e::compose::{IMAGE_VERSION, Stack, build_images};
use ironboot_e2e::lab::{HTTP_ADMIN, Lab, Machine};
use ironboot_e2e::scenario::{assert_services_saw_boot, boot_to_syslog, mac};

const BYO_PROFILES: &[&str] = &["tftp", "http", "syslog"];

/// A lab whose services are a compose stack on the host: images built, tokens made,
/// assets prepared; nothing started.
fn compose_lab(tag: &str) -> (Lab, Stack) {
    let mut lab = Lab::with_host_uplink(tag);
    build_images(IMAGE_VERSION);
    let assets = lab.prepare_assets();
    let stack = Stack::new(&mut lab, &assets);
    (lab, stack)
}

#[track_caller]
fn assert_dhcp_stayed_on(lab: &Lab, counts: &[(String, usize)]) {
    let uplink = lab.uplink().expect("uplink");
    println!("DHCP packets on the host, by interface: {counts:?}");
    assert!(
        counts.iter().any(|(i, n)| i == uplink && *n > 0),
        "no DHCP seen on the test's uplink {uplink}: {counts:?}"
    );
    let elsewhere: Vec<_> = counts.iter().filter(|(i, _)| i != uplink).collect();
    assert!(
        elsewhere.is_empty(),
        "DHCP crossed interfaces the test did not make: {elsewhere:?}"
    );
}

fn boot(lab: &mut Lab, stack: &Stack, fw: Firmware, m: &Machine, scenario: &str) {
    let report = boot_to_syslog(lab, fw, m);
    report.print(scenario);
    stack.collect_logs();
    assert_services_saw_boot(lab, m, &report);
}

#[test]
fn bring_your_own_dhcp_stack_boots_uefi_and_bios() {
    let (mut lab, mut stack) = compose_lab("cbyo");
    let capture = DhcpCapture::start(&lab.dir);
    stack.up(BYO_PROFILES);
    let uefi = Machine::new(
        "cbyo-uefi",
        &mac(0x31),
        Ipv4Addr::new(10, 91, 0, 60),
        Firmware::Uefi,
    );
    let bios = Machine::new(
        "cbyo-bios",
        &mac(0x32),
        Ipv4Addr::new(10, 91, 0, 61),
        Firmware::Bios,
    );
    lab.register(&uefi);
    lab.register(&bios);
    // The LAN's own DHCP server: dnsmasq with the shipped configuration, reservations
    // for the two machines as an operator would add them.
    let peer = lab.add_peer("cbyo", "10.91.0.2/24");
    let reservations: String = [&uefi, &bios]
        .iter()
        .map(|m| format!("dhcp-host={},{}\n", m.mac, m.ip))
        .collect();
    byo::start_dnsmasq(&mut lab, peer, (uefi.ip, bios.ip), &reservations);

    boot(
        &mut lab,
        &stack,
        Firmware::Uefi,
        &uefi,
        "d. compose, bring your own DHCP (dnsmasq)",
    );
    boot(
        &mut lab,
        &stack,
        Firmware::Bios,
        &bios,
        "d. compose, bring your own DHCP (dnsmasq)",
    );
    assert_eq!(
        stack.inspect("tftp-svc", "{{.Config.User}}"),
        "10001",
        "tftp-svc runs as uid 10001"
    );
    assert_dhcp_stayed_on(&lab, &capture.stop());
}

#[test]
fn all_services_stack_boots_uefi_with_dhcp_svc_in_its_container() {
    let (mut lab, mut stack) = compose_lab("call");
    let capture = DhcpCapture::start(&lab.dir);
    stack.up(&["all"]);
    // dhcp-svc: uid 0 with every capability dropped but NET_BIND_SERVICE.
    assert_eq!(
        stack.inspect("dhcp-svc", "{{.HostConfig.CapAdd}}"),
        "[NET_BIND_SERVICE]"
    );
    assert_eq!(
        stack.inspect("dhcp-svc", "{{.HostConfig.CapDrop}}"),
        "[ALL]"
    );
    let m = Machine::new(
        "call-uefi",
        &mac(0x33),
        Ipv4Addr::new(10, 91, 0, 62),
        Firmware::Uefi,
    );
    lab.register(&m);
    boot(
        &mut lab,
        &stack,
        Firmware::Uefi,
        &m,
        "d. compose, all services",
    );
    let dhcp = lab.log("dhcp-svc");
    assert!(
        dhcp.contains(&m.mac),
        "dhcp-svc's log does not mention the machine:\n{dhcp}"
    );
    assert_dhcp_stayed_on(&lab, &capture.stop());
}

/// The machine's script as ipxe-http-svc serves it, from the host: status only.
fn script_status(lab: &Lab, m: &Machine) -> u16 {
    lab.http_get(HTTP_ADMIN, &format!("/{}/auto.ipxe", m.mac)).0
}

#[track_caller]
fn wait_script(lab: &Lab, m: &Machine, want: u16, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = script_status(lab, m);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {}'s script answered {got}, not {want}, within {timeout:?}",
            m.name
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn day_two_restart_down_up_and_a_new_image_version_keep_every_machine() {
    let (lab, mut stack) = compose_lab("cday2");
    stack.up(BYO_PROFILES);
    let machine = |n: u8| {
        Machine::new(
            &format!("cday2-{n}"),
            &mac(0x40 + n),
            Ipv4Addr::new(10, 91, 0, 70 + n),
            Firmware::Bios,
        )
    };
    let (a, b, c) = (machine(1), machine(2), machine(3));
    lab.register(&a);
    wait_script(&lab, &a, 200, Duration::from_secs(10), "registered machine");

    // The registry stopped: the services answer known machines from their caches.
    stack.compose(&["stop", "hardware-api"]);
    assert_eq!(
        script_status(&lab, &a),
        200,
        "ipxe-http-svc must serve a known machine while the registry is down"
    );
    stack.compose(&["start", "hardware-api"]);
    stack.wait_healthy(Duration::from_secs(60));
    // A change made after the registry returned reaches the services.
    lab.register(&b);
    wait_script(
        &lab,
        &b,
        200,
        Duration::from_secs(30),
        "machine registered after the registry came back",
    );
    stack.compose(&["restart", "hardware-api"]);
    stack.wait_healthy(Duration::from_secs(60));
    lab.register(&c);
    wait_script(
        &lab,
        &c,
        200,
        Duration::from_secs(30),
        "machine registered after `restart hardware-api`",
    );

    // down (volume kept) and up: every machine is still registered and served.
    stack.compose(&["down"]);
    assert_eq!(
        script_status(&lab, &a),
        0,
        "nothing should answer while the stack is down"
    );
    stack.up(BYO_PROFILES);
    for m in [&a, &b, &c] {
        assert!(
            lab.hwctl(&["get", &m.name]).is_ok(),
            "{} lost across down/up",
            m.name
        );
        wait_script(&lab, m, 200, Duration::from_secs(30), "after down/up");
    }

    // A new image version rolls over onto the same volume.
    let next = format!("{IMAGE_VERSION}-next");
    build_images(&next);
    stack.set_version(&next);
    stack.up(BYO_PROFILES);
    for svc in ["hardware-api", "tftp-svc", "ipxe-http-svc", "syslog-svc"] {
        assert_eq!(
            stack.inspect(svc, "{{.Config.Image}}"),
            format!("localhost/ironboot/{svc}:{next}"),
            "{svc} did not roll over"
        );
    }
    for m in [&a, &b, &c] {
        assert!(
            lab.hwctl(&["get", &m.name]).is_ok(),
            "{} lost across the upgrade",
            m.name
        );
        wait_script(&lab, m, 200, Duration::from_secs(30), "after the upgrade");
    }
}
