//! QEMU machines with their own firmware, plain emulation (TCG: under KVM iPXE hangs
//! and OVMF stops with an emulation failure on these machines), serial console to a file,
//! `-no-reboot` so a machine that powers off or gives up ends the process.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bins;
use ironboot_testkit::{Netns, Proc};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS with the e1000's iPXE option ROM (Debian `ipxe-qemu`): the first DHCP
    /// request already carries user class `iPXE`.
    Bios,
    /// OVMF (q35, secure boot off) with virtio-net and no option ROM, so the firmware's
    /// own PXE client runs: arch 7, no user class → TFTP `ipxe.efi` → iPXE → script.
    Uefi,
}

impl Firmware {
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "BIOS",
            Firmware::Uefi => "UEFI",
        }
    }
}

pub struct VmSpec<'a> {
    pub firmware: Firmware,
    pub mac: &'a str,
    /// Tap device inside `ns`, already on the bridge.
    pub tap: &'a str,
    pub dir: &'a Path,
    pub name: &'a str,
}

pub struct Vm {
    pub proc: Proc,
    pub console: PathBuf,
    pub started: Instant,
    pub firmware: Firmware,
}

impl Vm {
    #[track_caller]
    pub fn start(ns: &Netns, spec: &VmSpec<'_>) -> Vm {
        let qemu = bins::system("/usr/bin/qemu-system-x86_64", "qemu-system-x86");
        let console = spec.dir.join(format!("{}-console.log", spec.name));
        let _ = std::fs::remove_file(&console);
        let mut cmd = ns.cmd(&qemu);
        cmd.args([
            "-name", spec.name, "-accel", "tcg", "-m", "512", "-smp", "1",
        ])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .args([
            "-netdev",
            &format!("tap,id=n0,ifname={},script=no,downscript=no", spec.tap),
        ]);
        match spec.firmware {
            Firmware::Bios => {
                bins::system("/usr/lib/ipxe/qemu/efi-e1000.rom", "ipxe-qemu");
                // SeaBIOS's serial console (fw_cfg etc/sercon-port, a little-endian
                // integer): the iPXE ROM prints through the BIOS, so without it iPXE's
                // output would reach the VGA screen only.
                let sercon = spec.dir.join("sercon-port");
                std::fs::write(&sercon, 0x3f8u16.to_le_bytes()).expect("write sercon-port");
                cmd.args([
                    "-machine",
                    "pc",
                    "-boot",
                    "order=n",
                    "-device",
                    &format!("e1000,netdev=n0,mac={}", spec.mac),
                ])
                .arg("-fw_cfg")
                .arg(format!("name=etc/sercon-port,file={}", sercon.display()));
            }
            Firmware::Uefi => {
                let code = bins::system("/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf");
                let vars_src = bins::system("/usr/share/OVMF/OVMF_VARS_4M.fd", "ovmf");
                let vars = spec.dir.join(format!("{}-OVMF_VARS.fd", spec.name));
                std::fs::copy(&vars_src, &vars).expect("copy OVMF_VARS");
                cmd.args(["-machine", "q35"])
                    .arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,unit=0,readonly=on,file={}",
                        code.display()
                    ))
                    .arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,unit=1,file={}",
                        vars.display()
                    ))
                    .args([
                        "-device",
                        &format!("virtio-net-pci,netdev=n0,mac={},romfile=", spec.mac),
                    ]);
            }
        }
        let log = spec.dir.join(format!("{}-qemu.log", spec.name));
        let proc = Proc::spawn_logged(cmd, &format!("qemu ({})", spec.name), &log);
        Vm {
            proc,
            console,
            started: Instant::now(),
            firmware: spec.firmware,
        }
    }

    pub fn console_text(&self) -> String {
        std::fs::read(&self.console)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the console shows `needle`: the time since start, or `Err` with why
    /// (timeout, or QEMU exited first).
    pub fn wait_console(&mut self, needle: &str, timeout: Duration) -> Result<Duration, String> {
        self.wait_console_unless(needle, &[], timeout)
    }

    /// As [`Vm::wait_console`], but gives up at once when the console shows one of
    /// `failures` first (e.g. iPXE's "Nothing to boot"), instead of waiting out the timeout.
    pub fn wait_console_unless(
        &mut self,
        needle: &str,
        failures: &[&str],
        timeout: Duration,
    ) -> Result<Duration, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.console_text();
            if text.contains(needle) {
                return Ok(self.started.elapsed());
            }
            if let Some(f) = failures.iter().find(|f| text.contains(**f)) {
                return Err(format!("the console showed {f:?} before {needle:?}"));
            }
            if let Some(st) = self.proc.exited() {
                // One last look: the console file may have been written just before exit.
                if self.console_text().contains(needle) {
                    return Ok(self.started.elapsed());
                }
                return Err(format!(
                    "QEMU exited ({st}) before the console showed {needle:?}; qemu log: {}",
                    self.proc.log_text()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the console did not show {needle:?} within {timeout:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Time since start at which the console first showed `needle`, measured after the
    /// fact is not possible: call [`Vm::wait_console`] for milestones in order.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Duration, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.proc.exited().is_some() {
                return Ok(self.started.elapsed());
            }
            if Instant::now() >= deadline {
                return Err(format!("QEMU still running after {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill(&mut self) {
        self.proc.stop(Duration::from_millis(500));
    }
}
