//! The installer stand-in: Debian's kernel and a busybox initramfs built by the test.
//!
//! Its `/init` does what an installer OS does first on a netbooted machine: loads the
//! NIC driver (Debian builds e1000 and virtio-net as modules, so the archive carries them
//! and loads them in `modules.dep` order), reads `syslog_host`, `worker_id` and
//! `traceparent` from the kernel command line the iPXE script passed, gets an address
//! with `udhcpc` from the same DHCP server, logs a line to `syslog_host` (busybox
//! `syslogd -R` forwarding `logger`: this busybox's `logger` has no `-n` and its `nc`
//! no UDP), prints a marker on the console and powers off.
//!
//! The archive is written by a small newc cpio writer here (no root needed for the
//! `/dev/console` node the kernel opens before running `/init`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::bins;

/// What `/init` prints once the syslog line is sent, before powering off.
pub const DONE_MARKER: &str = "IRONBOOT-E2E-DONE";
/// Text of the syslog line (followed by `worker_id=… traceparent=…`).
pub const SYSLOG_MARKER: &str = "IRONBOOT-E2E-SYSLOG";
/// Printed first by `/init`: the kernel ran the initramfs.
pub const INIT_MARKER: &str = "IRONBOOT-E2E-INIT";

/// NIC drivers the lab's VMs need (e1000 for BIOS, virtio-net for UEFI).
const NIC_MODULES: &[&str] = &["e1000", "virtio_pci", "virtio_net"];

pub struct Kernel {
    pub version: String,
    pub vmlinuz: PathBuf,
    pub modules: PathBuf,
}

/// The installed Debian kernel (`linux-image-amd64`) whose modules are present.
#[track_caller]
pub fn kernel() -> Kernel {
    let mut found = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/boot") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(version) = name.strip_prefix("vmlinuz-") {
                let modules = PathBuf::from("/lib/modules").join(version);
                if modules.join("modules.dep").is_file() {
                    found.push(Kernel {
                        version: version.to_string(),
                        vmlinuz: e.path(),
                        modules,
                    });
                }
            }
        }
    }
    found.sort_by(|a, b| a.version.cmp(&b.version));
    found.pop().expect("no /boot/vmlinuz-* with its /lib/modules/<version>/modules.dep: install the Debian package `linux-image-amd64`")
}

/// Module files (relative to the modules directory) for `wanted` and their
/// dependencies, each after everything it depends on.
pub fn module_load_order(modules_dep: &str, wanted: &[&str]) -> Vec<String> {
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for line in modules_dep.lines() {
        let Some((module, rest)) = line.split_once(':') else {
            continue;
        };
        let name = module_name(module);
        by_name.insert(name, module.to_string());
        deps.insert(
            module.to_string(),
            rest.split_whitespace().map(str::to_string).collect(),
        );
    }
    fn visit(m: &str, deps: &BTreeMap<String, Vec<String>>, out: &mut Vec<String>) {
        if out.iter().any(|o| o == m) {
            return;
        }
        // modules.dep lists a module's dependencies so that the last is loaded first.
        for d in deps.get(m).into_iter().flatten().rev() {
            visit(d, deps, out);
        }
        out.push(m.to_string());
    }
    let mut out = Vec::new();
    for w in wanted {
        let m = by_name.get(*w).unwrap_or_else(|| {
            panic!("module {w} not in modules.dep (is it built in? then drop it from NIC_MODULES)")
        });
        visit(m, &deps, &mut out);
    }
    out
}

fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split('.').next().unwrap_or(file).replace('-', "_")
}

/// The `/init` script.
fn init_script(modules: &[String]) -> String {
    let insmods: String = modules
        .iter()
        .map(|m| {
            format!(
                "insmod /lib/modules/{} || echo \"insmod {} failed\"\n",
                m.rsplit('/').next().unwrap_or(m),
                m
            )
        })
        .collect();
    format!(
        r#"#!/bin/sh
# ironboot end-to-end initramfs: network up, one syslog line home, power off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "{INIT_MARKER}"
{insmods}
for word in $(cat /proc/cmdline); do
  case "$word" in
    syslog_host=*) SYSLOG_HOST="${{word#syslog_host=}}" ;;
    worker_id=*) WORKER_ID="${{word#worker_id=}}" ;;
    traceparent=*) TRACEPARENT="${{word#traceparent=}}" ;;
  esac
done
echo "IRONBOOT-E2E-CMDLINE syslog_host=$SYSLOG_HOST worker_id=$WORKER_ID traceparent=$TRACEPARENT"
IFACE=
for i in 1 2 3 4 5 6 7 8 9 10; do
  for d in /sys/class/net/*; do
    n="${{d##*/}}"
    [ "$n" = lo ] || {{ IFACE="$n"; break; }}
  done
  [ -n "$IFACE" ] && break
  sleep 0.5
done
ip link set lo up
ip link set "$IFACE" up
# The emulated NIC reports carrier a moment after it is up: DISCOVERs sent before that are lost.
for i in $(seq 1 50); do
  [ "$(cat /sys/class/net/$IFACE/carrier 2>/dev/null)" = 1 ] && break
  sleep 0.1
