//! Snapshot backups: what `Maintenance.Snapshot` streams, and the offline
//! `snapshot status` and `snapshot restore` of the file a client saved.
//!
//! ```text
//! a bbolt database laid out as etcd's backend (see to_etcd)
//! ‖ SHA-256 of everything before it (32 bytes)
//! ```
//!
//! That is etcd's own snapshot format, so one file serves both: etcd's tools
//! read and restore what Shoal streams ([`to_etcd`], written by
//! [`bbolt_writer`]), and Shoal restores what etcd saved ([`bbolt`] reads
//! it, [`from_etcd`] maps its buckets onto Shoal's families). Files in
//! Shoal's older format (a Raft snapshot file, see `raft::snapshot`, with the
//! same trailer) are still read and restored. Restore refuses a file whose
//! trailer or inner checksums do not match before writing anything, and
//! builds the new member's data dir beside its final place, renaming it in
//! only when it is complete.

pub mod bbolt;
pub mod bbolt_writer;
pub mod from_etcd;
mod pipeline;
mod restore;
mod stream;
pub mod to_etcd;

#[cfg(test)]
mod restore_test;
#[cfg(test)]
mod to_etcd_test;

pub use restore::{restore, RestoreOptions, Restored};
pub use stream::{stream, CHUNK_BYTES};

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::mvcc::{key_codec, Record};
use crate::raft::snapshot;
use crate::storage::{columns, StorageError};

/// Length of the SHA-256 trailer.
pub const TRAILER_BYTES: u64 = 32;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("snapshot file {path} is empty")]
    Empty { path: PathBuf },
    #[error("snapshot file {path} is too short to be a snapshot ({size} bytes): it is truncated or not a snapshot")]
    TooShort { path: PathBuf, size: u64 },
    #[error("snapshot file {path} is corrupt: its SHA-256 checksum does not match (truncated or modified)")]
    ChecksumMismatch { path: PathBuf },
    #[error("snapshot file {path} is corrupt")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: StorageError,
    },
    #[error("snapshot file {path} is corrupt: {what}")]
    Damaged { path: PathBuf, what: String },
    #[error("{path} is not an etcd or Shoal snapshot")]
    NotASnapshot { path: PathBuf },
    #[error("{path} is not an etcd or Shoal snapshot: it is a bbolt database without etcd's {bucket:?} bucket")]
    NotEtcdBackend { path: PathBuf, bucket: &'static str },
    #[error("data-dir {path:?} exists; restore needs a new, empty one")]
    DataDirExists { path: PathBuf },
    #[error("invalid restore options: {0}")]
    Options(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What `snapshot status` reports about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The file's SHA-256 trailer, hex.
    pub sha256: String,
    /// The CRC-32 of the snapshot inside, as etcd prints a hash.
    pub hash: u32,
    pub revision: i64,
    /// Versions stored, as etcd counts its keys (every revision of every key).
    pub total_keys: u64,
    /// Keys that exist at `revision`.
    pub live_keys: u64,
    pub leases: u64,
    pub size: u64,
}

/// Checks the SHA-256 trailer of the file at `path`; returns the digest and
/// the length of the snapshot before it.
pub fn check_trailer(path: &Path, progress: impl FnMut(u64)) -> Result<([u8; 32], u64), BackupError> {
    let size = std::fs::metadata(path).map_err(StorageError::io(path))?.len();
    if size == 0 {
        return Err(BackupError::Empty { path: path.to_path_buf() });
    }
    if size <= TRAILER_BYTES + 16 {
        return Err(BackupError::TooShort { path: path.to_path_buf(), size });
    }
    let body = size - TRAILER_BYTES;
    let (digest, mut input) = sha256_of(path, body, progress)?;
    let mut trailer = [0u8; 32];
    input.read_exact(&mut trailer).map_err(StorageError::io(path))?;
    if digest != trailer {
        return Err(BackupError::ChecksumMismatch { path: path.to_path_buf() });
    }
    Ok((digest, body))
}

/// The SHA-256 of the first `len` bytes of the file at `path`, and the file
/// read up to there.
fn sha256_of(path: &Path, len: u64, mut progress: impl FnMut(u64)) -> Result<([u8; 32], BufReader<File>), BackupError> {
    let mut input = BufReader::with_capacity(1 << 20, File::open(path).map_err(StorageError::io(path))?);
    let mut hasher = Sha256::new();
    let mut left = len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        input.read_exact(&mut buf[..want]).map_err(StorageError::io(path))?;
        hasher.update(&buf[..want]);
        left -= want as u64;
        progress(len - left);
    }
    Ok((hasher.finalize().into(), input))
}

/// For a snapshot etcd saved: its SHA-256 and the length of the database
/// in it. etcd's tools append the digest as a trailer (the file is then 32
/// bytes past whole pages), which must match; a bare database file (copied
/// from a member's data dir) has none, and its digest is computed.
pub fn etcd_digest(path: &Path, progress: impl FnMut(u64)) -> Result<([u8; 32], u64), BackupError> {
    let size = std::fs::metadata(path).map_err(StorageError::io(path))?.len();
    // Two meta pages, a freelist and a root: four of the smallest pages.
    if size < 4 * 512 {
        return Err(BackupError::TooShort { path: path.to_path_buf(), size });
    }
    if size % 512 == TRAILER_BYTES {
        return check_trailer(path, progress);
    }
    Ok((sha256_of(path, size, progress)?.0, size))
}

