//! The stack as operators run it: images made by `deploy/images/build` from
//! `deploy/Dockerfile`, brought up from `deploy/compose.yaml` by `deploy/ironboot-compose`
//! with a copy of `deploy/compose/.env` whose settings point at a lab's uplink, and token
//! files made by `deploy/compose/make-secrets`. Each stack is its own compose project;
//! dropping it takes the project down with its volume (and first copies every
//! container's log into the lab directory, so a failing scenario prints them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::bins;
use crate::lab::{Lab, SERVER_IP};
use ironboot_testkit::unique_tag;

/// The tag of the images the suite builds (from its debug binaries), so an operator's
/// own `dev` images on the same engine are left alone.
pub const IMAGE_VERSION: &str = "e2e";

/// Builds the five images as `localhost/ironboot/<service>:<version>` with
/// `deploy/images/build` from the debug binaries (once per version in this process);
/// prints the script's size lines.
#[track_caller]
pub fn build_images(version: &str) {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.iter().any(|v| v == version) {
        return;
    }
    let script = bins::workspace_root().join("deploy/images/build");
    let out = Command::new(&script)
        .env("IRONBOOT_VERSION", version)
        .env("IRONBOOT_BINARIES", "debug")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "deploy/images/build failed:\n{text}");
    for line in text.lines().filter(|l| l.starts_with("images: ")) {
        println!("{line}");
    }
    built.push(version.to_string());
}

pub struct Stack {
    project: String,
    env_file: PathBuf,
    log_dir: PathBuf,
    version: String,
    /// The profiles of the last `up`, given to every later command.
    profiles: Vec<String>,
}

impl Stack {
    /// Makes the tokens and the settings for a stack serving `lab`'s LAN through its
    /// uplink (dhcp-svc on that interface, ports published on [`SERVER_IP`]), assets
    /// from `assets`; gives the lab the operator token. Nothing is started yet.
    #[track_caller]
    pub fn new(lab: &mut Lab, assets: &Path) -> Stack {
        let uplink = lab
            .uplink()
            .expect("a compose stack needs Lab::with_host_uplink")
            .to_string();
        let root = bins::workspace_root();
        let secrets = lab.dir.join("secrets");
        run_ok(
            Command::new(root.join("deploy/compose/make-secrets"))
                .env("IRONBOOT_SECRETS_DIR", &secrets),
        );
        let token =
            std::fs::read_to_string(secrets.join("operator.token")).expect("operator.token");
        lab.set_registry_token(token.trim());

        let project = format!("ibe{}", unique_tag());
        let shipped =
            std::fs::read_to_string(root.join("deploy/compose/.env")).expect("deploy/compose/.env");
        let settings = [
            ("COMPOSE_PROJECT_NAME", project.clone()),
            ("IRONBOOT_ADVERTISE_IP", SERVER_IP.to_string()),
            ("IRONBOOT_INTERFACE", uplink),
            ("IRONBOOT_ASSETS", assets.display().to_string()),
            ("IRONBOOT_SECRETS_DIR", secrets.display().to_string()),
            // The scenarios' log assertions read the human format.
            ("IRONBOOT_LOG_FORMAT", "human".to_string()),
            ("IRONBOOT_VERSION", IMAGE_VERSION.to_string()),
        ];
        let env = with_settings(&shipped, &settings);
        let env_file = lab.dir.join("compose.env");
        std::fs::write(&env_file, env).expect("write compose.env");
        Stack {
            project,
            env_file,
            log_dir: lab.dir.clone(),
            version: IMAGE_VERSION.to_string(),
            profiles: Vec::new(),
        }
    }

    /// The image version later commands run (the shell's IRONBOOT_VERSION overrides
    /// the file's, as an operator's would).
    pub fn set_version(&mut self, version: &str) {
        self.version = version.to_string();
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(bins::workspace_root().join("deploy/ironboot-compose"));
        c.env("IRONBOOT_ENV_FILE", &self.env_file)
            .env("IRONBOOT_VERSION", &self.version)
            .env_remove("COMPOSE_PROJECT_NAME")
            .env_remove("COMPOSE_PROFILES");
        for p in &self.profiles {
            c.args(["--profile", p]);
        }
        c
    }