done
udhcpc -i "$IFACE" -f -q -n -t 10 -T 1 -A 1 -s /etc/udhcpc.script || echo "IRONBOOT-E2E-NO-LEASE"
ADDR=$(ip -4 -o addr show dev "$IFACE" | awk '{{print $4}}')
echo "IRONBOOT-E2E-ADDR iface=$IFACE addr=$ADDR"
case "$SYSLOG_HOST" in
  *:*) REMOTE="$SYSLOG_HOST" ;;
  ?*) REMOTE="$SYSLOG_HOST:514" ;;
esac
if [ -n "$REMOTE" ]; then
  syslogd -n -R "$REMOTE" -O /dev/null &
  sleep 0.5
  logger -t ironboot-e2e "{SYSLOG_MARKER} worker_id=$WORKER_ID traceparent=$TRACEPARENT"
  sleep 1
fi
echo "{DONE_MARKER} addr=$ADDR"
sleep 0.2
poweroff -f
"#
    )
}

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# busybox udhcpc hook: apply the lease to the interface.
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
    echo "udhcpc: bound $ip/${mask} from ${serverid:-?}"
    ;;
esac
exit 0
"#;

/// Writes the initramfs for `kernel` to `out`.
#[track_caller]
pub fn build(kernel: &Kernel, out: &Path) {
    let busybox = bins::system("/bin/busybox", "busybox-static");
    let dep = std::fs::read_to_string(kernel.modules.join("modules.dep")).expect("modules.dep");
    let order = module_load_order(&dep, NIC_MODULES);
    let mut w = Cpio::default();
    for d in [
        "bin",
        "dev",
        "etc",
        "lib",
        "lib/modules",
        "proc",
        "sys",
        "tmp",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
    ] {
        w.dir(d);
    }
    w.char_dev("dev/console", 5, 1);
    w.char_dev("dev/null", 1, 3);
    w.file(
        "bin/busybox",
        0o755,
        &std::fs::read(&busybox).expect("read busybox"),
    );
    w.symlink("bin/sh", "busybox");
    w.file("init", 0o755, init_script(&order).as_bytes());
    w.file("etc/udhcpc.script", 0o755, UDHCPC_SCRIPT.as_bytes());
    for m in &order {
        let data = std::fs::read(kernel.modules.join(m)).unwrap_or_else(|e| panic!("{m}: {e}"));
        assert!(
            m.ends_with(".ko"),
            "{m}: compressed modules are not supported by busybox insmod here"
        );
        w.file(
            &format!("lib/modules/{}", m.rsplit('/').next().unwrap_or(m)),
            0o644,
            &data,
        );
    }
    // gzip (busybox's own): a third of the bytes for iPXE to fetch through an emulated
    // NIC, which is the slow part of the boot under TCG.
    let mut gz = std::process::Command::new(&busybox)
        .args(["gzip", "-9", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("busybox gzip");
    let mut stdin = gz.stdin.take().expect("gzip stdin");
    let data = w.finish();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out_data = gz.wait_with_output().expect("busybox gzip");
    writer.join().expect("gzip writer").expect("write to gzip");
    assert!(out_data.status.success(), "busybox gzip failed");
    std::fs::write(out, out_data.stdout).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}

/// A newc ("070701") cpio archive, the format the kernel unpacks as initramfs.
#[derive(Default)]
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            let _ = write!(self.buf, "{f:08x}");
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[], (0, 0));
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, data, (0, 0));
    }

    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120777, target.as_bytes(), (0, 0));
    }

    pub fn char_dev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020600, &[], (major, minor));
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        // The kernel reads the initramfs in 512-byte blocks' worth without complaint
        // either way; pad like cpio(1) does.
        while !self.buf.len().is_multiple_of(512) {
            self.buf.push(0);
        }
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_order_puts_dependencies_first() {
        let dep = "kernel/drivers/virtio/virtio.ko:\n\
                   kernel/drivers/virtio/virtio_ring.ko:\n\
                   kernel/net/core/failover.ko:\n\
                   kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
                   kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
                   kernel/drivers/net/ethernet/intel/e1000/e1000.ko:\n";
        let order = module_load_order(dep, &["e1000", "virtio_net"]);
        let pos = |m: &str| order.iter().position(|o| o.ends_with(m)).unwrap();
        assert_eq!(order.len(), 6);
        assert!(pos("/failover.ko") < pos("net_failover.ko"));
        assert!(pos("net_failover.ko") < pos("virtio_net.ko"));
        assert!(pos("virtio.ko") < pos("virtio_net.ko"));
        assert!(pos("virtio_ring.ko") < pos("virtio_net.ko"));
    }

    #[test]
    fn cpio_is_what_cpio_reads() {
        let mut w = Cpio::default();
        w.dir("etc");
        w.file("etc/hello", 0o644, b"hi\n");
        w.symlink("etc/link", "hello");
        let data = w.finish();
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-t", "-v"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn();
        // cpio(1) is an independent reader when installed; skip the cross-check otherwise.
        if let Ok(ref mut c) = child {
            c.stdin.take().unwrap().write_all(&data).unwrap();
            let out = child.unwrap().wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("etc/hello") && text.contains("etc/link -> hello"),
                "{text}"
            );
        }
    }
}
