//! The ironboot end-to-end lab: QEMU machines with their own firmware (SeaBIOS + the NIC's
//! iPXE ROM, or OVMF's own PXE client) network-boot through the real ironboot binaries,
//! all the way into a Linux kernel whose init logs back to syslog-svc.
//!
//! Everything happens inside one network namespace per scenario: a bridge `br0` holding
//! the services' address and the VM's tap, the services bound inside it (the registry on
//! the namespace's own loopback), an IPv6 router advertisement source so iPXE does not wait
//! ≈ 14 s for IPv6 autoconfiguration, and nothing that reaches the host's interfaces.
//! Processes are killed by PID and the namespace deleted when the [`Lab`] drops — also when
//! a scenario fails, and then the logs of every process are printed and the lab directory
//! kept for reading.
//!
//! - [`bins`]: where the workspace binaries and the system tools are (namespaces, child
//!   processes owned by PID and HTTP from inside a namespace come from `ironboot-testkit`);
//! - [`initramfs`]: a busybox initramfs built by the test (own newc cpio writer);
//! - [`vm`]: QEMU machines (BIOS or UEFI), their serial console and boot times;
//! - [`lab`]: the namespace with its services, and what the scenarios assert on;
//! - [`otlp`]: the OTLP trace collector every lab's services export their spans to;
//! - [`byo`]: the bring-your-own-DHCP configuration templates in `deploy/byo-dhcp/`;
//! - [`compose`]: the stack in containers from `deploy/compose.yaml`, as operators run it;
//! - [`capture`]: which host interfaces DHCP crossed during a scenario;
//! - [`scenario`]: boot a machine into the initramfs and check every service saw it;
//! - [`lock`]: one scenario at a time on this machine (TCG VMs are CPU-bound).

pub mod bins;
pub mod byo;
pub mod capture;
pub mod compose;
pub mod initramfs;
pub mod lab;
pub mod lock;
pub mod otlp;
pub mod scenario;
pub mod vm;

pub use lab::{Lab, Machine};
pub use vm::{Firmware, Vm};
