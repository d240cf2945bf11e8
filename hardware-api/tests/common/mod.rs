//! Starts the real `hardware-api` binary on a loopback port and drives it with the real
//! `hwctl` binary and the typed client, as an operator and a boot service would.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ironboot_proto::client::{HardwareClient, RegistryArgs};

pub const WRITE_TOKEN: &str = "write-token-0123456789abcdef";
pub const READ_TOKEN: &str = "read-token-0123456789abcdef";

pub struct Registry {
    child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    pub log: Arc<Mutex<String>>,
    extra_args: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl Registry {
    /// A registry with a fresh durable store in a temporary directory.
    pub fn start() -> Registry {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Registry {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut r = Self::spawn(&dir, "127.0.0.1:0", extra);
        r._tmp = Some(tmp);
        r
    }

    fn spawn(data_dir: &Path, listen: &str, extra: &[&str]) -> Registry {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hardware-api"));
        cmd.args(["--listen", listen, "--store", "redb", "--data-dir"])
            .arg(data_dir)
            .args(["--log-format", "json", "--bookmark-interval", "1s"])
            .args(extra)
            .env(
                "HARDWARE_API_TOKENS",
                format!("write:{WRITE_TOKEN},read:{READ_TOKEN}"),
            )
            // Tests run registries side by side: any free port (read back by admin_addr).
            .env("HARDWARE_API_ADMIN_LISTEN", "127.0.0.1:0")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start hardware-api");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("\"listening\"") {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                    if let Some(a) = v.get("addr").and_then(|a| a.as_str()) {
                        let _ = tx.send(a.to_string());
                    }
                }
                log2.lock().unwrap().push_str(&line);
                log2.lock().unwrap().push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "hardware-api did not start listening; log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Registry {
            child: Some(child),
            addr,
            data_dir: data_dir.to_path_buf(),
            log,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: None,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The admin listener's address, from the registry's "admin listener" log line.
    pub fn admin_addr(&self) -> std::net::SocketAddr {
        let log = self.log.lock().unwrap().clone();
        log.lines()
            .filter(|l| l.contains("admin listener"))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get("addr")?.as_str()?.parse().ok())
            .next_back()
            .unwrap_or_else(|| panic!("no admin listener in the log:\n{log}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no shutdown path runs, as in a power cut of the process.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status and how long it took.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let mut c = self.child.take().expect("running");
        let t = Instant::now();
        // SAFETY-free: use the kill(1) command on our own child's PID.
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.try_wait().expect("wait") {
                return (st, t.elapsed());
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("hardware-api did not exit within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the registry again on the same address and data directory.
    pub fn restart(&mut self) {
        self.kill9();
        let extra: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The port can linger for a moment after the kill.
            let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Self::spawn(&self.data_dir, &self.addr, &extra)
            }));
            match attempt {
                Ok(mut r) => {
                    self.child = r.child.take();
                    self.log = r.log.clone();
                    return;
                }
                Err(e) if Instant::now() > deadline => std::panic::resume_unwind(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    pub fn args(&self, token: Option<&str>) -> RegistryArgs {
        RegistryArgs::new(self.endpoint(), token.map(str::to_string))
    }

    pub async fn client(&self, token: Option<&str>) -> HardwareClient {
        self.args(token).connect().await.expect("connect")
    }

    pub fn hwctl(&self, args: &[&str]) -> Out {
        self.hwctl_as(Some(WRITE_TOKEN), args, None)
    }

    pub fn hwctl_stdin(&self, args: &[&str], stdin: &str) -> Out {
        self.hwctl_as(Some(WRITE_TOKEN), args, Some(stdin))
    }

    pub fn hwctl_as(&self, token: Option<&str>, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hwctl"));
        cmd.args(args)
            .env("IRONBOOT_REGISTRY", self.endpoint())
            .env_remove("IRONBOOT_REGISTRY_TOKEN");
        if let Some(t) = token {
            cmd.env("IRONBOOT_REGISTRY_TOKEN", t);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run hwctl");
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        } else {
            drop(child.stdin.take());
        }
        Out(child.wait_with_output().expect("hwctl output"))
    }
}

impl Registry {
    /// Runs a long-lived hwctl command (watch), returns its first `n` stdout lines, and
    /// kills it (by its PID).
    pub fn hwctl_watch(&self, args: &[&str], n: usize) -> Vec<String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hwctl"))
            .args(args)
            .env("IRONBOOT_REGISTRY", self.endpoint())
            .env("IRONBOOT_REGISTRY_TOKEN", READ_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run hwctl");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        while lines.len() < n {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(l) => lines.push(l),
                Err(_) => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        lines
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// hwctl's result with readable assertions.
pub struct Out(pub Output);

impl Out {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    #[track_caller]
    pub fn ok(&self) -> String {
        assert!(
            self.0.status.success(),
            "hwctl failed: {}\nstdout: {}",
            self.stderr(),
            self.stdout()
        );
        self.stdout()
    }
    #[track_caller]
    pub fn fails(&self) -> String {
        assert!(
            !self.0.status.success(),
            "hwctl should have failed; stdout: {}",
            self.stdout()
        );
        self.stderr()
    }
}

/// A machine in our YAML form.
pub fn machine_yaml(name: &str, mac: &str, ip: &str) -> String {
    format!(
        "name: {name}\ninterfaces:\n  - mac: {mac}\n    dhcp: {{ip: {ip}, netmask: 255.255.255.0, gateway: 10.0.0.1, hostname: {name}}}\n"
    )
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}
