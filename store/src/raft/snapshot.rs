//! Raft snapshots as files: a point-in-time dump of the state machine's column
//! families, streamed from a RocksDB snapshot, never held whole in memory.
//! This is the format a snapshot travels in (to a follower, or from a
//! restore); a member builds its own as a RocksDB checkpoint (`checkpoint`),
//! and either kind can be its current snapshot.
//!
//! ```text
//! "SHOALSN1" ‖ meta length (u32 BE) ‖ bincode SnapshotMeta
//! records:  family tag (u8) ‖ key length (u32 BE) ‖ key ‖ value length (u32 BE) ‖ value
//! 0xFF (end of records) ‖ CRC-32 of everything before it (u32 BE)
//! ```
//!
//! A member keeps its newest snapshot in `member/snap/`. Installing one is
//! crash-safe: the path is recorded before the state is replaced and cleared
//! after, and an interrupted install is redone at startup.

use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rocksdb::{WriteBatch, DB};

use super::{checkpoint, LogId, SnapshotMeta, StoredMembership};
use crate::storage::{self, columns, StorageError};

pub const MAGIC: &[u8; 8] = b"SHOALSN1";
const END: u8 = 0xFF;
const SUFFIX: &str = "snap";
/// Flush a batch into RocksDB at this size while installing.
const INSTALL_BATCH_BYTES: usize = 4 << 20;

/// Held while a snapshot is put in place or taken away, and while the
/// newest is looked up: a directory listing races with renames, and could
/// otherwise miss both the snapshot going and the one coming.
static DIR_CHANGES: Mutex<()> = Mutex::new(());

/// Holds off lookups of the newest snapshot until it is dropped.
pub fn changing_dir() -> MutexGuard<'static, ()> {
    DIR_CHANGES.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A snapshot on disk; what openraft passes around as snapshot data.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

struct CrcWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct CrcReader<R: Read> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

fn write_chunk(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("snapshot record over 4 GiB"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)
}

fn read_u32(input: &mut impl Read) -> std::io::Result<u32> {
    let mut raw = [0u8; 4];
    input.read_exact(&mut raw)?;
    Ok(u32::from_be_bytes(raw))
}

/// No key or value comes near this; a larger length means a corrupt file.
const MAX_RECORD: usize = 256 << 20;

fn read_chunk(input: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let len = read_u32(input)? as usize;
    if len > MAX_RECORD {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "snapshot record length out of range"));
    }
    let mut buf = vec![0u8; len];
    input.read_exact(&mut buf)?;
    Ok(buf)
}

/// The meta of the state `view` holds: its last applied log id and membership.
pub fn meta_of(db: &DB, view: &rocksdb::Snapshot<'_>) -> Result<SnapshotMeta, StorageError> {
    let get =
        |key: &[u8]| view.get_cf(storage::cf(db, columns::META), key).map_err(StorageError::rocks("snapshot meta"));
    let last_log_id: Option<LogId> =
        get(columns::LAST_APPLIED)?.map(|b| storage::decode_bincode("last applied", &b)).transpose()?;
    let last_membership: StoredMembership = get(columns::LAST_MEMBERSHIP)?
        .map(|b| storage::decode_bincode("last membership", &b))
        .transpose()?
        .unwrap_or_default();
    Ok(SnapshotMeta { last_log_id, last_membership })
}

/// A fresh file name (without suffix) for a snapshot of `meta`: the term and
/// index it covers, and the time it was named, so that a newer file of the
/// same state never overwrites one that is being read.
pub fn file_name(meta: &SnapshotMeta) -> String {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    match &meta.last_log_id {
        Some(id) => format!("{}-{}-{millis}", id.leader_id.term, id.index),
        None => format!("0-0-{millis}"),
    }
}

/// Writes a snapshot in the file format, record by record.
pub struct SnapshotWriter<W: Write> {
    out: CrcWriter<W>,
    what: String,
}

