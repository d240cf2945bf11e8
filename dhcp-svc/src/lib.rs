//! `dhcp-svc`: DHCPv4 for network boot.
//!
//! It hands a booting machine its reserved address and tells its firmware, then its
//! iPXE, where to go next — or, in proxy mode beside an existing DHCP server, only the
//! latter. The crate reads top-down:
//!
//! - [`packet`]: the wire format (a never-panicking decoder, an encoder that respects
//!   option 57 and spills into `file`/`sname` with option overload);
//! - [`netboot`]: which kind of client is asking and which binary or script it gets;
//! - [`decide`]: RFC 2131 states and both modes as one pure function;
//! - [`boot_trace`]: which trace a netboot packet belongs to (one per boot);
//! - [`socket`]: UDP with `IP_PKTINFO` (ingress interface, reply source) and
//!   `SO_BINDTODEVICE`;
//! - [`seen`]: MACs that asked but are not registered, for the operator;
//! - [`server`]: worker threads, the registry cache (which keeps each MAC's reservation
//!   worked out), metrics, shutdown.

pub mod boot_trace;
pub mod config;
pub mod decide;
pub mod netboot;
pub mod packet;
pub mod seen;
pub mod server;
pub mod socket;
