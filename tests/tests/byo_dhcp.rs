//! c. Bring your own DHCP: dhcp-svc is not deployed; an existing DHCP server on the LAN
//! (another host: a namespace linked to the bridge) runs the configuration shipped in
//! `deploy/byo-dhcp/`, addresses filled in, and points machines at tftp-svc and
//! ipxe-http-svc. A UEFI machine goes through the whole two-step chainload with it.
//! Run as root: `cargo test -p ironboot-e2e --test byo_dhcp`.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use ironboot_e2e::Firmware;
use ironboot_e2e::bins;
use ironboot_e2e::byo;
use ironboot_e2e::lab::{Lab, Machine};
use ironboot_e2e::scenario::{assert_services_saw_boot, boot_to_syslog, mac};

const VM_IP: Ipv4Addr = Ipv4Addr::new(10, 91, 0, 60);
const DHCP_HOST: &str = "10.91.0.2/24";

/// Lab with tftp-svc, ipxe-http-svc and syslog-svc, no dhcp-svc, and a peer host for
/// the DHCP server. Returns the lab, the machine and the peer's index.
fn lab_without_dhcp_svc(tag: &str, n: u8) -> (Lab, Machine, usize) {
    let mut lab = Lab::new(tag);
    let m = Machine::new(&format!("{tag}-vm"), &mac(n), VM_IP, Firmware::Uefi);
    lab.register(&m);
    let assets = lab.prepare_assets();
    lab.start_syslog();
    lab.start_tftp();
    lab.start_http(&assets);
    let peer = lab.add_peer(tag, DHCP_HOST);
    (lab, m, peer)
}

fn write(lab: &Lab, name: &str, text: &str) -> String {
    let p = lab.dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p.display().to_string()
}

fn run(lab: &mut Lab, m: &Machine, scenario: &str) {
    let report = boot_to_syslog(lab, Firmware::Uefi, m);
    report.print(scenario);
    assert_services_saw_boot(lab, m, &report);
}

#[test]
fn dnsmasq_from_deploy_config_boots_uefi() {
    let (mut lab, m, peer) = lab_without_dhcp_svc("byodnsmasq", 0x21);
    byo::start_dnsmasq(&mut lab, peer, (VM_IP, VM_IP), "");
    run(&mut lab, &m, "c. bring your own DHCP: dnsmasq");
}

#[test]
fn kea_from_deploy_config_boots_uefi() {
    let kea = bins::system("/usr/sbin/kea-dhcp4", "kea-dhcp4-server");
    let (mut lab, m, peer) = lab_without_dhcp_svc("byokea", 0x22);
    let mut json = byo::kea_json(&byo::render(
        "kea.json",
        &byo::placeholders("lan0", VM_IP, VM_IP),
    ));
    // Run-time paths only (the file keeps Kea's packaged defaults): leases in the lab.
    json["Dhcp4"]["lease-database"]["name"] =
        lab.dir.join("kea-leases4.csv").display().to_string().into();
    let conf = write(&lab, "kea.json", &json.to_string());
    let check = lab
        .peer(peer)
        .cmd(&kea)
        .args(["-t", &conf])
        .output()
        .expect("kea-dhcp4 -t");
    assert!(
        check.status.success(),
        "kea-dhcp4 -t rejects the config: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let mut cmd = lab.peer(peer).cmd(&kea);
    cmd.args(["-c", &conf])
        .env("KEA_PIDFILE_DIR", &lab.dir)
        .env("KEA_LOCKFILE_DIR", &lab.dir);
    lab.start_other("kea-dhcp4", cmd, Duration::from_millis(300));
    lab.wait_log("kea-dhcp4", "DHCP4_STARTED", Duration::from_secs(10));
    run(&mut lab, &m, "c. bring your own DHCP: Kea");
}

#[test]
fn isc_dhcpd_from_deploy_config_boots_uefi() {
    let dhcpd = bins::system("/usr/sbin/dhcpd", "isc-dhcp-server");
    let (mut lab, m, peer) = lab_without_dhcp_svc("byodhcpd", 0x23);
    let conf = write(
        &lab,
        "dhcpd.conf",
        &byo::render("dhcpd.conf", &byo::placeholders("lan0", VM_IP, VM_IP)),
    );
    let leases = write(&lab, "dhcpd.leases", "");
    let check = Command::new(&dhcpd)
        .args(["-4", "-t", "-cf", &conf])
        .output()
        .expect("dhcpd -t");
    assert!(
        check.status.success(),
        "dhcpd -t rejects the config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut cmd = lab.peer(peer).cmd(&dhcpd);
    cmd.args([
        "-4",
        "-f",
        "-d",
        "-cf",
        &conf,
        "-lf",
        &leases,
        "-pf",
        &lab.dir.join("dhcpd.pid").display().to_string(),
        "lan0",
    ]);
    lab.start_other("dhcpd", cmd, Duration::from_millis(300));
    lab.wait_log("dhcpd", "Sending on", Duration::from_secs(10));
    run(&mut lab, &m, "c. bring your own DHCP: ISC dhcpd");
}
