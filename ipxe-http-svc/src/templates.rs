//! The script templates: built into the binary, overridable per name from a directory.
//!
//! Operators change boot scripts more often than code (another installer, a serial
//! console, a menu), so the scripts are minijinja templates rather than strings built
//! in Rust. The defaults are the files in `ipxe-http-svc/templates/`, compiled in; an
//! operator copies the one to change into `--templates-dir` and edits it. Templates are
//! checked at start (and by `--check-config`) by rendering them with sample values:
//! a syntax error, an unknown variable (undefined values are errors, never empty
//! strings) or output that is not an iPXE script stops the service before a machine
//! sees it.

use std::path::{Path, PathBuf};

use minijinja::{AutoEscape, Environment, UndefinedBehavior, context};

use crate::script::{ChainVars, InstallerVars};

/// The installer (Hook by default).
pub const INSTALLER: &str = "installer.ipxe";
/// `netboot.ipxe.url`: chain to the machine's own script.
pub const CHAIN: &str = "chain.ipxe";
/// Bodies of refusals and errors.
pub const REFUSED: &str = "refused.ipxe";

/// Every template name, with its built-in source.
pub const BUILTIN: [(&str, &str); 3] = [
    (INSTALLER, include_str!("../templates/installer.ipxe")),
    (CHAIN, include_str!("../templates/chain.ipxe")),
    (REFUSED, include_str!("../templates/refused.ipxe")),
];

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("--templates-dir {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    #[error("template {name} ({origin}): {message}")]
    Invalid {
        name: String,
        origin: String,
        message: String,
    },
    #[error("rendering {name}: {message}")]
    Render { name: &'static str, message: String },
}

/// Where a template came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Builtin => f.write_str("built in"),
            Origin::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The loaded, checked templates.
pub struct Templates {
    env: Environment<'static>,
    origins: Vec<(&'static str, Origin)>,
    /// Files in the directory that are not template names (typos), for warnings.
    pub ignored: Vec<PathBuf>,
}

fn error_text(e: &minijinja::Error) -> String {
    use std::fmt::Write;
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let _ = write!(s, ": {c}");
        cur = c.source();
    }
    s
}

impl Templates {
    /// Built-in templates, overridden by same-named files in `dir`.
    pub fn load(dir: Option<&Path>) -> Result<Templates, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| TemplateError::Invalid {
                name: "*".into(),
                origin: "syntax".into(),
                message: error_text(&e),
            })?;
        env.set_syntax(syntax);
        let mut origins = Vec::new();
        let mut ignored = Vec::new();
        if let Some(d) = dir {
            let rd = std::fs::read_dir(d).map_err(|e| TemplateError::Dir(d.to_path_buf(), e))?;
            for entry in rd.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !BUILTIN.iter().any(|(n, _)| *n == name) {
                    ignored.push(entry.path());
                }
            }
            ignored.sort();
        }
        for (name, builtin) in BUILTIN {
            let (source, origin) = match dir.map(|d| d.join(name)) {
                Some(p) if p.exists() => {
                    let s = std::fs::read_to_string(&p)
                        .map_err(|e| TemplateError::Dir(p.clone(), e))?;
                    (s, Origin::File(p))
                }
                _ => (builtin.to_string(), Origin::Builtin),
            };
            env.add_template_owned(name, source)
                .map_err(|e| TemplateError::Invalid {
                    name: name.into(),
                    origin: origin.to_string(),
                    message: error_text(&e),
                })?;
            origins.push((name, origin));
        }
        let t = Templates {
            env,
            origins,
            ignored,
        };
        t.check()?;
        Ok(t)
    }

    /// Where each template came from.
    pub fn origins(&self) -> &[(&'static str, Origin)] {
        &self.origins
    }

    fn origin(&self, name: &str) -> String {
        self.origins
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, o)| o.to_string())
            .unwrap_or_default()
    }

    /// Renders every template with sample values; each must produce an iPXE script.
    fn check(&self) -> Result<(), TemplateError> {
        let samples = [
            (INSTALLER, self.installer(&sample_installer())),
            (CHAIN, self.chain(&sample_chain())),
            (REFUSED, self.render_refused(404, "sample")),
        ];
        for (name, out) in samples {
            let invalid = |message: String| TemplateError::Invalid {
                name: name.into(),
                origin: self.origin(name),
                message,
            };
            let text = out.map_err(|e| invalid(e.to_string()))?;
            if !text.starts_with("#!ipxe") {
                return Err(invalid(
                    "the output must start with #!ipxe (iPXE ignores anything else)".into(),
                ));
            }
        }
        Ok(())
    }

    fn render(&self, name: &'static str, ctx: minijinja::Value) -> Result<String, TemplateError> {
        let t = self
            .env
            .get_template(name)
            .map_err(|e| TemplateError::Render {
                name,
                message: error_text(&e),
            })?;
        t.render(ctx).map_err(|e| TemplateError::Render {
            name,
            message: error_text(&e),
        })
    }

    pub fn installer(&self, v: &InstallerVars) -> Result<String, TemplateError> {
        self.render(
            INSTALLER,
            context! {
                machine => &v.machine,
                mac => &v.mac,
                arch => &v.arch,
                base_url => &v.base_url,
                kernel_url => &v.kernel_url,
                initrd_url => &v.initrd_url,
                cmdline => v.cmdline(),
                kernel_args => &v.kernel_args,
                worker_id => &v.worker_id,
                hw_addr => &v.hw_addr,
                facility => &v.facility,
                syslog_host => &v.syslog_host,
                grpc_authority => &v.grpc_authority,
                tinkerbell_tls => v.tinkerbell_tls,
                tinkerbell_insecure_tls => v.tinkerbell_insecure_tls,
                vlan_id => v.vlan_id,
                consoles => &v.consoles,
                extra_args => &v.extra_args,
                kernel_params => &v.kernel_params,
                traceparent => &v.traceparent,
                retries => v.retries,
                retry_delay => v.retry_delay,
            },
        )
    }

    pub fn chain(&self, v: &ChainVars) -> Result<String, TemplateError> {
        self.render(
            CHAIN,
            context! {
                machine => &v.machine,
                mac => &v.mac,
                url => &v.url,
                retries => v.retries,
                retry_delay => v.retry_delay,
                traceparent => &v.traceparent,
            },
        )
    }

    fn render_refused(&self, status: u16, message: &str) -> Result<String, TemplateError> {
        self.render(REFUSED, context! { status => status, message => message })
    }

    /// The body of a refusal. Never fails: a broken override falls back to a fixed text
    /// (and was already refused at start, so this is belt and braces).
    pub fn refused(&self, status: u16, message: &str) -> String {
        let message: String = message.chars().filter(|c| !c.is_control()).collect();
        match self.render_refused(status, &message) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "refusal template failed");
                format!("#!ipxe\necho ironboot: {message}\nexit 1\n")
            }
        }
    }
}

