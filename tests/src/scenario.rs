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
        Firmware::Bios => (
            Duration::from_secs(90),
            Duration::from_secs(120),
            Duration::from_secs(120),
        ),
        Firmware::Uefi => (
            Duration::from_secs(180),
            Duration::from_secs(120),
            Duration::from_secs(120),
        ),
    }
}

/// Console text that means the boot has failed (iPXE gave up, the kernel died).
pub const FAILURES: &[&str] = &[
    "Nothing to boot",
    "No more network devices",
    "Kernel panic",
    "No bootable device",
    "IRONBOOT-E2E-NO-LEASE",
];

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
    let script = stage(
        &mut vm,
        SCRIPT_MARKER,
        t_script,
        "the iPXE script did not run",
    );
    let kernel = stage(
        &mut vm,
        "Linux version",
        t_kernel,
        "the kernel did not start",
    );
    stage(
        &mut vm,
        INIT_MARKER,
        t_done,
        "the initramfs /init did not run",
    );
    let done = stage(&mut vm, DONE_MARKER, t_done, "/init did not finish");
    let off = vm
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.console_text()));
    let console = vm.console_text();

    // The command line the script passed reached the kernel.
    let cmdline = console
        .lines()
        .find(|l| l.contains("IRONBOOT-E2E-CMDLINE"))
        .unwrap_or_default()
        .to_string();
    assert!(
        cmdline.contains(&format!("syslog_host={SERVER_IP}")),
        "syslog_host missing from the kernel command line: {cmdline:?}"
    );
    assert!(
        cmdline.contains("worker_id=") && !cmdline.contains("worker_id= "),
        "worker_id missing: {cmdline:?}"
    );
    assert!(
        cmdline.contains("traceparent=00-"),
        "traceparent missing: {cmdline:?}"
    );
    assert!(
        console.contains(&format!("addr={}/24", m.ip)),
        "the initramfs did not get the registered address {} from DHCP:\n{console}",
        m.ip
    );

    // syslog-svc recorded the line, attributed to this machine.
    let deadline = Instant::now() + Duration::from_secs(10);
    let record = loop {
        let logs = lab.syslog_logs(&m.mac);
        let found = logs["messages"].as_array().and_then(|a| {
            a.iter()
                .find(|msg| {
                    msg["message"]
                        .as_str()
                        .is_some_and(|t| t.contains(SYSLOG_MARKER))
                })
                .cloned()
        });
        if let Some(r) = found {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "syslog-svc has no {SYSLOG_MARKER} line for {}: {logs}",
            m.mac
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        record["machine"]["mac"].as_str(),
        Some(m.mac.as_str()),
        "syslog line not attributed to the machine: {record}"
    );
    assert_eq!(
        record["machine"]["name"].as_str(),
        Some(m.name.as_str()),
        "{record}"
    );
    let tp = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("traceparent="))
        .unwrap_or_default();
    assert!(
        record.to_string().contains(tp),
        "the syslog line should carry the boot's traceparent {tp}: {record}"
    );

    BootReport {
        firmware: fw,
        script,
        kernel,
        done,
        off,
        console,
    }
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
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("traceparent="))
        })
        .unwrap_or_default()
        .to_string();
    log_line(
        lab,
        "ipxe-http-svc",
        &[
            "route=\"script\"",
            "status=200",
            &format!("mac={}", m.mac),
            "kind=\"installer\"",
            &format!("traceparent={tp}"),
        ],
    );
    log_line(lab, "ipxe-http-svc", &["/assets/vmlinuz", "status=200"]);
    if report.firmware == Firmware::Uefi {
        log_line(
            lab,
            "tftp-svc",
            &[
                "outcome=\"completed\"",
                "name=ipxe.efi",
                &format!("machine=\"{}\"", m.name),
            ],
        );
    }
}

