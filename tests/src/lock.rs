//! One scenario at a time on this machine.
//!
//! A TCG virtual machine keeps one core busy; two at once on a 2-core CI machine double
//! every boot time and make timeouts flaky. Scenarios live in several test executables
//! (cargo runs those one after another) and several tests per executable (run on
//! parallel threads), so the lock is a file lock: it also holds across processes, e.g.
//! a demo started while the suite runs.

use std::fs::File;

use nix::fcntl::{Flock, FlockArg};

pub struct ScenarioLock {
    _lock: Flock<File>,
}

/// Blocks until no other scenario runs.
pub fn acquire() -> ScenarioLock {
    let path = std::env::temp_dir().join("ironboot-e2e.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("locking {}: {e}", path.display()));
    ScenarioLock { _lock: lock }
}
