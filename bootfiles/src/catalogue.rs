//! The served files, held in memory and swapped as a whole when the directories change.
//!
//! Boot storms ask for the same three or four binaries thousands of times; reading them
//! from disk per request (and resolving paths per request) is where TFTP servers lose
//! time and where path tricks get in. Instead the directories are scanned once, every
//! file that passes confinement is read into a [`Bytes`] (clones are reference counts),
//! and requests only look names up in a hash map. A periodic rescan compares size, mtime
//! and inode and rereads only what changed; the new map replaces the old atomically, so
//! a transfer that started on the old file finishes on it.
//!
//! Confinement happens here, at scan time: only regular files are loaded; a symlink is
//! followed only when its target is a regular file inside its own root or inside one of
//! the configured link roots (Debian's `ipxe` package links `ipxe.efi` to `/boot`);
//! devices, FIFOs and sockets are skipped. A request can then only ever name something
//! that was vetted.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::path::check_relative;

/// One served file. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BootFile {
    /// The name clients ask for (relative, `/`-separated).
    pub name: Arc<str>,
    pub data: Bytes,
    /// Modification time of the file on disk when it was read (HTTP Last-Modified).
    pub modified: SystemTime,
    /// FNV-1a 64 of the content: a strong-enough ETag that is the same on every replica
    /// serving the same bytes. Not a security hash.
    pub digest: u64,
    /// Where it was read from (after following a permitted symlink).
    pub origin: Arc<Path>,
}

impl BootFile {
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// A quoted HTTP entity tag derived from the content.
    pub fn etag(&self) -> String {
        format!("\"{:016x}-{:x}\"", self.digest, self.data.len())
    }
}

/// A directory to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceDir {
    pub path: PathBuf,
    /// Where a subdirectory tree is served too (asset directories); iPXE directories are
    /// served flat plus one level (Debian keeps the QEMU ROMs in `qemu/`).
    pub max_depth: usize,
}

/// What to load and the limits that keep it bounded.
#[derive(Clone, Debug)]
pub struct CatalogueConfig {
    /// Directories in priority order: a name found in an earlier one shadows later ones.
    pub dirs: Vec<SourceDir>,
    /// Directories a symlink may point into besides its own root.
    pub link_roots: Vec<PathBuf>,
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
    pub max_files: usize,
}

impl Default for CatalogueConfig {
    fn default() -> Self {
        CatalogueConfig {
            dirs: vec![SourceDir {
                path: PathBuf::from("/usr/lib/ipxe"),
                max_depth: 1,
            }],
            link_roots: vec![PathBuf::from("/boot")],
            max_file_bytes: 256 << 20,
            max_total_bytes: 1 << 30,
            max_files: 10_000,
        }
    }
}

/// Why a directory entry was not loaded.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SkipReason {
    SymlinkOutsideRoot(PathBuf),
    DanglingSymlink,
    NotRegularFile,
    UnservableName,
    TooLarge(u64),
    CatalogueFull,
    TooManyFiles,
    ChangingWhileRead,
    ReadError(String),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::SymlinkOutsideRoot(t) => write!(
                f,
                "symlink leads out of the served roots (to {})",
                t.display()
            ),
            SkipReason::DanglingSymlink => f.write_str("dangling symlink"),
            SkipReason::NotRegularFile => {
                f.write_str("not a regular file (device, FIFO, socket or symlinked directory)")
            }
            SkipReason::UnservableName => {
                f.write_str("name no client can request (not UTF-8, control characters, backslash)")
            }
            SkipReason::TooLarge(n) => write!(f, "larger than the per-file limit ({n} bytes)"),
            SkipReason::CatalogueFull => f.write_str("total size limit reached"),
            SkipReason::TooManyFiles => f.write_str("file count limit reached"),
            SkipReason::ChangingWhileRead => {
                f.write_str("changed while being read; retried at the next scan")
            }
            SkipReason::ReadError(e) => write!(f, "read error: {e}"),
        }
    }
}

