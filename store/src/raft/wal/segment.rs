//! Segment files: `<seq as 16 hex digits>.wal` in the log's directory, each
//! preallocated to its full size before it is first written, so that an
//! append changes no file size and `fdatasync` carries only data. A segment
//! is created under a `.tmp` name and renamed into place once preallocated
//! and synced: a crash never leaves a half-made segment under a real name.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

pub use crate::storage::sync_dir;
use crate::storage::StorageError;

const SUFFIX: &str = ".wal";
const TMP_SUFFIX: &str = ".wal.tmp";

pub fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}{SUFFIX}"))
}

/// The sequence numbers of the segments in `dir`, oldest first. Leftover
/// temporary files (a crash while making a segment) are removed.
pub fn list(dir: &Path) -> Result<Vec<u64>, StorageError> {
    let mut seqs = Vec::new();
    for item in fs::read_dir(dir).map_err(StorageError::io(dir))? {
        let item = item.map_err(StorageError::io(dir))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TMP_SUFFIX) {
            fs::remove_file(item.path()).map_err(StorageError::io(item.path()))?;
        } else if let Some(seq) = name.strip_suffix(SUFFIX).and_then(|hex| u64::from_str_radix(hex, 16).ok()) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Makes segment `seq` of `bytes`, all zeros, durable under its real name.
pub fn create(dir: &Path, seq: u64, bytes: u64) -> Result<File, StorageError> {
    let tmp = dir.join(format!("{seq:016x}{TMP_SUFFIX}"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(StorageError::io(&tmp))?;
    preallocate(&file, bytes).map_err(StorageError::io(&tmp))?;
    file.sync_all().map_err(StorageError::io(&tmp))?;
    let real = path(dir, seq);
    fs::rename(&tmp, &real).map_err(StorageError::io(&real))?;
    sync_dir(dir)?;
    Ok(file)
}

fn preallocate(file: &File, bytes: u64) -> io::Result<()> {
    let len = i64::try_from(bytes).map_err(io::Error::other)?;
    match nix::fcntl::posix_fallocate(file.as_fd(), 0, len) {
        Ok(()) => Ok(()),
        // A file system without fallocate: a plain length does too.
        Err(nix::errno::Errno::EOPNOTSUPP) | Err(nix::errno::Errno::EINVAL) => file.set_len(bytes),
        Err(e) => Err(e.into()),
    }
}

pub fn open(dir: &Path, seq: u64) -> Result<File, StorageError> {
    let path = path(dir, seq);
    OpenOptions::new().read(true).write(true).open(&path).map_err(StorageError::io(&path))
}

pub fn remove(dir: &Path, seq: u64) -> Result<(), StorageError> {
    let path = path(dir, seq);
    fs::remove_file(&path).map_err(StorageError::io(&path))
}
