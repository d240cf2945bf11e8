//! Zero-copy sends of iPXE binaries: `sendfile(2)` from sealed memfds.
//!
//! hyper writes a response body from memory with `writev`, which copies every byte into
//! the kernel; nginx serves the same file with `sendfile`, which does not, and on a boot
//! storm (thousands of ~1 MB `ipxe.efi` downloads) that copy is most of the CPU time.
//! hyper has no sendfile hook, so it is done one layer down, in the connection's
//! `AsyncWrite`: a served binary gets a private copy of its bytes in an unnamed file
//! (`O_TMPFILE` in `--zero-copy-dir`, else a sealed memfd), registered here
//! by the address range of its in-memory buffer; when hyper asks the connection to write
//! a slice that lies inside a registered buffer, the connection `sendfile`s the same
//! bytes from the memfd instead.
//!
//! Why matching by address is sound: each entry holds a clone of the buffer ([`Bytes`]),
//! so that memory stays allocated to that buffer, immutable, for as long as the entry
//! exists — no other data can live at those addresses, and the backing file holds the
//! same bytes (written from the buffer; unnamed, so nothing else can open it; memfds are
//! also sealed against writes). Entries for files that
//! left the catalogue are dropped when its generation changes; the copies are bounded in
//! total size (`--zero-copy-max-bytes`), beyond which binaries are simply written.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use bootfiles::{BootFile, Catalogue};
use bytes::Bytes;

/// One registered buffer and its memfd.
#[derive(Debug)]
pub struct Backing {
    start: usize,
    len: usize,
    fd: OwnedFd,
    /// Keeps the buffer (and so its address range) alive while registered.
    _data: Bytes,
}

impl Backing {
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Offset of `ptr..ptr+len` in the memfd, if the slice lies inside this buffer.
    pub fn offset_of(&self, ptr: usize, len: usize) -> Option<u64> {
        (ptr >= self.start && ptr.checked_add(len)? <= self.start + self.len)
            .then(|| (ptr - self.start) as u64)
    }
}

#[derive(Default)]
struct Inner {
    generation: u64,
    by_start: BTreeMap<usize, Arc<Backing>>,
    total: u64,
}

/// The registry the connections consult.
pub struct ZeroCopy {
    inner: RwLock<Inner>,
    max_bytes: u64,
    /// Where unnamed backing files go; memfds when None or when that fails.
    dir: Option<std::path::PathBuf>,
    /// Fast path for connections: nothing registered, nothing to look up.
    active: AtomicBool,
}

fn memfd_with(data: &[u8]) -> std::io::Result<OwnedFd> {
    bootfiles::memfd::sealed(c"ipxe-http-svc-binary", |w| w.write_all(data))
}

/// An unnamed (`O_TMPFILE`) file in `dir` holding `data`: on filesystems with large
/// folios (ext4, xfs) `sendfile` from the page cache touches a fraction of the pages a
/// memfd's 4 KiB shmem pages need (measured here: ~30% less CPU per download). Nothing
/// can open it by name; it disappears with the descriptor.
fn tmpfile_with(dir: &std::path::Path, data: &[u8]) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_TMPFILE | nix::libc::O_CLOEXEC)
        .mode(0o600)
        .open(dir)?;
    f.write_all(data)?;
    Ok(OwnedFd::from(f))
}

impl ZeroCopy {
    pub fn new(max_bytes: u64, dir: Option<std::path::PathBuf>) -> ZeroCopy {
        ZeroCopy {
            inner: RwLock::new(Inner::default()),
            max_bytes,
            dir,
            active: AtomicBool::new(false),
        }
    }

    /// Makes sure `file` (from `catalogue`) has a memfd, dropping entries of files that
    /// are no longer served. Writes the memfd the first time (once per file version).
    pub fn prepare(&self, catalogue: &Catalogue, file: &BootFile) {
        if self.max_bytes == 0 || file.data.is_empty() {
            return;
        }
        let start = file.data.as_ptr() as usize;
        let snap = catalogue.snapshot();
        {
            let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
            if inner.generation == snap.generation
                && inner
                    .by_start
                    .get(&start)
                    .is_some_and(|b| b.len == file.data.len())
            {
                return;
            }
        }
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.generation != snap.generation {
            let live: std::collections::HashSet<usize> = snap
                .files
                .values()
                .map(|f| f.data.as_ptr() as usize)
                .collect();
            inner.by_start.retain(|s, _| live.contains(s));
            inner.total = inner.by_start.values().map(|b| b.len as u64).sum();
            inner.generation = snap.generation;
        }
        if inner
            .by_start
            .get(&start)
            .is_some_and(|b| b.len == file.data.len())
        {
            return;
        }
        if inner.total + file.size() > self.max_bytes {
            return;
        }
        let made = match &self.dir {
            Some(d) => tmpfile_with(d, &file.data).or_else(|e| {
                tracing::debug!(dir = %d.display(), error = %e, "no unnamed temporary file there; using a memfd");
                memfd_with(&file.data)
            }),
            None => memfd_with(&file.data),
        };
        match made {
            Ok(fd) => {
                let len = file.data.len();
                inner.by_start.insert(
                    start,
                    Arc::new(Backing {
                        start,
                        len,
                        fd,
                        _data: file.data.clone(),
                    }),
                );
                inner.total += len as u64;
                self.active.store(true, Ordering::Release);
                metrics::gauge!("ipxe_zero_copy_bytes").set(inner.total as f64);
                tracing::debug!(file = %file.name, bytes = len, "binary registered for sendfile");
            }
            Err(e) => {
                tracing::warn!(file = %file.name, error = %e, "no memfd for sendfile; writing this binary instead")
            }
        }
    }