/// A consistent view of every served file.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub files: HashMap<Arc<str>, BootFile>,
    /// Entries seen but not served, by path on disk.
    pub skipped: BTreeMap<PathBuf, SkipReason>,
    /// Configured directories that could not be opened.
    pub missing_dirs: Vec<(PathBuf, String)>,
    pub total_bytes: u64,
    /// Increases each time the served set changes.
    pub generation: u64,
    /// Identity of each loaded file on disk, to reuse unchanged contents on rescan.
    stamps: HashMap<Arc<str>, Stamp>,
}

impl Snapshot {
    /// For `--check-config`: one line naming the served files (`label (N, B bytes): …`),
    /// then a warning per directory that could not be read and per entry not served.
    /// Returns how many files are served.
    pub fn report(&self, out: &mut String, label: &str) -> usize {
        use std::fmt::Write;
        let mut names: Vec<&str> = self.files.keys().map(|k| &**k).collect();
        names.sort_unstable();
        let _ = writeln!(
            out,
            "{label} ({}, {} bytes): {}",
            names.len(),
            self.total_bytes,
            names.join(" ")
        );
        for (d, e) in &self.missing_dirs {
            let _ = writeln!(out, "warning: directory {}: {e}", d.display());
        }
        for (p, why) in &self.skipped {
            let _ = writeln!(out, "warning: not serving {}: {why}", p.display());
        }
        names.len()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        }
    }
}

/// The live catalogue: lookups read the current snapshot; rescans replace it.
pub struct Catalogue {
    config: CatalogueConfig,
    current: RwLock<Arc<Snapshot>>,
}

/// What one rescan changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl ScanReport {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

impl Catalogue {
    /// Scans the directories now (blocking; call before serving or inside
    /// `spawn_blocking`).
    pub fn load(config: CatalogueConfig) -> Arc<Catalogue> {
        let cat = Arc::new(Catalogue {
            config,
            current: RwLock::new(Arc::new(Snapshot::default())),
        });
        cat.rescan();
        cat
    }

    /// The file served under `name`, if any.
    pub fn get(&self, name: &str) -> Option<BootFile> {
        self.snapshot().files.get(name).cloned()
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn config(&self) -> &CatalogueConfig {
        &self.config
    }

    /// Rescans the directories and swaps in the result if anything changed. Blocking.
    pub fn rescan(&self) -> ScanReport {
        let prev = self.snapshot();
        let mut next = scan(&self.config, &prev);
        let report = diff(&prev, &next);
        for name in &report.added {
            tracing::info!(file = %name, "boot file loaded");
        }
        for name in &report.changed {
            tracing::info!(file = %name, "boot file reloaded (changed on disk)");
        }
        for name in &report.removed {
            tracing::info!(file = %name, "boot file removed");
        }
        for (path, why) in &next.skipped {
            if prev.skipped.get(path) != Some(why) {
                tracing::warn!(path = %path.display(), reason = %why, "not serving");
            }
        }
        for (dir, err) in &next.missing_dirs {
            if !prev.missing_dirs.iter().any(|(d, _)| d == dir) {
                tracing::warn!(dir = %dir.display(), error = %err, "boot file directory unavailable");
            }
        }
        let changed = !report.is_empty()
            || next.skipped != prev.skipped
            || next.missing_dirs != prev.missing_dirs;
        if changed {
            next.generation = prev.generation + 1;
            metrics::gauge!("bootfiles_files").set(next.files.len() as f64);
            metrics::gauge!("bootfiles_bytes").set(next.total_bytes as f64);
            metrics::gauge!("bootfiles_skipped").set(next.skipped.len() as f64);
            if !report.is_empty() {
                metrics::counter!("bootfiles_reloads_total").increment(1);
            }
            *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        }
        report
    }

    /// Registers the descriptions (`# HELP`) of the `bootfiles_*` metrics; services that
    /// serve a catalogue call it once the recorder is installed.
    pub fn describe_metrics() {
        use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
        describe_gauge!(
            "bootfiles_files",
            "Boot files in the catalogue being served."
        );
        describe_gauge!(
            "bootfiles_bytes",
            Unit::Bytes,
            "Total size of the boot files being served."
        );
        describe_gauge!(
            "bootfiles_skipped",
            "Files in the boot directories that are not served (unsafe links, unreadable, not regular files)."
        );
        describe_counter!(
            "bootfiles_reloads_total",
            "Rescans that changed the set of boot files served."
        );
        describe_histogram!(
            "bootfiles_scan_seconds",
            Unit::Seconds,
            "Time a periodic rescan of the boot directories took."
        );
    }

    /// Rescans every `interval` on a blocking thread until `shutdown` resolves.
    pub fn spawn_reloader(
        self: &Arc<Self>,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let cat = self.clone();
        tokio::spawn(async move {
            tokio::pin!(shutdown);
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tick.tick() => {}
                }
                let c = cat.clone();
                let started = Instant::now();
                if tokio::task::spawn_blocking(move || c.rescan())
                    .await
                    .is_err()
                {
                    tracing::error!("boot file rescan panicked; keeping the previous files");
                }
                metrics::histogram!("bootfiles_scan_seconds")
                    .record(started.elapsed().as_secs_f64());
            }
        })
    }
}

