//! Test plumbing shared by the services' integration tests and the end-to-end lab (one
//! place for it, so every suite cleans up the same way):
//!
//! - [`Netns`] and [`HostLink`]: network namespaces and host-side links a test creates,
//!   deleted on drop — also when the test fails. Names come from the caller, who makes
//!   them unique ([`unique_tag`]); nothing is ever found or deleted by pattern.
//! - [`Proc`]: a child process killed and reaped by PID on drop.
//! - [`need`], [`require_root`], [`sh`], [`ip`]: preconditions that fail loudly, and
//!   commands whose failure fails the test with their stderr.
//! - [`http_get`]: a GET to an admin endpoint; [`metrics`]: `/metrics` parsed
//!   ([`metrics::Scrape`]), and a service binary started and waited for until its
//!   `/healthz` answers.

mod http;
pub mod metrics;
mod netns;
mod proc;

pub use http::http_get;
pub use netns::{HostLink, Netns, ip, sh, unique_tag};
pub use proc::Proc;

use std::path::{Path, PathBuf};

/// The path of `bin` (PATH, then /usr/sbin and /sbin); panics naming it when it is not
/// installed.
pub fn need(bin: &str) -> PathBuf {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
    {
        let p = Path::new(dir).join(bin);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{bin}` is required by this test and is not installed (see tests/system-packages.txt)");
}

/// Panics unless this process runs as root (namespaces and links need it; CI runs the
/// tests as root).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert!(
        uid == 0,
        "this test creates network namespaces and needs root (run the suite as root, as CI does)"
    );
}
