//! Where the binaries under test and the system tools are.
//!
//! The lab runs the real service binaries from the workspace target directory (the one
//! this test executable was built into), or from `IRONBOOT_BIN_DIR`. It does not build
//! them: `tests/run.sh` (or `cargo build --workspace --bins`) does, and a missing binary
//! fails the scenario with that instruction rather than testing something stale.

use std::path::{Path, PathBuf};

/// `IRONBOOT_BIN_DIR`, else the directory above this test executable's `deps/`
/// (`<target>/debug`).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("IRONBOOT_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        dir.pop();
    }
    dir
}

/// A workspace binary; panics with what to do when it has not been built.
#[track_caller]
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} not found: build the workspace binaries first (`cargo build --workspace --bins`, as tests/run.sh does), \
         or point IRONBOOT_BIN_DIR at a directory holding them",
        p.display()
    );
    p
}

/// A system file the lab needs (a tool or firmware); panics naming the Debian package.
#[track_caller]
pub fn system(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.exists(),
        "{path} not found: install the Debian package `{package}` (tests/system-packages.txt; tests/run.sh installs it as root)"
    );
    p
}

/// The workspace root (for `deploy/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}