fn diff(prev: &Snapshot, next: &Snapshot) -> ScanReport {
    let mut r = ScanReport::default();
    for (name, f) in &next.files {
        match prev.files.get(name) {
            None => r.added.push(name.to_string()),
            Some(old) if old.data.as_ptr() != f.data.as_ptr() || old.data.len() != f.data.len() => {
                r.changed.push(name.to_string())
            }
            Some(_) => {}
        }
    }
    for name in prev.files.keys() {
        if !next.files.contains_key(name) {
            r.removed.push(name.to_string());
        }
    }
    r.added.sort();
    r.changed.sort();
    r.removed.sort();
    r
}

/// Walks every directory and builds a new snapshot, reusing unchanged contents of `prev`.
fn scan(config: &CatalogueConfig, prev: &Snapshot) -> Snapshot {
    let mut out = Snapshot::default();
    let link_roots: Vec<PathBuf> = config
        .link_roots
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    // Same inode under two names (Debian's ROM aliases) shares one buffer.
    let mut by_stamp: HashMap<Stamp, (Bytes, u64)> = HashMap::new();
    for f in prev.files.values() {
        if let Some(st) = prev.stamps.get(&f.name) {
            by_stamp.insert(*st, (f.data.clone(), f.digest));
        }
    }
    let mut fresh: HashMap<Stamp, (Bytes, u64)> = HashMap::new();
    for dir in &config.dirs {
        let root = match dir.path.canonicalize() {
            Ok(r) if r.is_dir() => r,
            Ok(_) => {
                out.missing_dirs
                    .push((dir.path.clone(), "not a directory".into()));
                continue;
            }
            Err(e) => {
                out.missing_dirs.push((dir.path.clone(), e.to_string()));
                continue;
            }
        };
        let mut ctx = WalkCtx {
            config,
            root: &root,
            link_roots: &link_roots,
            prev,
            by_stamp: &by_stamp,
            fresh: &mut fresh,
            out: &mut out,
        };
        ctx.walk(&root, "", dir.max_depth);
    }
    out
}

struct WalkCtx<'a> {
    config: &'a CatalogueConfig,
    root: &'a Path,
    link_roots: &'a [PathBuf],
    prev: &'a Snapshot,
    by_stamp: &'a HashMap<Stamp, (Bytes, u64)>,
    fresh: &'a mut HashMap<Stamp, (Bytes, u64)>,
    out: &'a mut Snapshot,
}

