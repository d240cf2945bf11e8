//! What every binary does before it serves: read its flags and environment the same
//! way, answer `--check-config`, and say plainly why a file it needs cannot be read.
//!
//! Deployment tools write settings as environment variables, and an empty one is how
//! they say "not set" (compose's `${VAR:-}`, a ConfigMap key left blank). So an empty
//! (or all-blank) variable counts as unset for every flag of every binary: the flag
//! keeps its default instead of being refused as an invalid value.

use std::ffi::OsStr;
use std::path::Path;

/// Parses the flags of `T` from the command line and the environment, ignoring
/// environment variables that are set but empty. Exits with clap's message on error.
pub fn parse<T: clap::Parser>() -> T {
    parse_with(|name| std::env::var_os(name).is_some_and(|v| v.to_string_lossy().trim().is_empty()))
}

fn parse_with<T: clap::Parser>(is_blank: impl Fn(&OsStr) -> bool + Copy) -> T {
    let matches = without_blank_env(T::command(), is_blank).get_matches();
    T::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `cmd` with the environment fallback removed from every argument (in every
/// subcommand) whose variable `is_blank`.
fn without_blank_env(
    cmd: clap::Command,
    is_blank: impl Fn(&OsStr) -> bool + Copy,
) -> clap::Command {
    let cmd = cmd.mut_args(|a| {
        if a.get_env().is_some_and(is_blank) {
            a.env(None::<&'static str>)
        } else {
            a
        }
    });
    let subcommands: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    subcommands.into_iter().fold(cmd, |cmd, name| {
        cmd.mut_subcommand(name, |sub| without_blank_env(sub, is_blank))
    })
}

/// This process's effective uid and gid.
fn effective_ids() -> (u32, u32) {
    // SAFETY: geteuid and getegid cannot fail and touch no memory of ours.
    unsafe { (nix::libc::geteuid(), nix::libc::getegid()) }
}

/// Why `path` cannot be read, in words an operator can act on: for a permission error,
/// which user this process runs as and who owns the file with which mode (a secret
/// mounted with the host's owner and mode 600 is the usual cause in containers).
pub fn unreadable(path: &Path, err: &std::io::Error) -> String {
    let (uid, gid) = effective_ids();
    if err.kind() != std::io::ErrorKind::PermissionDenied {
        return format!("cannot read {}: {err}", path.display());
    }
    use std::os::unix::fs::MetadataExt;
    let owner = match std::fs::metadata(path) {
        Ok(m) => format!(
            "owned by uid {} gid {} with mode {:o}",
            m.uid(),
            m.gid(),
            m.mode() & 0o7777
        ),
        Err(_) => "whose directory this user cannot enter".to_string(),
    };
    format!(
        "cannot read {} as uid {uid} gid {gid}: {err}; the file is {owner}. Make it readable by this user \
         (for ironboot's images: owner uid 10001 and group 0, mode 0640)",
        path.display()
    )
}

/// `--check-config`'s answer as the process's: the report and `configuration OK` on
/// stdout, or what is wrong on stderr and a failing exit code.
pub fn check_config_exit(check: impl FnOnce() -> Result<String, String>) -> std::process::ExitCode {
    // Checks may build a (lazy) registry client, which needs a runtime to exist.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let _in_runtime = runtime.as_ref().ok().map(|rt| rt.enter());
    match check() {
        Ok(report) => {
            print!("{report}");
            println!("configuration OK");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Variables a service read under its old name before the `IRONBOOT_` prefix (dhcp-svc's
/// `DHCP_*`, syslog-svc's `SYSLOG_*`): each old name still set while its new one is not,
/// as `(old, new)`. `is_set` looks a name up (the process environment in
/// [`warn_renamed_env`]).
pub fn renamed_env_in_use<C: clap::CommandFactory>(
    old_prefix: &str,
    is_set: impl Fn(&str) -> bool,
) -> Vec<(String, String)> {
    C::command()
        .get_arguments()
        .filter_map(|a| a.get_env()?.to_str().map(str::to_owned))
        .filter_map(|new| {
            let old = new
                .strip_prefix("IRONBOOT_")
                .filter(|o| o.starts_with(old_prefix))?
                .to_owned();
            (is_set(&old) && !is_set(&new)).then_some((old, new))
        })
        .collect()
}

/// Warns (once per variable) about old environment names still set: an upgrade that
/// kept them would otherwise run on defaults without a word.
pub fn warn_renamed_env<C: clap::CommandFactory>(old_prefix: &str) {
    for (old, new) in renamed_env_in_use::<C>(old_prefix, |name| std::env::var_os(name).is_some()) {
        tracing::warn!("environment variable {old} is no longer read: it was renamed {new}");
    }
}

#[cfg(test)]
mod renamed_env_tests {
    use super::renamed_env_in_use;

    #[derive(clap::Parser)]
    struct Flags {
        #[arg(long, env = "IRONBOOT_DHCP_MODE", default_value = "reservation")]
        _mode: String,
        #[arg(long, env = "IRONBOOT_DHCP_PORT", default_value_t = 67)]
        _port: u16,
        #[arg(long, env = "IRONBOOT_REGISTRY", default_value = "")]
        _registry: String,
    }

    #[test]
    fn an_old_name_still_set_is_reported_with_its_new_name() {
        let set = ["DHCP_MODE", "DHCP_PORT", "IRONBOOT_DHCP_PORT", "REGISTRY"];
        let found = renamed_env_in_use::<Flags>("DHCP_", |n| set.contains(&n));
        // DHCP_PORT: the new name is set too, so the new one is what counts and nothing is
        // said; REGISTRY never had another name.
        assert_eq!(
            found,
            vec![("DHCP_MODE".to_string(), "IRONBOOT_DHCP_MODE".to_string())]
        );
        assert!(renamed_env_in_use::<Flags>("DHCP_", |_| false).is_empty());
    }
}

#[cfg(test)]
mod blank_env_tests {
    use super::*;

    #[derive(clap::Parser, Debug)]
    struct Flags {
        #[arg(long, env = "IRONBOOT_T_AUTHORITY")]
        authority: Option<String>,
        #[arg(long, env = "IRONBOOT_T_PORT", default_value_t = 69)]
        port: u16,
        #[arg(long, env = "IRONBOOT_T_TLS")]
        tls: bool,
        #[command(subcommand)]
        cmd: Option<Sub>,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Sub {
        Get {
            #[arg(long, env = "IRONBOOT_T_OUTPUT", default_value = "table")]
            output: String,
        },
    }

    #[test]
    fn a_blank_variable_leaves_the_flag_at_its_default() {
        // Arguments capture their variable when the command is built; the process
        // environment has none of these names, so only the removal is exercised here:
        // every variable counts as blank and the command must behave as with none set.
        let cmd = without_blank_env(<Flags as clap::CommandFactory>::command(), |_| true);
        assert!(cmd.get_arguments().all(|a| a.get_env().is_none()));
        let get = cmd.find_subcommand("get").expect("subcommand");
        assert!(
            get.get_arguments().all(|a| a.get_env().is_none()),
            "subcommands too"
        );
        let m = cmd.try_get_matches_from(["t", "get"]).expect("parses");
        let f = <Flags as clap::FromArgMatches>::from_arg_matches(&m).expect("flags");
        assert_eq!((f.authority, f.port, f.tls), (None, 69, false));
        assert!(matches!(f.cmd, Some(Sub::Get { output }) if output == "table"));
    }

    #[test]
    fn a_variable_with_a_value_still_applies() {
        let cmd = without_blank_env(<Flags as clap::CommandFactory>::command(), |_| false);
        assert_eq!(
            cmd.get_arguments()
                .filter(|a| a.get_env().is_some())
                .count(),
            3
        );
    }

    #[test]
    fn a_permission_error_names_the_user_and_the_file_owner() {
        let dir = tempfile_dir();
        let p = dir.join("token");
        std::fs::write(&p, "x").unwrap();
        let err = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let msg = unreadable(&p, &err);
        assert!(
            msg.contains(&format!("as uid {}", effective_ids().0)),
            "{msg}"
        );
        assert!(
            msg.contains("owned by uid") && msg.contains("mode"),
            "{msg}"
        );
        let missing = unreadable(
            &dir.join("absent"),
            &std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert!(
            missing.starts_with("cannot read ") && !missing.contains("uid"),
            "{missing}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ironboot-startup-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
