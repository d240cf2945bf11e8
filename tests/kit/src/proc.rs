//! Child processes owned by PID: killed and reaped when dropped, never found by name.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Proc {
    pub child: Child,
    pub what: String,
    /// stdout + stderr of the process, when started with [`Proc::spawn_logged`].
    pub log: Option<PathBuf>,
}

impl Proc {
    /// Starts `cmd` as it is set up (its stdio included).
    #[track_caller]
    pub fn spawn(mut cmd: Command, what: &str) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what} ({cmd:?}): {e}"));
        Proc::adopt(child, what)
    }

    /// Starts `cmd` with stdout and stderr appended to `log`.
    #[track_caller]
    pub fn spawn_logged(mut cmd: Command, what: &str, log: &Path) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = out.try_clone().expect("clone log fd");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let mut p = Proc::spawn(cmd, what);
        p.log = Some(log.to_path_buf());
        p
    }

    /// Takes ownership of a child started elsewhere.
    pub fn adopt(child: Child, what: &str) -> Proc {
        Proc {
            child,
            what: what.to_string(),
            log: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// What it logged so far (empty without a log).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default()
    }

    /// Asks it to stop (SIGTERM), then kills it if it has not within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        // SAFETY: signalling our own child by its PID (not yet reaped, so not reused).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