impl WalkCtx<'_> {
    fn walk(&mut self, dir: &Path, prefix: &str, depth_left: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let Some(fname) = entry.file_name().to_str().map(str::to_string) else {
                self.out.skipped.insert(path, SkipReason::UnservableName);
                continue;
            };
            let name = if prefix.is_empty() {
                fname
            } else {
                format!("{prefix}/{fname}")
            };
            let Ok(lmeta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = lmeta.file_type();
            if ft.is_dir() {
                if depth_left > 0 {
                    self.walk(&path, &name, depth_left - 1);
                }
                continue;
            }
            if check_relative(&name).is_err() {
                self.out.skipped.insert(path, SkipReason::UnservableName);
                continue;
            }
            if self.out.files.contains_key(name.as_str()) {
                // Shadowed by a higher-priority directory.
                continue;
            }
            let target = if ft.is_symlink() {
                match path.canonicalize() {
                    Err(_) => {
                        self.out.skipped.insert(path, SkipReason::DanglingSymlink);
                        continue;
                    }
                    Ok(t) => {
                        let inside = t.starts_with(self.root)
                            || self.link_roots.iter().any(|r| t.starts_with(r));
                        if !inside {
                            self.out
                                .skipped
                                .insert(path, SkipReason::SymlinkOutsideRoot(t));
                            continue;
                        }
                        t
                    }
                }
            } else if ft.is_file() {
                path.clone()
            } else {
                let _ =
                    ft.is_block_device() || ft.is_char_device() || ft.is_fifo() || ft.is_socket();
                self.out.skipped.insert(path, SkipReason::NotRegularFile);
                continue;
            };
            if self.out.files.len() >= self.config.max_files {
                self.out.skipped.insert(path, SkipReason::TooManyFiles);
                continue;
            }
            match self.load(&target) {
                Ok((stamp, data, digest)) => {
                    if stamp.size > self.config.max_file_bytes {
                        self.out
                            .skipped
                            .insert(path, SkipReason::TooLarge(self.config.max_file_bytes));
                        continue;
                    }
                    if self.out.total_bytes + stamp.size > self.config.max_total_bytes {
                        self.out.skipped.insert(path, SkipReason::CatalogueFull);
                        continue;
                    }
                    let name: Arc<str> = Arc::from(name.as_str());
                    self.out.total_bytes += stamp.size;
                    self.out.stamps.insert(name.clone(), stamp);
                    let modified = SystemTime::UNIX_EPOCH
                        .checked_add(Duration::new(
                            stamp.mtime.max(0) as u64,
                            stamp.mtime_nsec.clamp(0, 999_999_999) as u32,
                        ))
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    self.out.files.insert(
                        name.clone(),
                        BootFile {
                            name,
                            data,
                            modified,
                            digest,
                            origin: Arc::from(target.as_path()),
                        },
                    );
                }
                Err(LoadError::Skip(why)) => {
                    // Keep serving the previous version of a file caught mid-write.
                    if why == SkipReason::ChangingWhileRead
                        && let (Some(old), Some(st)) = (
                            self.prev.files.get(name.as_str()),
                            self.prev.stamps.get(name.as_str()),
                        )
                    {
                        self.out.total_bytes += old.size();
                        self.out.stamps.insert(old.name.clone(), *st);
                        self.out.files.insert(old.name.clone(), old.clone());
                    }
                    self.out.skipped.insert(path, why);
                }
            }
        }
    }

    /// Opens the (already vetted) target, checks it is still a regular file, and reuses
    /// or reads its contents.
    fn load(&mut self, target: &Path) -> Result<(Stamp, Bytes, u64), LoadError> {
        let mut file = File::options()
            .read(true)
            .custom_flags(nix_o_nofollow())
            .open(target)
            .map_err(|e| LoadError::Skip(SkipReason::ReadError(e.to_string())))?;
        let meta = file
            .metadata()
            .map_err(|e| LoadError::Skip(SkipReason::ReadError(e.to_string())))?;
        if !meta.file_type().is_file() {
            return Err(LoadError::Skip(SkipReason::NotRegularFile));
        }
        let stamp = Stamp::of(&meta);
        if stamp.size > self.config.max_file_bytes {
            return Err(LoadError::Skip(SkipReason::TooLarge(
                self.config.max_file_bytes,
            )));
        }
        if let Some((data, digest)) = self.fresh.get(&stamp).or_else(|| self.by_stamp.get(&stamp)) {
            let r = (stamp, data.clone(), *digest);
            self.fresh.insert(stamp, (r.1.clone(), r.2));
            return Ok(r);
        }
        let mut buf = Vec::with_capacity(stamp.size as usize);
        (&mut file)
            .take(self.config.max_file_bytes + 1)
            .read_to_end(&mut buf)
            .map_err(|e| LoadError::Skip(SkipReason::ReadError(e.to_string())))?;
        let after = file
            .metadata()
            .map_err(|e| LoadError::Skip(SkipReason::ReadError(e.to_string())))?;
        if Stamp::of(&after) != stamp || buf.len() as u64 != stamp.size {
            return Err(LoadError::Skip(SkipReason::ChangingWhileRead));
        }
        let digest = fnv1a64(&buf);
        let data = Bytes::from(buf);
        self.fresh.insert(stamp, (data.clone(), digest));
        Ok((stamp, data, digest))
    }
}

