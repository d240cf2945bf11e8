//! Zero-copy windows: a file laid out as its DATA packets for one blksize, in a sealed
//! memfd, so a window goes out as one `sendfile` of a contiguous range.
//!
//! Every DATA packet of a file is fixed once the blksize is: block `n` is the 4-byte
//! header `03 | n mod 65536` and the file's bytes `(n-1)·blksize ..`. Written one after
//! another they form the file's *wire image*, and the packets of any window are one
//! range of it: block `n` starts at `(n-1)·(4 + blksize)`. With `UDP_SEGMENT` set on the
//! transfer's socket to `4 + blksize`, `sendfile` of that range is the whole window in one
//! syscall, and the kernel sends the memfd's pages instead of copying the bytes.
//!
//! Why (measured, README.md): the copying send writes every byte of a window on the
//! server's CPU, and the client then reads those freshly written lines from the other
//! CPU's cache, once per window. From the image the client reads pages nobody writes.
//! On this VM, 1468/8 to a polling client: 1.92 → 1.66 ms per transfer when the two
//! vCPUs are far apart, 1.43 → 1.34 ms when near.
//!
//! The images are built off the transfer path, one at a time, for the files and
//! blksizes clients actually ask for, and bounded in total bytes (least recently used
//! dropped first). A transfer whose image is not ready yet sends by copying, as do
//! single-port transfers (`sendfile` cannot address a reply).

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bootfiles::{BootFile, Catalogue};
use bytes::Bytes;

use crate::packet;
use crate::sender::Sender;

/// Bytes of the image of a `size`-byte file at `blksize`: every block's header, the
/// file, and the empty last block a file whose size is a multiple of blksize ends with.
pub fn image_len(size: u64, blksize: u16) -> u64 {
    let blocks = size / u64::from(blksize) + 1;
    blocks * 4 + size
}

/// Where block `n` (absolute, from 1) starts in the image.
pub fn block_offset(n: u64, blksize: u16) -> u64 {
    (n - 1) * (4 + u64::from(blksize))
}

/// Writes the image: the DATA packets of every block, in order, exactly as the copying
/// path sends them (the same header encoder and wire numbering).
pub fn write_image(data: &[u8], blksize: u16, out: &mut dyn Write) -> io::Result<()> {
    let blksize = usize::from(blksize.max(1));
    let mut n = 1u64;
    let mut chunks = data.chunks(blksize);
    loop {
        let body = chunks.next().unwrap_or(&[]);
        out.write_all(&packet::data_header(Sender::wire_block(n)))?;
        out.write_all(body)?;
        if body.len() < blksize {
            return Ok(());
        }
        n += 1;
    }
}

/// One file's image at one blksize.
pub struct WireImage {
    fd: OwnedFd,
    pub blksize: u16,
    len: u64,
    /// Holds the file's buffer, so the address that keys this image stays this file's.
    _data: Bytes,
    /// [`WireImages`]' use counter when this image was last handed out.
    last_used: AtomicU64,
}

impl WireImage {
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// (file buffer address, length, blksize).
type Key = (usize, usize, u16);

#[derive(Default)]
struct Inner {
    generation: u64,
    images: HashMap<Key, Arc<WireImage>>,
    total: u64,
}

/// The images of the files being served; shared by all transfers.
pub struct WireImages {
    inner: Mutex<Inner>,
    max_bytes: u64,
    /// An image is being written (one at a time: a burst of new blksizes must not cost a
    /// file-sized buffer each).
    building: AtomicBool,
    /// Writing one failed (no memfds here, e.g. a seccomp profile that forbids them):
    /// no more attempts, every transfer copies.
    failed: AtomicBool,
    uses: AtomicU64,
}

impl WireImages {
    /// `max_bytes` bounds all images together; 0 turns zero-copy sends off.
    pub fn new(max_bytes: u64) -> Arc<WireImages> {
        Arc::new(WireImages {
            inner: Mutex::new(Inner::default()),
            max_bytes,
            building: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            uses: AtomicU64::new(0),
        })
    }

