//! Where the JSON lines go: stdout (the default, for container log collectors) or a
//! file rotated by size.
//!
//! Rotation renames `FILE` → `FILE.1` → … → `FILE.N` and starts a new `FILE`; the oldest
//! beyond `keep` is deleted. Size-based rather than time-based because a boot storm can
//! write gigabytes in an hour and a quiet week nothing: the disk is what must be bounded.
//!
//! The writer thread owns this, so plain blocking I/O through a 64 KiB buffer: lines are
//! flushed whenever the queue runs empty (so a single boot message appears at once) and
//! when the buffer fills under load (so a flood costs few system calls).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

const BUFFER: usize = 64 * 1024;

pub enum Output {
    Stdout(BufWriter<io::Stdout>),
    File(RotatingFile),
}

impl Output {
    pub fn stdout() -> Self {
        Output::Stdout(BufWriter::with_capacity(BUFFER, io::stdout()))
    }

    /// Appends to `path` (creating it), rotating past `max_bytes`.
    pub fn file(path: &Path, max_bytes: u64, keep: u32) -> io::Result<Self> {
        Ok(Output::File(RotatingFile::open(path, max_bytes, keep)?))
    }

    /// Writes one line. Returns whether it rotated the file first.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<bool> {
        match self {
            Output::Stdout(w) => w.write_all(line).map(|_| false),
            Output::File(f) => f.write_line(line),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::File(f) => f.flush(),
        }
    }
}

pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    /// None after a failed reopen; retried on the next write.
    file: Option<BufWriter<File>>,
    size: u64,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<Self> {
        let mut f = RotatingFile {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep,
            file: None,
            size: 0,
        };
        f.reopen()?;
        Ok(f)
    }

    fn reopen(&mut self) -> io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(BufWriter::with_capacity(BUFFER, file));
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.flush()?;
        }
        if self.keep == 0 {
            std::fs::remove_file(&self.path).or_else(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        } else {
            let _ = std::fs::remove_file(self.rotated(self.keep));
            for n in (1..self.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        self.reopen()
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<bool> {
        let mut rotated = false;
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
            rotated = true;
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let Some(f) = self.file.as_mut() else {
            return Err(io::Error::other("output file not open"));
        };
        f.write_all(line)?;
        self.size += line.len() as u64;
        Ok(rotated)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("syslog.jsonl");
        let mut out = Output::file(&path, 100, 2).expect("open");
        let line = [b'x'; 39]
            .iter()
            .copied()
            .chain([b'\n'])
            .collect::<Vec<u8>>();
        let mut rotations = 0;
        for _ in 0..10 {
            rotations += out.write_line(&line).expect("write") as u32;
        }
        out.flush().expect("flush");
        assert_eq!(rotations, 4, "two 40-byte lines per 100-byte file");
        for p in [
            path.clone(),
            dir.path().join("syslog.jsonl.1"),
            dir.path().join("syslog.jsonl.2"),
        ] {
            assert_eq!(
                std::fs::metadata(&p).expect("exists").len(),
                80,
                "{}",
                p.display()
            );
        }
        assert!(!dir.path().join("syslog.jsonl.3").exists());
    }
}