enum LoadError {
    Skip(SkipReason),
}

/// `O_NOFOLLOW`: the target is a canonical path, so a symlink there now means someone
/// swapped it after the check.
fn nix_o_nofollow() -> i32 {
    nix::libc::O_NOFOLLOW
}

/// FNV-1a, 64 bit.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn config(dirs: &[&Path]) -> CatalogueConfig {
        CatalogueConfig {
            dirs: dirs
                .iter()
                .map(|p| SourceDir {
                    path: p.to_path_buf(),
                    max_depth: 2,
                })
                .collect(),
            link_roots: vec![],
            ..CatalogueConfig::default()
        }
    }

    #[test]
    fn loads_regular_files_and_inside_symlinks_only() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(r.join("ipxe.efi"), b"EFI").unwrap();
        std::fs::create_dir(r.join("qemu")).unwrap();
        std::fs::write(r.join("qemu/pxe-virtio.rom"), b"ROM").unwrap();
        symlink("qemu/pxe-virtio.rom", r.join("virtio-net.rom")).unwrap();
        std::fs::write(outside.path().join("secret"), b"no").unwrap();
        symlink(outside.path().join("secret"), r.join("leak")).unwrap();
        symlink("/dev/null", r.join("null")).unwrap();
        symlink("missing", r.join("dangling")).unwrap();
        let st = std::process::Command::new("mkfifo")
            .arg(r.join("fifo"))
            .status()
            .expect("mkfifo (coreutils)");
        assert!(st.success());
        symlink(outside.path(), r.join("outdir")).unwrap();

        let cat = Catalogue::load(config(&[r]));
        let snap = cat.snapshot();
        let mut names: Vec<_> = snap.files.keys().map(|k| k.to_string()).collect();
        names.sort();
        assert_eq!(names, ["ipxe.efi", "qemu/pxe-virtio.rom", "virtio-net.rom"]);
        assert_eq!(
            cat.get("ipxe.efi").unwrap().data,
            Bytes::from_static(b"EFI")
        );
        // The alias shares the buffer.
        assert_eq!(
            cat.get("virtio-net.rom").unwrap().data.as_ptr(),
            cat.get("qemu/pxe-virtio.rom").unwrap().data.as_ptr()
        );
        assert!(matches!(
            snap.skipped.get(&r.join("leak")),
            Some(SkipReason::SymlinkOutsideRoot(_))
        ));
        assert!(matches!(
            snap.skipped.get(&r.join("null")),
            Some(SkipReason::SymlinkOutsideRoot(_))
        ));
        assert_eq!(
            snap.skipped.get(&r.join("dangling")),
            Some(&SkipReason::DanglingSymlink)
        );
        assert_eq!(
            snap.skipped.get(&r.join("fifo")),
            Some(&SkipReason::NotRegularFile)
        );
        assert!(cat.get("outdir/secret").is_none());
        assert!(cat.get("leak").is_none());
    }

    #[test]
    fn link_roots_admit_symlinks_into_them() {
        let root = tempfile::tempdir().unwrap();
        let boot = tempfile::tempdir().unwrap();
        std::fs::write(boot.path().join("ipxe.efi"), b"real").unwrap();
        symlink(boot.path().join("ipxe.efi"), root.path().join("ipxe.efi")).unwrap();
        let mut c = config(&[root.path()]);
        assert!(Catalogue::load(c.clone()).get("ipxe.efi").is_none());
        c.link_roots = vec![boot.path().to_path_buf()];
        assert_eq!(
            Catalogue::load(c).get("ipxe.efi").unwrap().data,
            Bytes::from_static(b"real")
        );
    }

    #[test]
    fn earlier_directories_shadow_later_ones() {
        let operator = tempfile::tempdir().unwrap();
        let stock = tempfile::tempdir().unwrap();
        std::fs::write(operator.path().join("ipxe.efi"), b"tinkerbell").unwrap();
        std::fs::write(stock.path().join("ipxe.efi"), b"debian").unwrap();
        std::fs::write(stock.path().join("undionly.kpxe"), b"undi").unwrap();
        let cat = Catalogue::load(config(&[operator.path(), stock.path()]));
        assert_eq!(
            cat.get("ipxe.efi").unwrap().data,
            Bytes::from_static(b"tinkerbell")
        );
        assert_eq!(
            cat.get("undionly.kpxe").unwrap().data,
            Bytes::from_static(b"undi")
        );
    }

    #[test]
    fn rescan_picks_up_changes_and_reuses_unchanged_buffers() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(r.join("a"), b"one").unwrap();
        std::fs::write(r.join("b"), b"bee").unwrap();
        let cat = Catalogue::load(config(&[r]));
        let gen0 = cat.snapshot().generation;
        let b_ptr = cat.get("b").unwrap().data.as_ptr();
        assert!(cat.rescan().is_empty());
        assert_eq!(cat.snapshot().generation, gen0);

        std::fs::write(r.join("a"), b"two!").unwrap();
        std::fs::remove_file(r.join("b")).unwrap();
        std::fs::write(r.join("c"), b"new").unwrap();
        let rep = cat.rescan();
        assert_eq!(
            rep,
            ScanReport {
                added: vec!["c".into()],
                changed: vec!["a".into()],
                removed: vec!["b".into()]
            }
        );
        assert_eq!(cat.get("a").unwrap().data, Bytes::from_static(b"two!"));
        assert!(cat.snapshot().generation > gen0);
        let _ = b_ptr;

        let c_ptr = cat.get("c").unwrap().data.as_ptr();
        cat.rescan();
        assert_eq!(
            cat.get("c").unwrap().data.as_ptr(),
            c_ptr,
            "unchanged file is not reread"
        );
    }

    #[test]
    fn limits_are_enforced() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(r.join("big"), vec![0u8; 100]).unwrap();
        std::fs::write(r.join("small"), vec![0u8; 10]).unwrap();
        let mut c = config(&[r]);
        c.max_file_bytes = 50;
        let cat = Catalogue::load(c);
        assert!(cat.get("big").is_none());
        assert!(cat.get("small").is_some());
        assert_eq!(
            cat.snapshot().skipped.get(&r.join("big")),
            Some(&SkipReason::TooLarge(50))
        );
    }

    #[test]
    fn missing_directory_is_reported_not_fatal() {
        let cat = Catalogue::load(config(&[Path::new("/nonexistent/ironboot")]));
        assert!(cat.snapshot().files.is_empty());
        assert_eq!(cat.snapshot().missing_dirs.len(), 1);
    }

    #[test]
    fn metadata_for_http() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("f"), b"hello").unwrap();
        let f = Catalogue::load(config(&[root.path()])).get("f").unwrap();
        assert_eq!(f.size(), 5);
        assert_eq!(f.digest, fnv1a64(b"hello"));
        assert!(f.etag().starts_with('"') && f.etag().ends_with('"'));
        assert!(f.modified > SystemTime::UNIX_EPOCH);
    }
}