fn sample_installer() -> InstallerVars {
    InstallerVars {
        machine: "sample".into(),
        mac: "00:00:5e:00:53:01".into(),
        arch: "x86_64".into(),
        base_url: "http://192.0.2.1/assets".into(),
        kernel_url: "http://192.0.2.1/assets/vmlinuz-x86_64".into(),
        initrd_url: "http://192.0.2.1/assets/initramfs-x86_64".into(),
        worker_id: "00:00:5e:00:53:01".into(),
        hw_addr: "00:00:5e:00:53:01".into(),
        facility: "sample".into(),
        syslog_host: "192.0.2.1".into(),
        grpc_authority: "192.0.2.1:42113".into(),
        tinkerbell_tls: false,
        tinkerbell_insecure_tls: false,
        vlan_id: Some(100),
        consoles: vec!["ttyS0,115200".into()],
        extra_args: vec!["a=1".into()],
        kernel_params: vec!["b=2".into()],
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        retries: 1,
        retry_delay: 1,
        kernel_args: vec!["worker_id=00:00:5e:00:53:01".into()],
    }
}

fn sample_chain() -> ChainVars {
    ChainVars {
        machine: "sample".into(),
        mac: "00:00:5e:00:53:01".into(),
        url: "http://192.0.2.1/custom.ipxe".into(),
        retries: 1,
        retry_delay: 1,
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load_and_keep_their_final_newline() {
        let t = Templates::load(None).unwrap();
        let s = t.installer(&sample_installer()).unwrap();
        assert!(s.starts_with("#!ipxe\n# ironboot installer script"), "{s}");
        assert!(s.ends_with("exit 1\n"), "{s:?}");
        assert!(!s.contains("{{") && !s.contains("{%") && !s.contains("{#"));
        assert!(t.origins().iter().all(|(_, o)| *o == Origin::Builtin));
    }

    #[test]
    fn overrides_by_name_and_strict_variables() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CHAIN), "#!ipxe\nchain {{ url }}\n").unwrap();
        std::fs::write(dir.path().join("chain.ipxe.j2"), "typo").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        assert_eq!(
            t.chain(&sample_chain()).unwrap(),
            "#!ipxe\nchain http://192.0.2.1/custom.ipxe\n"
        );
        assert_eq!(t.ignored, vec![dir.path().join("chain.ipxe.j2")]);
        assert!(matches!(t.origins()[1], (CHAIN, Origin::File(_))));

        std::fs::write(dir.path().join(CHAIN), "#!ipxe\nchain {{ nosuchvar }}\n").unwrap();
        let e = Templates::load(Some(dir.path())).err().unwrap().to_string();
        assert!(e.contains("chain.ipxe") && e.contains("undefined"), "{e}");

        std::fs::write(dir.path().join(CHAIN), "#!ipxe\n{% if %}\n").unwrap();
        assert!(Templates::load(Some(dir.path())).is_err());

        std::fs::write(dir.path().join(CHAIN), "chain {{ url }}\n").unwrap();
        let e = Templates::load(Some(dir.path())).err().unwrap().to_string();
        assert!(e.contains("#!ipxe"), "{e}");
    }

    #[test]
    fn missing_directory_is_an_error() {
        assert!(matches!(
            Templates::load(Some(Path::new("/nonexistent/ironboot"))),
            Err(TemplateError::Dir(..))
        ));
    }

    #[test]
    fn refusal_bodies_cannot_add_lines() {
        let t = Templates::load(None).unwrap();
        let s = t.refused(404, "no such machine\nshell");
        assert_eq!(s, "#!ipxe\necho ironboot: no such machineshell\nexit 1\n");
    }
}