    /// The backing of the slice at `ptr` of `len` bytes, with its offset.
    pub fn find(&self, ptr: *const u8, len: usize) -> Option<(Arc<Backing>, u64)> {
        if !self.active.load(Ordering::Acquire) || len == 0 {
            return None;
        }
        let p = ptr as usize;
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let (_, b) = inner.by_start.range(..=p).next_back()?;
        let off = b.offset_of(p, len)?;
        Some((b.clone(), off))
    }

    pub fn registered(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_start
            .len()
    }
}

/// One `sendfile` of up to `len` bytes from `backing` at `offset` to `socket`.
pub fn sendfile(
    socket: RawFd,
    backing: &Backing,
    offset: u64,
    len: usize,
) -> std::io::Result<usize> {
    use nix::libc;
    let mut off = offset as libc::off_t;
    // SAFETY: both descriptors are open for the duration of the call (the backing is
    // borrowed, the socket belongs to the caller); `off` is a valid pointer.
    let n = unsafe { libc::sendfile(socket, backing.fd(), &mut off, len) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `sendmsg(MSG_MORE)`: the response head, held back by the kernel until the body
/// follows, so head and body leave in full segments (what nginx's `tcp_nopush` does;
/// sending the head alone costs a separate segment and a receiver wake-up per download).
pub fn send_more(socket: RawFd, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
    use nix::libc;
    // SAFETY: a zeroed msghdr is valid; IoSlice is ABI-compatible with iovec on Unix and
    // the slices outlive the call.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len() as _;
        libc::sendmsg(socket, &msg, libc::MSG_MORE | libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn registered_buffers_are_found_by_address_and_match_their_memfd() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("ipxe.efi"), &data).unwrap();
        let cat = Catalogue::load(bootfiles::CatalogueConfig {
            dirs: vec![bootfiles::SourceDir {
                path: dir.path().to_path_buf(),
                max_depth: 1,
            }],
            link_roots: vec![],
            ..Default::default()
        });
        let file = cat.get("ipxe.efi").unwrap();
        let zc = ZeroCopy::new(1 << 20, None);
        assert!(
            zc.find(file.data.as_ptr(), 10).is_none(),
            "nothing registered yet"
        );
        zc.prepare(&cat, &file);
        zc.prepare(&cat, &file);
        assert_eq!(zc.registered(), 1);
        let tail = file.data.slice(1000..);
        let (b, off) = zc.find(tail.as_ptr(), tail.len()).unwrap();
        assert_eq!(off, 1000);
        assert!(
            zc.find(tail.as_ptr(), tail.len() + 1).is_none(),
            "past the end"
        );
        let other = Bytes::from(vec![1u8; 10]);
        assert!(zc.find(other.as_ptr(), 10).is_none());
        // The memfd holds the same bytes and refuses writes.
        let mut f = std::fs::File::from(b.fd.try_clone().unwrap());
        let mut back = Vec::new();
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert!(f.write_all(b"x").is_err(), "sealed");

        // The same through an unnamed temporary file.
        let zt = ZeroCopy::new(1 << 20, Some(dir.path().to_path_buf()));
        zt.prepare(&cat, &file);
        let (b, _) = zt.find(file.data.as_ptr(), file.data.len()).unwrap();
        let mut f = std::fs::File::from(b.fd.try_clone().unwrap());
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        let mut back = Vec::new();
        f.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "unnamed: no new directory entry"
        );
    }

    #[test]
    fn bounded_in_total_size() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 600]).unwrap();
        std::fs::write(dir.path().join("b"), vec![2u8; 600]).unwrap();
        let cat = Catalogue::load(bootfiles::CatalogueConfig {
            dirs: vec![bootfiles::SourceDir {
                path: dir.path().to_path_buf(),
                max_depth: 1,
            }],
            link_roots: vec![],
            ..Default::default()
        });
        let zc = ZeroCopy::new(1000, None);
        zc.prepare(&cat, &cat.get("a").unwrap());
        zc.prepare(&cat, &cat.get("b").unwrap());
        assert_eq!(zc.registered(), 1);
        assert!(
            ZeroCopy::new(0, None)
                .find(cat.get("a").unwrap().data.as_ptr(), 1)
                .is_none()
        );
    }
}