/// Opens the bbolt database in the first `len` bytes of the file at `path`.
pub fn open_etcd(path: &Path, len: u64) -> Result<bbolt::Db<File>, BackupError> {
    let file = File::open(path).map_err(StorageError::io(path))?;
    bbolt::Db::open(Box::new(file), len).map_err(|e| etcd_corrupt(path, e))
}

fn etcd_corrupt(path: &Path, e: bbolt::BboltError) -> BackupError {
    BackupError::Damaged { path: path.to_path_buf(), what: e.to_string() }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a saved snapshot end to end and reports what it holds.
pub fn status(path: &Path) -> Result<Status, BackupError> {
    format_of(path)?;
    let (digest, _) = check_trailer(path, |_| {})?;
    let size = std::fs::metadata(path).map_err(StorageError::io(path))?.len();
    let mut status = Status { sha256: hex(&digest), size, ..Status::default_for(size) };
    let mut last_key: Option<Vec<u8>> = None;
    let (_, crc) = snapshot::scan(path, |family, key, value| {
        match family {
            columns::KV => {
                status.total_keys += 1;
                // Versions of a key are adjacent, newest first.
                if let Some((user_key, _)) = key_codec::decode(&key) {
                    if last_key.as_deref() != Some(user_key.as_slice()) {
                        if !Record::is_tombstone(&value) {
                            status.live_keys += 1;
                        }
                        last_key = Some(user_key);
                    }
                }
            }
            columns::LEASES => status.leases += 1,
            columns::META if key == columns::CURRENT_REVISION => {
                let raw: [u8; 8] =
                    value.as_slice().try_into().map_err(|_| StorageError::corrupt("revision", "size"))?;
                status.revision = i64::from_be_bytes(raw);
            }
            _ => {}
        }
        Ok(())
    })
    .map_err(|source| BackupError::Corrupt { path: path.to_path_buf(), source })?;
    status.hash = crc;
    Ok(status)
}

/// What etcd's own `snapshot status` reports about a snapshot etcd saved
/// (a bbolt database, with or without etcd's SHA-256 trailer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdStatus {
    /// CRC-32C over every bucket name, key and value, in order, as etcd's.
    pub hash: u32,
    /// The main revision of the newest entry of the `key` bucket.
    pub revision: i64,
    /// Entries in all buckets, as etcd counts them.
    pub total_keys: u64,
    /// The database's size: pages in use times the page size.
    pub total_size: u64,
}

/// Which snapshot format a file is in, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Shoal,
    /// A bbolt database: a snapshot etcd saved.
    Etcd,
}

/// The format of the file at `path`; refused when it is neither (an empty
/// or short file is left to the trailer check, which says what is wrong).
pub fn format_of(path: &Path) -> Result<Format, BackupError> {
    let mut head = [0u8; 20];
    let mut file = File::open(path).map_err(StorageError::io(path))?;
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..]).map_err(StorageError::io(path))? {
            0 => break,
            n => read += n,
        }
    }
    if bbolt::is_bbolt(&head[..read]) {
        Ok(Format::Etcd)
    } else if read < head.len() || head.starts_with(snapshot::MAGIC) {
        Ok(Format::Shoal)
    } else {
        Err(BackupError::NotASnapshot { path: path.to_path_buf() })
    }
}

/// Reads a snapshot etcd saved end to end and reports what etcd's
/// `snapshot status` reports. A trailer, when there is one, must match.
pub fn etcd_status(path: &Path) -> Result<EtcdStatus, BackupError> {
    let (_, len) = etcd_digest(path, |_| {})?;
    let corrupt = |e| etcd_corrupt(path, e);
    let db = open_etcd(path, len)?;
    let mut hash = bbolt::Crc32c::default();
    let (mut revision, mut total_keys) = (0, 0);
    for (name, bucket) in db.buckets().map_err(corrupt)? {
        hash.update(&name);
        let is_key_bucket = name == b"key";
        db.for_each(&bucket, &mut |key, item| {
            hash.update(key);
            if let bbolt::Item::Value(value) = item {
                hash.update(value);
            }
            if is_key_bucket && key.len() >= 8 {
                revision = i64::from_be_bytes(key[..8].try_into().unwrap_or_default());
            }
            total_keys += 1;
            Ok(())
        })
        .map_err(corrupt)?;
    }
    Ok(EtcdStatus { hash: hash.sum(), revision, total_keys, total_size: db.pages * db.page_size() })
}

impl Status {
    fn default_for(size: u64) -> Status {
        Status { sha256: String::new(), hash: 0, revision: 1, total_keys: 0, live_keys: 0, leases: 0, size }
    }
}