impl<W: Write> SnapshotWriter<W> {
    /// Starts a snapshot whose meta is `meta`; `what` names it in errors.
    pub fn begin(out: W, meta: &SnapshotMeta, what: &str) -> Result<Self, StorageError> {
        let mut out = CrcWriter { inner: out, crc: crc32fast::Hasher::new() };
        out.write_all(MAGIC)
            .and_then(|_| write_chunk(&mut out, &storage::encode_bincode(meta)))
            .map_err(StorageError::io(what))?;
        Ok(SnapshotWriter { out, what: what.to_string() })
    }

    fn tagged(&mut self, tag: u8, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        let out = &mut self.out;
        out.write_all(&[tag])
            .and_then(|_| write_chunk(out, key))
            .and_then(|_| write_chunk(out, value))
            .map_err(StorageError::io(&self.what))
    }

    /// Writes the end marker and the checksum; returns the output.
    pub fn finish(mut self) -> Result<W, StorageError> {
        let io = StorageError::io(&self.what);
        self.out.write_all(&[END]).map_err(StorageError::io(&self.what))?;
        let crc = self.out.crc.clone().finalize();
        let mut inner = self.out.inner;
        inner.write_all(&crc.to_be_bytes()).and_then(|_| inner.flush()).map_err(io)?;
        Ok(inner)
    }
}

/// Writes the whole state `view` holds (whose meta is `meta`) to `out` in
/// the snapshot format, trailer included, and returns `out`.
pub fn dump<W: Write>(
    db: &DB,
    view: &rocksdb::Snapshot<'_>,
    meta: &SnapshotMeta,
    out: W,
    what: &str,
) -> Result<W, StorageError> {
    let mut writer = SnapshotWriter::begin(out, meta, what)?;
    copy_view(db, view, &mut writer)?;
    writer.finish()
}

/// Writes every state-machine row `view` holds, family by family.
fn copy_view<W: Write>(
    db: &DB,
    view: &rocksdb::Snapshot<'_>,
    writer: &mut SnapshotWriter<W>,
) -> Result<(), StorageError> {
    for_each_row(db, view, |tag, key, value| writer.tagged(tag as u8, key, value))
}

/// Calls `row` with every state-machine row `view` holds, family by family;
/// a row's family is `columns::STATE_MACHINE[tag]`.
pub fn for_each_row(
    db: &DB,
    view: &rocksdb::Snapshot<'_>,
    mut row: impl FnMut(usize, &[u8], &[u8]) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    for (tag, name) in columns::STATE_MACHINE.iter().enumerate() {
        let mut it = view.raw_iterator_cf(storage::cf(db, name));
        it.seek_to_first();
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            row(tag, key, value)?;
            it.next();
        }
        it.status().map_err(StorageError::rocks("snapshot scan"))?;
    }
    Ok(())
}

/// Where the finished snapshot file named `name` (from [`file_name`]) lives in `dir`.
pub fn file_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.{SUFFIX}"))
}

/// Whether `path` is a finished snapshot: a file or a checkpoint (not a partial one).
pub fn is_snapshot(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()) == Some(SUFFIX) && path.is_file() || checkpoint::is_checkpoint(path)
}

/// Takes a snapshot file or a checkpoint directory out of the directory, at
/// once: a directory is renamed to a `.tmp` name, never seen with its meta
/// file already deleted. Returns what is left to delete, out of the lock.
fn take_away(path: &Path) -> Option<PathBuf> {
    if !path.is_dir() {
        let _ = fs::remove_file(path);
        return None;
    }
    let doomed = path.with_extension("removing.tmp");
    match fs::rename(path, &doomed) {
        Ok(()) => Some(doomed),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not remove an old snapshot");
            None
        }
    }
}

fn remove(path: &Path) {
    let _ = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
}

/// Deletes the snapshots in `dir` older than `keep`. Those still being
/// written or received (`.tmp`) are left alone.
pub fn remove_older(dir: &Path, keep: &Path) {
    let Ok(kept) = read_meta(keep) else { return };
    let doomed: Vec<PathBuf> = {
        let _changing = changing_dir();
        let Ok(entries) = fs::read_dir(dir) else { return };
        let older = entries.flatten().map(|e| e.path()).filter(|path| {
            path != keep
                && is_snapshot(path)
                && read_meta(path).map_or(true, |meta| meta.last_log_id < kept.last_log_id)
        });
        older.collect::<Vec<_>>().iter().filter_map(|path| take_away(path)).collect()
    };
    doomed.iter().for_each(|path| remove(path));
}

