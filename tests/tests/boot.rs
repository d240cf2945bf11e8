//! Scenarios with dhcp-svc: BIOS and UEFI machines boot into the initramfs; proxy mode
//! beside dnsmasq; gating. Run as root: `cargo test -p ironboot-e2e --test boot`.

use ironboot_e2e::scenario::{boot_to_syslog, mac};
use ironboot_e2e::lab::{DHCP_ADMIN, Lab, Machine};
use ironboot_e2e::Firmware;
use std::net::Ipv4Addr;

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
    lab.start_http(&assets, &[&m]);
    lab.start_dhcp_svc(&[]);
    let report = boot_to_syslog(&mut lab, Firmware::Bios, &m);
    report.print("a. BIOS, dhcp-svc reservation");
    // dhcp-svc answered the machine (iPXE ROM's DHCP, then udhcpc in the initramfs).
    assert!(lab.metric(DHCP_ADMIN, "dhcp_packets_total", &["outcome=\"ack\""]) >= 2.0, "{}", lab.metrics(DHCP_ADMIN));
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
    lab.start_http(&assets, &[&m]);
    lab.start_dhcp_svc(&[]);
    let report = boot_to_syslog(&mut lab, Firmware::Uefi, &m);
    report.print("b. UEFI two-step, dhcp-svc reservation");
    // The firmware fetched ipxe.efi over TFTP from tftp-svc.
    let tftp = lab.metrics(ironboot_e2e::lab::TFTP_ADMIN);
    assert!(tftp.lines().any(|l| l.contains("ipxe.efi") || l.starts_with("tftp_transfers")), "{tftp}");
    // The console shows both stages.
    assert!(report.console.contains("iPXE"), "{}", report.console);
}
