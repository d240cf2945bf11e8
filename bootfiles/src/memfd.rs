//! Sealed memfds: read-only in-memory files that the kernel can `sendfile` from.
//!
//! Both services send binaries zero-copy: ipxe-http-svc the file as it is, tftp-svc the
//! file as DATA packets of one blksize. Either way the bytes are written once into an
//! unnamed memory file, which is then sealed so nothing can change it while the kernel
//! hands its pages to sockets.

use std::ffi::CStr;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A memfd named `name` (shown in `/proc/<pid>/fd`), filled by `fill` and sealed against
/// any change of content or size.
pub fn sealed(
    name: &CStr,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<OwnedFd> {
    use nix::libc;
    // SAFETY: a valid C string and flags; the returned descriptor is checked.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut w = BufWriter::with_capacity(64 << 10, file);
    fill(&mut w)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OwnedFd::from(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};

    #[test]
    fn holds_what_was_written_and_refuses_writes() {
        let fd = sealed(c"bootfiles-test", |w| {
            w.write_all(b"abc")?;
            w.write_all(&[7u8; 100_000])
        })
        .unwrap();
        let mut f = std::fs::File::from(fd);
        // Writing left the offset at the end; senders use explicit offsets.
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 100_003);
        assert_eq!(&got[..3], b"abc");
        assert!(f.write_all(b"x").is_err(), "sealed against writes");
    }
}