/// Removes what a crash left half-written in `dir`.
pub fn remove_partial(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) == Some("tmp") {
            remove(&path);
        }
    }
}

/// Puts the file at `from` in place at `to` durably: renamed when it is
/// already in the same directory, else copied through a temporary file.
pub fn place(from: &Path, to: &Path) -> Result<(), StorageError> {
    let dir = to.parent().ok_or_else(|| StorageError::corrupt("snapshot path", "no directory"))?;
    if from.parent() == Some(dir) {
        let _changing = changing_dir();
        fs::rename(from, to).map_err(StorageError::io(to))?;
    } else {
        let tmp = to.with_extension("copy.tmp");
        fs::copy(from, &tmp).map_err(StorageError::io(&tmp))?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(StorageError::io(&tmp))?;
        let _changing = changing_dir();
        fs::rename(&tmp, to).map_err(StorageError::io(to))?;
    }
    storage::sync_dir(dir)
}

fn open_reader(path: &Path) -> Result<(SnapshotMeta, CrcReader<BufReader<File>>), StorageError> {
    let file = File::open(path).map_err(StorageError::io(path))?;
    let mut input = CrcReader { inner: BufReader::with_capacity(1 << 20, file), crc: crc32fast::Hasher::new() };
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic).map_err(StorageError::io(path))?;
    if &magic != MAGIC {
        return Err(StorageError::corrupt("snapshot", format!("{} is not a Shoal snapshot", path.display())));
    }
    let meta_bytes = read_chunk(&mut input).map_err(StorageError::io(path))?;
    let meta = storage::decode_bincode("snapshot meta", &meta_bytes)?;
    Ok((meta, input))
}