    /// `deploy/ironboot-compose ARGS…`: its stdout; panics with its output on failure.
    #[track_caller]
    pub fn compose(&self, args: &[&str]) -> String {
        let mut c = self.cmd();
        c.args(args);
        run_ok(&mut c)
    }

    /// `--profile P … up -d`, then waits until every started service is healthy.
    #[track_caller]
    pub fn up(&mut self, profiles: &[&str]) {
        self.profiles = profiles.iter().map(|p| p.to_string()).collect();
        self.compose(&["up", "-d"]);
        self.wait_healthy(Duration::from_secs(90));
    }

    /// The project's containers as `(id, service)`, stopped ones included.
    pub fn containers(&self) -> Vec<(String, String)> {
        let out = Command::new("docker")
            .args([
                "ps",
                "-a",
                "--filter",
                &format!("label=com.docker.compose.project={}", self.project),
            ])
            .args([
                "--format",
                "{{.ID}} {{.Label \"com.docker.compose.service\"}}",
            ])
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                l.split_once(' ')
                    .map(|(id, s)| (id.to_string(), s.to_string()))
            })
            .collect()
    }

    /// The running container of `service`.
    #[track_caller]
    pub fn container(&self, service: &str) -> String {
        let id = self.compose(&["ps", "-q", service]).trim().to_string();
        assert!(
            !id.is_empty(),
            "no container for {service} in project {}",
            self.project
        );
        id
    }

    /// Waits until every running container of the project reports healthy.
    #[track_caller]
    pub fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let states: Vec<(String, String)> = self
                .containers()
                .into_iter()
                .map(|(id, svc)| {
                    (
                        svc,
                        docker_inspect(
                            &id,
                            "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}",
                        ),
                    )
                })
                .collect();
            if !states.is_empty() && states.iter().all(|(_, s)| s == "running/healthy") {
                return;
            }
            if Instant::now() >= deadline {
                self.collect_logs();
                panic!(
                    "stack {} not healthy within {timeout:?}: {states:?}",
                    self.project
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `docker inspect -f FORMAT` of `service`'s container.
    pub fn inspect(&self, service: &str, format: &str) -> String {
        docker_inspect(&self.container(service), format)
    }

    /// Writes each container's log (stdout and stderr) to `<lab dir>/<service>.log`,
    /// where the scenario assertions and the failure report read them.
    pub fn collect_logs(&self) {
        for (id, service) in self.containers() {
            let out = Command::new("docker").args(["logs", &id]).output();
            if let Ok(out) = out {
                let mut text = out.stdout;
                text.extend_from_slice(&out.stderr);
                let _ = std::fs::write(self.log_dir.join(format!("{service}.log")), text);
            }
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.collect_logs();
        self.profiles = vec!["all".into(), "import".into()];
        let _ = self
            .cmd()
            .args(["down", "-v", "--remove-orphans", "--timeout", "5"])
            .output();
    }
}

/// `text` (an env file) with each `KEY=` line of `settings` replaced; panics when the
/// file has no such line (the shipped file must keep offering the setting).
#[track_caller]
fn with_settings(text: &str, settings: &[(&str, String)]) -> String {
    let mut out = String::new();
    let mut seen = Vec::new();
    for line in text.lines() {
        match settings
            .iter()
            .find(|(k, _)| line.starts_with(&format!("{k}=")))
        {
            Some((k, v)) => {
                seen.push(*k);
                out.push_str(&format!("{k}={v}\n"));
            }
            None => out.push_str(&format!("{line}\n")),
        }
    }
    for (k, _) in settings {
        assert!(seen.contains(k), "deploy/compose/.env has no {k}= line");
    }
    out
}

fn docker_inspect(id: &str, format: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "-f", format, id])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[cfg(test)]
mod tests {
    use super::with_settings;

    #[test]
    fn settings_replace_their_lines_and_keep_the_rest() {
        let text = "# c\nA=1\nB=\nC=3\n";
        assert_eq!(
            with_settings(text, &[("B", "x".into())]),
            "# c\nA=1\nB=x\nC=3\n"
        );
    }

    #[test]
    #[should_panic(expected = "no D= line")]
    fn a_setting_the_file_lacks_fails() {
        with_settings("A=1\n", &[("D", "x".into())]);
    }
}
