//! Client system architectures (RFC 4578 option 93, IANA's registry) and the iPXE binary
//! each is sent by default. dhcp-svc hands these names out; tftp-svc and ipxe-http-svc
//! check at `--check-config` that they can serve them, so a missing or dangling binary
//! is found before the first machine of that architecture fails to boot.

use crate::catalogue::Snapshot;

pub const X86_BIOS: u16 = 0;
pub const X86_UEFI: u16 = 6;
pub const X64_UEFI: u16 = 7;
pub const EBC: u16 = 9;
pub const ARM32_UEFI: u16 = 10;
pub const ARM64_UEFI: u16 = 11;
pub const X86_UEFI_HTTP: u16 = 15;
pub const X64_UEFI_HTTP: u16 = 16;
pub const ARM32_UEFI_HTTP: u16 = 18;
pub const ARM64_UEFI_HTTP: u16 = 19;

/// The binary each architecture gets unless the operator maps another.
pub const DEFAULT_BINARIES: &[(u16, &str)] = &[
    (X86_BIOS, "undionly.kpxe"),
    (X86_UEFI, "ipxe.efi"),
    (X64_UEFI, "ipxe.efi"),
    (EBC, "ipxe.efi"),
    (X86_UEFI_HTTP, "ipxe.efi"),
    (X64_UEFI_HTTP, "ipxe.efi"),
    (ARM32_UEFI, "snp.efi"),
    (ARM64_UEFI, "snp.efi"),
    (ARM32_UEFI_HTTP, "snp.efi"),
    (ARM64_UEFI_HTTP, "snp.efi"),
];

/// Files whose absence is only a warning: ARM builds of iPXE, which Debian's `ipxe`
/// package (the images' source) does not ship; operators of ARM machines add their own.
const OPTIONAL: &[&str] = &["snp.efi"];

/// Checks that every default binary is served by `snap`: `Err` naming the file (and the
/// entry on disk with why it is not served, e.g. a dangling link) for a missing x86
/// binary or any default binary present but unservable; warnings in `out` for missing
/// optional ones.
pub fn check_defaults(snap: &Snapshot, out: &mut String) -> Result<(), String> {
    use std::fmt::Write;
    let mut errors = Vec::new();
    let mut files: Vec<&str> = DEFAULT_BINARIES.iter().map(|(_, f)| *f).collect();
    files.dedup();
    for file in files {
        if snap.files.contains_key(file) {
            continue;
        }
        let archs: Vec<String> = DEFAULT_BINARIES
            .iter()
            .filter(|(_, f)| *f == file)
            .map(|(a, _)| a.to_string())
            .collect();
        let who = format!(
            "machines of architecture {} are sent {file}",
            archs.join(", ")
        );
        let skipped = snap
            .skipped
            .iter()
            .find(|(p, _)| p.file_name().is_some_and(|n| n == file));
        match skipped {
            Some((path, why)) => {
                errors.push(format!("{} is not served ({why}); {who}", path.display()))
            }
            None if OPTIONAL.contains(&file) => {
                let _ = writeln!(
                    out,
                    "warning: no {file} in the boot directories: {who} and will fail (add an ARM build of iPXE)"
                );
            }
            None => errors.push(format!("no {file} in the boot directories; {who}")),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors
            .into_iter()
            .map(|e| format!("error: {e}\n"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{Catalogue, CatalogueConfig, SourceDir};
    use std::os::unix::fs::symlink;

    fn snapshot(dir: &std::path::Path) -> std::sync::Arc<Snapshot> {
        let config = CatalogueConfig {
            dirs: vec![SourceDir {
                path: dir.to_path_buf(),
                max_depth: 1,
            }],
            ..CatalogueConfig::default()
        };
        Catalogue::load(config).snapshot()
    }

    #[test]
    fn every_x86_default_present_passes_and_a_missing_arm_build_is_a_warning() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("undionly.kpxe"), b"kpxe").unwrap();
        std::fs::write(d.path().join("ipxe.efi"), b"efi").unwrap();
        let mut out = String::new();
        assert_eq!(check_defaults(&snapshot(d.path()), &mut out), Ok(()));
        assert!(out.contains("warning: no snp.efi"), "{out}");
        assert!(out.contains("architecture 10, 11, 18, 19"), "{out}");
    }

    #[test]
    fn a_dangling_link_is_named_with_its_reason() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("undionly.kpxe"), b"kpxe").unwrap();
        // Debian's package ships ipxe.efi as a link to /boot/ipxe.efi; copied alone it dangles.
        symlink(
            "/boot/ironboot-test-absent/ipxe.efi",
            d.path().join("ipxe.efi"),
        )
        .unwrap();
        let err = check_defaults(&snapshot(d.path()), &mut String::new()).unwrap_err();
        assert!(
            err.contains(&format!(
                "{}/ipxe.efi is not served (dangling symlink)",
                d.path().display()
            )),
            "{err}"
        );
        assert!(err.contains("architecture 6, 7, 9, 15, 16"), "{err}");
    }

    #[test]
    fn a_missing_x86_binary_fails() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("ipxe.efi"), b"efi").unwrap();
        let err = check_defaults(&snapshot(d.path()), &mut String::new()).unwrap_err();
        assert!(
            err.contains("no undionly.kpxe in the boot directories; machines of architecture 0"),
            "{err}"
        );
    }
}
