//! The spool's file I/O seam.
//!
//! Every write the spool makes (segment appends, fsyncs, the cursor's
//! temporary file and rename, tail cuts, segment deletion) and every read of
//! records goes through [`SpoolIo`], so tests can make the disk fail where a
//! real disk fails: ENOSPC at the N-th write, a write torn at byte k, a crash
//! after any write (every later call fails; the files hold what was written
//! so far). Production uses [`RealIo`], plain `std::fs`.
//!
//! Not behind the seam: listing the directory, file sizes, reading the cursor
//! and the directory lock (reads at open, before any write of this process),
//! and the rejected file (a separate append-only log).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::Path;

/// A segment open for appending.
pub trait AppendFile: Write + Send + fmt::Debug {
    /// `fdatasync`: the written bytes survive a power loss.
    fn sync_data(&self) -> io::Result<()>;
}

/// A file open for reading records.
pub trait ReadFile: Read + Seek + Send + fmt::Debug {}

impl AppendFile for File {
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
}

impl ReadFile for File {}

/// The file operations of a spool.
pub trait SpoolIo: Send + Sync + fmt::Debug {
    /// Creates a new segment (fails when it exists) for appending.
    fn create_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Opens a file for reading.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>>;
    /// Creates or truncates `path` and writes `bytes`, fsynced when `sync`.
    fn write_file(&self, path: &Path, bytes: &[u8], sync: bool) -> io::Result<()>;
    /// Renames `from` over `to` atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Cuts `path` to `len` bytes.
    fn set_len(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Removes `path`; a missing file is not an error.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (new files, renames) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealIo;

impl SpoolIo for RealIo {
    fn create_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)?;
        Ok(Box::new(file))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>> {
        Ok(Box::new(File::open(path)?))
    }

    fn write_file(&self, path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
        let mut file = File::create(path)?;
        file.write_all(bytes)?;
        if sync {
            file.sync_data()?;
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.set_len(len)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}
