//! Network namespaces and links owned by a test.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Runs a command and fails the test, with its stderr, when it does not succeed.
#[track_caller]
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip ARGS…` (iproute2), failing the test when it fails.
#[track_caller]
pub fn ip(args: &[&str]) {
    let mut v = vec!["ip"];
    v.extend_from_slice(args);
    sh(&v);
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A short tag unique on this machine while this process lives (PID and a counter):
/// for names of namespaces and interfaces (interface names have at most 15 characters).
pub fn unique_tag() -> String {
    format!(
        "{}x{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A network namespace with its loopback up, deleted on drop (with every interface in
/// it: veth ends, bridges, taps).
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates the namespace `name`: the caller makes the name unique.
    #[track_caller]
    pub fn new(name: impl Into<String>) -> Netns {
        let ns = Netns { name: name.into() };
        ip(&["netns", "add", &ns.name]);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS…`.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) {
        let mut v = vec!["-n", &self.name];
        v.extend_from_slice(args);
        ip(&v);
    }

    /// `program` run inside the namespace (`ip netns exec` execs it: the child's PID is
    /// the program's).
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `f` on a thread that entered this namespace: sockets it opens live there for
    /// the rest of their life.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("setns");
                f()
            })
            .join()
            .expect("thread in namespace panicked")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A link in the host's namespace (one end of a veth pair the test created), deleted on
/// drop; deleting one end removes the pair.
pub struct HostLink(pub String);

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.0])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