/// One boot is one trace (issue 9), checked on the spans every service exported to the
/// lab's collector: the firmware's DHCP exchange starts it, the TFTP fetch of the binary
/// and iPXE's own DHCP exchange continue it, the `auto.ipxe` request continues iPXE's
/// DHCP reply, the kernel got that request's span as `traceparent=`, and the installer's
/// syslog line became that span's child. Also: a script request that names a trace and
/// asks for a machine the cache does not hold carries the trace into the registry call.
/// Stops every process (each flushes its spans on SIGTERM).
#[track_caller]
pub fn assert_one_boot_trace(lab: &mut Lab, m: &Machine, report: &BootReport) {
    use crate::otlp::dump;
    // A request for an unknown MAC, naming a trace: ipxe-http-svc asks the registry.
    let probe = "00-11111111111111111111111111111111-2222222222222222-01";
    let (status, _) = lab.http_get(
        crate::lab::HTTP_ADMIN,
        &format!("/02:00:00:00:99:99/auto.ipxe?traceparent={probe}"),
    );
    assert_eq!(status, 404);

    let spans = lab.stop_all_and_collect_spans();
    let all = dump(&spans);
    let dhcp: Vec<_> = spans
        .iter()
        .filter(|s| {
            s.service == "dhcp-svc" && s.name == "dhcp" && s.attr("mac") == Some(m.mac.as_str())
        })
        .collect();
    let firmware: Vec<_> = dhcp
        .iter()
        .filter(|s| s.attr("client") == Some("pxe"))
        .collect();
    let ipxe: Vec<_> = dhcp
        .iter()
        .filter(|s| s.attr("client") == Some("ipxe"))
        .collect();
    assert!(
        firmware.len() >= 2 && ipxe.len() >= 2,
        "expected the firmware's and iPXE's DISCOVER+REQUEST spans:\n{all}"
    );
    let trace = dhcp[0].trace_id.clone();
    assert!(
        dhcp.iter().all(|s| s.trace_id == trace),
        "the DHCP spans of one boot are one trace:\n{all}"
    );
    let roots: Vec<_> = dhcp
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .collect();
    assert_eq!(
        roots.len(),
        1,
        "exactly one root (the firmware's first DISCOVER):\n{all}"
    );
    assert_eq!(roots[0].attr("client"), Some("pxe"), "{all}");
    let dhcp_ids: Vec<&str> = dhcp.iter().map(|s| s.span_id.as_str()).collect();
    assert!(
        dhcp.iter()
            .all(|s| s.parent_span_id.is_empty() || dhcp_ids.contains(&s.parent_span_id.as_str())),
        "each DHCP span continues the previous one:\n{all}"
    );

    // The binary fetch: a child of a firmware DHCP reply.
    let firmware_ids: Vec<&str> = firmware.iter().map(|s| s.span_id.as_str()).collect();
    let tftp: Vec<_> = spans
        .iter()
        .filter(|s| {
            s.service == "tftp-svc"
                && s.name == "tftp"
                && s.attr("file")
                    .is_some_and(|f| f.starts_with("ipxe.efi-00-"))
        })
        .collect();
    assert!(!tftp.is_empty(), "no tftp span for ipxe.efi:\n{all}");
    for t in &tftp {
        assert_eq!(
            t.trace_id, trace,
            "the TFTP fetch joins the boot's trace:\n{all}"
        );
        assert!(
            firmware_ids.contains(&t.parent_span_id.as_str()),
            "the TFTP fetch is a child of the firmware's DHCP reply:\n{all}"
        );
    }

    // The script request: a child of iPXE's DHCP reply; its span went to the kernel.
    let ipxe_ids: Vec<&str> = ipxe.iter().map(|s| s.span_id.as_str()).collect();
    let script = spans
        .iter()
        .find(|s| {
            s.service == "ipxe-http-svc"
                && s.attr("route") == Some("script")
                && s.attr("status") == Some("200")
        })
        .unwrap_or_else(|| panic!("no span for the script request:\n{all}"));
    assert_eq!(script.trace_id, trace, "{all}");
    assert!(
        ipxe_ids.contains(&script.parent_span_id.as_str()),
        "the script request is a child of iPXE's DHCP reply:\n{all}"
    );
    let cmdline_tp = report
        .console
        .lines()
        .find(|l| l.contains("IRONBOOT-E2E-CMDLINE"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("traceparent="))
        })
        .unwrap_or_default();
    assert_eq!(
        cmdline_tp,
        script.traceparent(),
        "the kernel command line carries the script request's span:\n{all}"
    );

    // The installer's syslog line: a child of the script request's span.
    let line = spans
        .iter()
        .find(|s| s.service == "syslog-svc" && s.trace_id == trace)
        .unwrap_or_else(|| panic!("no syslog span in the boot's trace:\n{all}"));
    assert_eq!(line.parent_span_id, script.span_id, "{all}");
    assert_eq!(line.attr("mac"), Some(m.mac.as_str()), "{all}");

    // The registry lookup of the probe continued the probe request's span.
    let probe_trace = "11111111111111111111111111111111";
    let probe_http = spans
        .iter()
        .find(|s| s.service == "ipxe-http-svc" && s.trace_id == probe_trace)
        .unwrap_or_else(|| panic!("no span for the probe request:\n{all}"));
    assert_eq!(probe_http.parent_span_id, "2222222222222222", "{all}");
    let rpc = spans
        .iter()
        .find(|s| s.service == "hardware-api" && s.trace_id == probe_trace)
        .unwrap_or_else(|| {
            panic!("the registry call of the probe request carried no trace:\n{all}")
        });
    assert_eq!(rpc.parent_span_id, probe_http.span_id, "{all}");
    assert_eq!(
        rpc.attr("rpc"),
        Some("/hardware.v1.HardwareService/GetHardware"),
        "{all}"
    );
    println!(
        "one boot, one trace: {} spans in trace {trace}",
        spans.iter().filter(|s| s.trace_id == trace).count()
    );
}