    /// Bytes held in images now.
    pub fn total_bytes(&self) -> u64 {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The image of `file` at `blksize` when it is ready. When it is not, starts writing
    /// it on a thread of its own (unless another image is being written, or it could
    /// never fit) and returns `None`: this transfer copies, later ones will not.
    pub fn get(
        self: &Arc<Self>,
        catalogue: &Catalogue,
        file: &BootFile,
        blksize: u16,
    ) -> Option<Arc<WireImage>> {
        let len = image_len(file.size(), blksize);
        if len > self.max_bytes {
            return None;
        }
        let key = (file.data.as_ptr() as usize, file.data.len(), blksize);
        let generation = catalogue.snapshot().generation;
        {
            let mut inner = self.lock();
            if inner.generation != generation {
                // Files replaced or removed: their images go (transfers still sending
                // from one keep it open through their Arc).
                let snap = catalogue.snapshot();
                let live: std::collections::HashSet<(usize, usize)> = snap
                    .files
                    .values()
                    .map(|f| (f.data.as_ptr() as usize, f.data.len()))
                    .collect();
                inner.images.retain(|k, _| live.contains(&(k.0, k.1)));
                inner.total = inner.images.values().map(|i| i.len).sum();
                inner.generation = generation;
                crate::metrics::wire_image_bytes(inner.total);
            }
            if let Some(img) = inner.images.get(&key) {
                img.last_used
                    .store(self.uses.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
                return Some(img.clone());
            }
        }
        if self.failed.load(Ordering::Relaxed) || self.building.swap(true, Ordering::AcqRel) {
            return None;
        }
        let this = self.clone();
        let data = file.data.clone();
        let name = file.name.clone();
        let spawned = std::thread::Builder::new().name("tftp-wire-image".into()).spawn(move || {
            match bootfiles::memfd::sealed(c"tftp-svc-wire-image", |w| write_image(&data, blksize, w)) {
                Ok(fd) => this.insert(key, WireImage { fd, blksize, len, _data: data, last_used: AtomicU64::new(0) }, generation),
                Err(e) => {
                    this.failed.store(true, Ordering::Relaxed);
                    tracing::warn!(file = %name, blksize, error = %e, "cannot write a wire image; zero-copy sends are off, every window is copied");
                }
            }
            this.building.store(false, Ordering::Release);
        });
        if spawned.is_err() {
            self.building.store(false, Ordering::Release);
        }
        None
    }

    /// Adds an image written from the catalogue of `generation`, first dropping the least
    /// recently used ones it does not fit beside. When the catalogue changed while it was
    /// written, its file may be gone, and the pruning that would have dropped it has
    /// already run: it is dropped instead (the next request writes it again if the file
    /// is still served).
    fn insert(&self, key: Key, img: WireImage, generation: u64) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        while inner.total + img.len > self.max_bytes {
            let Some(oldest) = inner
                .images
                .iter()
                .min_by_key(|(_, i)| i.last_used.load(Ordering::Relaxed))
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(old) = inner.images.remove(&oldest) {
                inner.total -= old.len;
            }
        }
        img.last_used
            .store(self.uses.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        inner.total += img.len;
        inner.images.insert(key, Arc::new(img));
        crate::metrics::wire_image_bytes(inner.total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sender::Timing;
    use std::time::Duration;

    /// The packets the copying path sends for every block, concatenated.
    fn packets(data: &[u8], blksize: u16) -> Vec<u8> {
        let t = Timing {
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_secs(1),
            max_rto: Duration::from_secs(1),
            max_retries: 1,
        };
        let s = Sender::new(data.len() as u64, blksize, 1, false, t);
        let mut out = Vec::new();
        for n in 1..=s.blocks_total() {
            out.extend_from_slice(&packet::data_header(Sender::wire_block(n)));
            out.extend_from_slice(&data[s.block_range(n)]);
        }
        out
    }

    fn image(data: &[u8], blksize: u16) -> Vec<u8> {
        let mut v = Vec::new();
        write_image(data, blksize, &mut v).unwrap();
        v
    }

    #[test]
    fn image_is_the_packets_of_every_block() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for blksize in [8u16, 512, 1468, 9_999, 10_000, 65_464] {
            let img = image(&data, blksize);
            assert_eq!(img, packets(&data, blksize), "blksize {blksize}");
            assert_eq!(img.len() as u64, image_len(data.len() as u64, blksize));
        }
    }

    #[test]
    fn exact_multiple_and_empty_files_end_with_an_empty_block() {
        let img = image(&[1u8; 1024], 512);
        assert_eq!(img.len(), 3 * 4 + 1024);
        assert_eq!(&img[img.len() - 4..], &[0, 3, 0, 3]);
        assert_eq!(image(&[], 512), vec![0, 3, 0, 1]);
    }

    #[test]
    fn block_numbers_roll_over_and_offsets_find_them() {
        // 70,000 blocks of 8 bytes: block 65,536 goes out as 0.
        let data = vec![0xabu8; 70_000 * 8 - 3];
        let img = image(&data, 8);
        assert_eq!(img, packets(&data, 8));
        for n in [1u64, 2, 65_535, 65_536, 65_537, 70_000] {
            let at = block_offset(n, 8) as usize;
            assert_eq!(
                &img[at..at + 4],
                &packet::data_header(Sender::wire_block(n)),
                "block {n}"
            );
        }
    }

    fn catalogue_with(files: &[(&str, usize)]) -> (tempfile::TempDir, Arc<Catalogue>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, len) in files {
            std::fs::write(dir.path().join(name), vec![0x5au8; *len]).unwrap();
        }
        let config = bootfiles::CatalogueConfig {
            dirs: vec![bootfiles::SourceDir {
                path: dir.path().to_path_buf(),
                max_depth: 1,
            }],
            link_roots: Vec::new(),
            ..Default::default()
        };
        let cat = Catalogue::load(config);
        (dir, cat)
    }

    fn wait_built(
        images: &Arc<WireImages>,
        cat: &Catalogue,
        file: &BootFile,
        blksize: u16,
    ) -> Arc<WireImage> {
        for _ in 0..500 {
            if let Some(i) = images.get(cat, file, blksize) {
                return i;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("image never built");
    }

    #[test]
    fn first_request_copies_later_ones_get_the_image() {
        let (_d, cat) = catalogue_with(&[("a.efi", 5_000)]);
        let file = cat.get("a.efi").unwrap();
        let images = WireImages::new(1 << 20);
        assert!(images.get(&cat, &file, 512).is_none(), "not built yet");
        let img = wait_built(&images, &cat, &file, 512);
        // Read as sendfile does, by offset (the descriptor's own offset is at the end).
        let want = image(&file.data, 512);
        let mut got = vec![0u8; want.len() + 1];
        let f = std::fs::File::from(img.fd.try_clone().unwrap());
        let n = std::os::unix::fs::FileExt::read_at(&f, &mut got, 0).unwrap();
        assert_eq!(&got[..n], &want[..]);
        assert_eq!(images.total_bytes(), image_len(5_000, 512));
    }

    #[test]
    fn bounded_least_recently_used_go_first_and_too_big_is_never_built() {
        let (_d, cat) = catalogue_with(&[("a.efi", 4_000), ("b.efi", 4_000), ("big.efi", 50_000)]);
        let (a, b, big) = (
            cat.get("a.efi").unwrap(),
            cat.get("b.efi").unwrap(),
            cat.get("big.efi").unwrap(),
        );
        // Room for two 4,000-byte images, not three.
        let images = WireImages::new(2 * image_len(4_000, 512) + 100);
        wait_built(&images, &cat, &a, 512);
        wait_built(&images, &cat, &b, 512);
        wait_built(&images, &cat, &a, 512); // a is now the more recent
        wait_built(&images, &cat, &a, 1024);
        let held = images
            .lock()
            .images
            .keys()
            .map(|k| (k.0, k.2))
            .collect::<std::collections::HashSet<_>>();
        let a_ptr = a.data.as_ptr() as usize;
        assert_eq!(
            held,
            [(a_ptr, 512), (a_ptr, 1024)].into_iter().collect(),
            "b (least recently used) was dropped"
        );
        assert!(images.total_bytes() <= 2 * image_len(4_000, 512) + 100);
        for _ in 0..20 {
            assert!(
                images.get(&cat, &big, 512).is_none(),
                "larger than the whole budget"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn an_image_written_across_a_catalogue_change_is_not_kept() {
        let (_d, cat) = catalogue_with(&[("a.efi", 3_000)]);
        let file = cat.get("a.efi").unwrap();
        let images = WireImages::new(1 << 20);
        let generation = cat.snapshot().generation;
        let written = || {
            let fd =
                bootfiles::memfd::sealed(c"test-wire-image", |w| write_image(&file.data, 512, w))
                    .unwrap();
            WireImage {
                fd,
                blksize: 512,
                len: image_len(3_000, 512),
                _data: file.data.clone(),
                last_used: AtomicU64::new(0),
            }
        };
        let key = (file.data.as_ptr() as usize, file.data.len(), 512);
        // The catalogue moved on (and its pruning ran) while the image was written.
        images.lock().generation = generation + 1;
        images.insert(key, written(), generation);
        assert_eq!(
            images.total_bytes(),
            0,
            "written from an older catalogue: dropped"
        );
        images.insert(key, written(), generation + 1);
        assert_eq!(images.total_bytes(), image_len(3_000, 512));
    }

    #[test]
    fn zero_budget_builds_nothing() {
        let (_d, cat) = catalogue_with(&[("a.efi", 100)]);
        let file = cat.get("a.efi").unwrap();
        let images = WireImages::new(0);
        assert!(images.get(&cat, &file, 512).is_none());
        std::thread::sleep(Duration::from_millis(20));
        assert!(images.get(&cat, &file, 512).is_none());
        assert_eq!(images.total_bytes(), 0);
    }
}