/// Reads the records of a snapshot file, calling `record` for each, then
/// checks the trailer. Nothing is trusted before the checksum matches, so
/// callers that write must be able to redo the work.
fn for_each_record(
    path: &Path,
    record: impl FnMut(&'static str, Vec<u8>, Vec<u8>) -> Result<(), StorageError>,
) -> Result<SnapshotMeta, StorageError> {
    scan(path, record).map(|(meta, _)| meta)
}

/// Like `for_each_record`, and also returns the file's CRC-32.
pub fn scan(
    path: &Path,
    mut record: impl FnMut(&'static str, Vec<u8>, Vec<u8>) -> Result<(), StorageError>,
) -> Result<(SnapshotMeta, u32), StorageError> {
    let (meta, mut input) = open_reader(path)?;
    let io = |e| StorageError::io(path)(e);
    loop {
        let mut tag = [0u8; 1];
        input.read_exact(&mut tag).map_err(io)?;
        if tag[0] == END {
            break;
        }
        let family = columns::STATE_MACHINE
            .get(tag[0] as usize)
            .ok_or_else(|| StorageError::corrupt("snapshot", format!("unknown family tag {}", tag[0])))?;
        let key = read_chunk(&mut input).map_err(io)?;
        let value = read_chunk(&mut input).map_err(io)?;
        record(family, key, value)?;
    }
    let computed = input.crc.clone().finalize();
    let stored = read_u32(&mut input.inner).map_err(io)?;
    if computed != stored {
        return Err(StorageError::corrupt("snapshot", format!("{}: checksum mismatch", path.display())));
    }
    Ok((meta, stored))
}

/// Checks a snapshot file end to end and returns its meta.
pub fn verify(path: &Path) -> Result<SnapshotMeta, StorageError> {
    for_each_record(path, |_, _, _| Ok(()))
}

/// Reads only the meta of a snapshot: the head of a file, or a checkpoint's meta file.
pub fn read_meta(path: &Path) -> Result<SnapshotMeta, StorageError> {
    if checkpoint::is_checkpoint(path) {
        return checkpoint::read_meta(path);
    }
    open_reader(path).map(|(meta, _)| meta)
}

/// The newest snapshot in `dir`, if any. The directory is read under the
/// lock that puts snapshots in place and takes them away, so the listing is
/// of one moment; one gone by the time it is read is skipped all the same.
pub fn latest(dir: &Path) -> Result<Option<(SnapshotMeta, PathBuf)>, StorageError> {
    let _changing = changing_dir();
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(None);
    };
    let listed = entries.flatten().map(|e| e.path()).filter(|p| is_snapshot(p));
    Ok(newest(listed)?.0)
}

/// The newest of the snapshots at `paths`, and whether one of them was gone
/// when read.
pub(super) fn newest(
    paths: impl Iterator<Item = PathBuf>,
) -> Result<(Option<(SnapshotMeta, PathBuf)>, bool), StorageError> {
    let (mut best, mut vanished): (Option<(SnapshotMeta, PathBuf)>, bool) = (None, false);
    for path in paths {
        let meta = match read_meta(&path) {
            Ok(meta) => meta,
            Err(_) if !path.exists() => {
                vanished = true;
                continue;
            }
            Err(e) => return Err(e),
        };
        if best.as_ref().is_none_or(|(b, _)| meta.last_log_id > b.last_log_id) {
            best = Some((meta, path));
        }
    }
    Ok((best, vanished))
}

/// Calls `record` for every row of the snapshot at `path`, a file or a
/// checkpoint; returns its meta.
pub fn records(
    path: &Path,
    record: impl FnMut(&'static str, Vec<u8>, Vec<u8>) -> Result<(), StorageError>,
) -> Result<SnapshotMeta, StorageError> {
    if checkpoint::is_checkpoint(path) {
        checkpoint::for_each_record(path, record)
    } else {
        for_each_record(path, record)
    }
}

/// Replaces the whole state machine with the content of the snapshot at
/// `path`, a file or a checkpoint.
pub fn install(db: &DB, path: &Path) -> Result<SnapshotMeta, StorageError> {
    if !checkpoint::is_checkpoint(path) {
        verify(path)?;
    }
    let mut marker = WriteBatch::default();
    marker.put_cf(storage::cf(db, columns::RAFT_STATE), columns::INSTALLING, path.to_string_lossy().as_bytes());
    storage::write_synced(db, marker)?;

    let mut batch = WriteBatch::default();
    for name in columns::STATE_MACHINE {
        clear_family(db, &mut batch, name)?;
    }
    let meta = records(path, |family, key, value| {
        batch.put_cf(storage::cf(db, family), key, value);
        if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
            storage::write_buffered(db, std::mem::take(&mut batch))?;
        }
        Ok(())
    })?;
    storage::write_buffered(db, batch)?;
    db.flush_wal(true).map_err(StorageError::rocks("flush wal"))?;

    let mut done = WriteBatch::default();
    done.delete_cf(storage::cf(db, columns::RAFT_STATE), columns::INSTALLING);
    storage::write_synced(db, done)?;
    Ok(meta)
}

/// The snapshot whose install was interrupted by a crash, if any.
pub fn interrupted_install(db: &DB) -> Result<Option<PathBuf>, StorageError> {
    Ok(storage::get(db, columns::RAFT_STATE, columns::INSTALLING)?
        .map(|p| PathBuf::from(String::from_utf8_lossy(&p).into_owned())))
}

fn clear_family(db: &DB, batch: &mut WriteBatch, name: &'static str) -> Result<(), StorageError> {
    let cf = storage::cf(db, name);
    let mut it = db.raw_iterator_cf(cf);
    it.seek_to_first();
    let Some(first) = it.key().map(<[u8]>::to_vec) else {
        return it.status().map_err(StorageError::rocks("clear family"));
    };
    it.seek_to_last();
    let Some(mut last) = it.key().map(<[u8]>::to_vec) else {
        return it.status().map_err(StorageError::rocks("clear family"));
    };
    last.push(0);
    batch.delete_range_cf(cf, first, last);
    Ok(())
}
