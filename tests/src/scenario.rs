//! The parts every booting scenario shares: boot a machine all the way into the
//! initramfs and check what each service saw.

use std::time::{Duration, Instant};

use crate::initramfs::{DONE_MARKER, INIT_MARKER, SYSLOG_MARKER};
use crate::lab::{Lab, Machine, SERVER_IP};
use crate::vm::{Firmware, Vm};

/// Milestones of one boot, from QEMU's start.
#[derive(Debug)]
pub struct BootReport {
    pub firmware: Firmware,
    /// The iPXE script ran (its first `echo`).
    pub script: Duration,
    /// The kernel printed its banner.
    pub kernel: Duration,
    /// `/init` sent its syslog line and is about to power off.
    pub done: Duration,
    /// QEMU exited after the power-off.
    pub off: Duration,
    pub console: String,
}

impl BootReport {
    pub fn print(&self, scenario: &str) {
        println!(
            "boot time [{scenario}, {}]: script {:.1}s, kernel {:.1}s, init done {:.1}s, powered off {:.1}s",
            self.firmware.name(),
            self.script.as_secs_f64(),
            self.kernel.as_secs_f64(),
            self.done.as_secs_f64(),
            self.off.as_secs_f64()
        );
    }
}

/// Text the installer script prints first (ipxe-http-svc's template: `ironboot: <machine> …`).
pub const SCRIPT_MARKER: &str = "ironboot: ";

/// Bounds for each stage. Unloaded, a BIOS machine runs its script after ≈ 4 s and a
/// UEFI one after ≈ 20 s; on a 2-core machine shared with compilers, 3–4× that was seen.
pub fn stage_timeouts(fw: Firmware) -> (Duration, Duration, Duration) {
    match fw {
        Firmware::Bios => (Duration::from_secs(90), Duration::from_secs(120), Duration::from_secs(120)),
        Firmware::Uefi => (Duration::from_secs(180), Duration::from_secs(120), Duration::from_secs(120)),
    }
}

/// Console text that means the boot has failed (iPXE gave up, the kernel died).
pub const FAILURES: &[&str] = &["Nothing to boot", "No more network devices", "Kernel panic", "No bootable device", "IRONBOOT-E2E-NO-LEASE"];

#[track_caller]
fn stage(vm: &mut Vm, needle: &str, timeout: Duration, what: &str) -> Duration {
    match vm.wait_console_unless(needle, FAILURES, timeout) {
        Ok(t) => t,
        Err(e) => panic!("{what}: {e}\n----- console -----\n{}", vm.console_text()),
    }
}

/// Boots `m` with `fw` from QEMU start to power-off, and checks the syslog line arrived
/// at syslog-svc attributed to the machine. Returns the milestones.
#[track_caller]
pub fn boot_to_syslog(lab: &mut Lab, fw: Firmware, m: &Machine) -> BootReport {
    let (t_script, t_kernel, t_done) = stage_timeouts(fw);
    let mut vm = lab.boot(fw, m);
    let script = stage(&mut vm, SCRIPT_MARKER, t_script, "the iPXE script did not run");
    let kernel = stage(&mut vm, "Linux version", t_kernel, "the kernel did not start");
    stage(&mut vm, INIT_MARKER, t_done, "the initramfs /init did not run");
    let done = stage(&mut vm, DONE_MARKER, t_done, "/init did not finish");
    let off = vm.wait_exit(Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    let console = vm.console_text();

    // The command line the script passed reached the kernel.
    let cmdline = console.lines().find(|l| l.contains("IRONBOOT-E2E-CMDLINE")).unwrap_or_default().to_string();
    assert!(cmdline.contains(&format!("syslog_host={SERVER_IP}")), "syslog_host missing from the kernel command line: {cmdline:?}");
    assert!(cmdline.contains("worker_id=") && !cmdline.contains("worker_id= "), "worker_id missing: {cmdline:?}");
    assert!(cmdline.contains("traceparent=00-"), "traceparent missing: {cmdline:?}");
    assert!(
        console.contains(&format!("addr={}/24", m.ip)),
        "the initramfs did not get the registered address {} from DHCP:\n{console}",
        m.ip
    );

    // syslog-svc recorded the line, attributed to this machine.
    let deadline = Instant::now() + Duration::from_secs(10);
    let record = loop {
        let logs = lab.syslog_logs(&m.mac);
        let found = logs["messages"].as_array().and_then(|a| a.iter().find(|msg| msg["message"].as_str().is_some_and(|t| t.contains(SYSLOG_MARKER))).cloned());
        if let Some(r) = found {
            break r;
        }
        assert!(Instant::now() < deadline, "syslog-svc has no {SYSLOG_MARKER} line for {}: {logs}", m.mac);
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(record["machine"]["mac"].as_str(), Some(m.mac.as_str()), "syslog line not attributed to the machine: {record}");
    assert_eq!(record["machine"]["name"].as_str(), Some(m.name.as_str()), "{record}");
    let tp = cmdline.split_whitespace().find_map(|w| w.strip_prefix("traceparent=")).unwrap_or_default();
    assert!(record.to_string().contains(tp), "the syslog line should carry the boot's traceparent {tp}: {record}");

    BootReport { firmware: fw, script, kernel, done, off, console }
}

/// A locally administered MAC of QEMU's range, distinct per scenario.
pub fn mac(n: u8) -> String {
    format!("52:54:00:e2:e0:{n:02x}")
}

/// The log line of `service` that contains every one of `needles`; panics with the log.
#[track_caller]
pub fn log_line(lab: &Lab, service: &str, needles: &[&str]) -> String {
    let log = lab.log(service);
    match log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
        Some(l) => l.to_string(),
        None => panic!("{service} logged no line with {needles:?}:\n{log}"),
    }
}

/// What every full boot shows in the services besides the console: ipxe-http-svc served
/// this machine's installer script with the traceparent the kernel got; for UEFI,
/// tftp-svc sent the whole `ipxe.efi`.
#[track_caller]
pub fn assert_services_saw_boot(lab: &Lab, m: &Machine, report: &BootReport) {
    let tp = report
        .console
        .lines()
        .find(|l| l.contains("IRONBOOT-E2E-CMDLINE"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("traceparent=")))
        .unwrap_or_default()
        .to_string();
    log_line(lab, "ipxe-http-svc", &["route=\"script\"", "status=200", &format!("mac={}", m.mac), "kind=\"installer\"", &format!("traceparent={tp}")]);
    log_line(lab, "ipxe-http-svc", &["/assets/vmlinuz", "status=200"]);
    if report.firmware == Firmware::Uefi {
        log_line(lab, "tftp-svc", &["outcome=\"completed\"", "name=ipxe.efi", &format!("machine=\"{}\"", m.name)]);
    }
}
